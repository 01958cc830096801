"""Group commit of finished attempts: one finish.lua round trip for every attempt that
finished while the previous round trip was out."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from gateway.storage.layout import AttemptRecord

FINISH_BATCH = 64
"""Most attempts recorded by one finish.lua call: bounds the time the script holds Redis."""
T = TypeVar("T")


class _Finishing(Generic[T]):
    __slots__ = ("answer", "done", "error", "record", "wake")

    def __init__(self, record: AttemptRecord) -> None:
        self.record = record
        self.answer: T | None = None
        self.error: BaseException | None = None
        self.done = False
        # A bare lock as a one-shot signal: taken now, released to wake the waiter. A
        # threading.Event (a Condition and two more locks) cost visibly at 1,000+ attempts/s.
        self.wake = threading.Lock()
        self.wake.acquire()


class GroupFinish(Generic[T]):
    """Group commit of finished attempts: one finish.lua round trip for all the attempts
    that finished while the previous round trip was out.

    No timer and no extra thread: the first caller writes (the "leader"); callers arriving
    meanwhile queue up; when the leader's write returns it hands the queue to the first of
    them, which writes it as one call. Alone, a caller writes at once, as before. Every
    caller returns only once its own attempt is in Redis (or raises, and its in-flight lease
    then expires and the sweeper puts the delivery back: a redelivery, never a loss).
    """

    def __init__(self, write: Callable[[Sequence[AttemptRecord]], list[T]], limit: int = FINISH_BATCH) -> None:
        self.write = write
        self.limit = limit
        self._lock = threading.Lock()
        self._queue: list[_Finishing[T]] = []
        self._writing = False

    @property
    def waiting(self) -> int:
        """Attempts queued behind the write that is out."""
        with self._lock:
            return len(self._queue)

    def __call__(self, record: AttemptRecord) -> T:
        """Record one attempt; returns what ``write`` answered for it."""
        item: _Finishing[T] = _Finishing(record)
        with self._lock:
            self._queue.append(item)
            lead = not self._writing
            self._writing = True
        if not lead:
            item.wake.acquire()  # done, or handed the lead
        if not item.done:
            self._write()
        if item.error is not None:
            raise item.error
        assert item.answer is not None  # written: every item of the batch got its answer
        return item.answer

    def _write(self) -> None:
        with self._lock:
            batch = self._queue[: self.limit]
            del self._queue[: self.limit]
        try:
            answers = self.write([item.record for item in batch])
            for item, value in zip(batch, answers, strict=True):
                item.answer = value
        except BaseException as exc:  # noqa: BLE001 - every writer waiting on this call learns it failed
            for item in batch:
                item.error = exc
        finally:
            for item in batch:
                item.done = True
                item.wake.release()
            with self._lock:
                if self._queue:
                    self._queue[0].wake.release()  # its turn to write what queued up meanwhile
                else:
                    self._writing = False


