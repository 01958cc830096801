"""Logging: text or one JSON object per line, through a filter that keeps secrets out.

* :func:`configure` installs one handler on the root logger (``gateway --log-format
  text|json``, ``GATEWAY_LOG_FORMAT``, ``GATEWAY_LOG_LEVEL``).
* :func:`log_access` writes the one ``gateway.access`` line of an answered HTTP request
  (method, path, status, duration_ms, remote_addr; never bodies, query strings or headers;
  called by :mod:`gateway.web.instrumentation`) and :func:`log_attempt` the one
  ``gateway.attempts`` line of a delivery attempt (delivery_id, event, sink, status_code,
  duration_ms, outcome, ...; called by the delivery engine).
* :class:`RedactingFilter` is the safety net on the handler: whatever a log record says
  (message, arguments, extra fields, traceback) goes through :func:`gateway.redact.redact`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

from gunicorn import glogging

from gateway.redact import redact, redact_value

FORMATS = ("text", "json")
# A record attribute: set by code that built every value of the line itself (nothing to redact).
SAFE_RECORD = "_gateway_safe"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

access_log = logging.getLogger("gateway.access")
attempt_log = logging.getLogger("gateway.attempts")

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_installed: logging.Handler | None = None


class RedactingFilter(logging.Filter):
    """Rewrites every record passing through a handler so no secret reaches the output."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.__dict__.get(SAFE_RECORD):
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must still be logged, safely
            message = f"{record.msg!r} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        attributes = vars(record)
        for key in attributes.keys() - _STANDARD_ATTRS:
            value = attributes[key]
            if isinstance(value, str):
                attributes[key] = redact(value)
            elif isinstance(value, (Mapping, list, tuple)):
                attributes[key] = redact_value(value)
        return True


_second_cache: tuple[int, str] = (-1, "")


def _iso(created: float) -> str:
    global _second_cache
    whole = int(created)
    cached_second, prefix = _second_cache
    if whole != cached_second:  # formatting the date costs more than the rest of a line
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second_cache = (whole, prefix)
    return f"{prefix}.{int((created - whole) * 1000):03d}Z"


_JSON = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``pid``, ``message``, then the record's
    extra fields (``extra={...}``), then ``exc`` with the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"ts": _iso(record.created), "level": record.levelname.lower(),
                               "logger": record.name, "pid": record.process, "message": record.getMessage()}
        for key, value in vars(record).items():  # in the order the caller gave them
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                doc[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = record.stack_info
        return _JSON.encode(doc)


# What a text line must not carry raw: C0 and C1 controls (CR and LF would start a forged
# line), DEL, the Unicode line and paragraph separators, and the bidirectional overrides
# and isolates (which make a line read differently from what it holds).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# The same, but for text shown as several lines (a <pre> block): its line feeds and tabs are its layout.
_UNPRINTABLE_INLINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT_ESCAPES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape_unprintable(text: str, multiline: bool = False) -> str:
    """``text`` with every control, line-separator and bidi character written as its
    backslash escape (``\\n``, ``\\x1b``, ``\\u202e``): one log record stays one line
    that reads as what it holds, whatever a client put in a path or a header. ``multiline``
    keeps line feeds and tabs (text shown in a block, such as the console's ``<pre>``)."""
    return (_UNPRINTABLE_INLINE if multiline else _UNPRINTABLE).sub(_escape, text)


class TextFormatter(logging.Formatter):
    """:data:`TEXT_FORMAT`, with the local date and time formatted once per second (the
    logging module's ``formatTime`` runs ``strftime`` for every line), and the message's
    control characters escaped (:func:`escape_unprintable`): a request path with ``%0A``
    cannot forge a line. A traceback keeps its own lines, below the message's."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: tuple[int, str] = (-1, "")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802
        return TEXT_FORMAT % {"asctime": record.asctime, "levelname": record.levelname, "name": record.name,
                              "message": escape_unprintable(record.message)}

    def usesTime(self) -> bool:  # noqa: N802
        # TEXT_FORMAT has %(asctime)s: no need to search the format for it at every line.
        return True

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        whole = int(record.created)
        second, text = self._second
        if whole != second:
            text = time.strftime(self.default_time_format, self.converter(whole))
            self._second = (whole, text)
        return f"{text},{int(record.msecs):03d}"


class _CurrentStderrHandler(logging.StreamHandler[IO[str]]):
    """Writes to whatever ``sys.stderr`` is at the time of each record (test runners and
    click's CliRunner swap it), never to a stream closed since."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass

    def flush(self) -> None:
        # StreamHandler.flush, with the stream read once rather than three times (each a
        # property call, at every line).
        self.acquire()
        try:
            stream = sys.stderr
            if stream and hasattr(stream, "flush"):
                stream.flush()
        finally:
            self.release()


def configure(format: str = "text", level: str | int = "INFO",
              stream: IO[str] | None = None) -> logging.Handler:
    """Send logs to ``stream`` (stderr) as ``text`` or ``json`` at ``level``, through the
    redacting filter. Calling it again replaces the handler it installed before; other
    handlers on the root logger are left alone. Returns the handler."""
    global _installed
    if format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {format!r}")
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderrHandler()
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    _installed = handler
    return handler


def reset() -> None:
    """Remove the handler :func:`configure` installed (tests use it to clean up)."""
    global _installed
    if _installed is not None:
        logging.getLogger().removeHandler(_installed)
        _installed = None


class GunicornLogger(glogging.Logger):
    """gunicorn's own lines (start-up, workers booting and exiting) through the handler that
    :func:`configure` installed, so ``--log-format json`` makes them JSON too. For
    ``gateway web`` (its ``logger_class``); plain ``gunicorn`` keeps its own format."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.propagate = True


# -- the lines the gateway writes itself ---------------------------------------------------------

def log_access(method: str, path: str, status: int, started: float | None, remote_addr: str | None,
               safe: bool = False) -> None:
    """The access-log line of one answered request (``started``: its ``time.perf_counter()``).
    ``safe``: the caller vouches that no value can hold a secret (a fixed method and path,
    the peer's address from the socket), so the redacting filter can pass the line as is."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    try:
        duration_ms = round((time.perf_counter() - started) * 1000, 2) if started is not None else None
        fields: dict[str, Any] = {"method": method, "path": path, "status": status, "duration_ms": duration_ms,
                                  "remote_addr": remote_addr}
        if safe:
            fields[SAFE_RECORD] = True
        _emit(access_log, logging.INFO, "%s %s %s %sms", (method, path, status, duration_ms), fields)
    except Exception:  # logging must never fail a request
        logging.getLogger("gateway.logs").exception("could not log a request")


def _emit(logger: logging.Logger, level: int, msg: str, args: tuple[Any, ...],
          fields: dict[str, Any]) -> None:
    # Built by hand: Logger.log would walk the stack for the caller's file and line (a
    # third of a line's cost), which says nothing here: every line comes from this module.
    record = logger.makeRecord(logger.name, level, __file__, 0, msg, args, None, extra=fields)
    logger.handle(record)


_ATTEMPT_FIELDS = ("delivery_id", "event", "event_id", "sink", "attempt", "status_code", "duration_ms", "outcome",
                   "status", "error", "next_attempt_at", "waited_for")
"""An attempt line's fields, in their order in the line's record (a JSON line's order)."""


def attempt_fields(attempt: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an attempt's log line, from its delivery-log record (no request headers,
    no response excerpt: they may carry what the destination echoed back): the record's own
    values, but the error's code only, and for ``waited_for`` (ordered delivery: the delivery
    of the same ticket this one waited for) its id only."""
    # One map over the record's get rather than a call per field (a line per attempt).
    fields = dict(zip(_ATTEMPT_FIELDS, map(attempt.get, _ATTEMPT_FIELDS), strict=True))
    error = fields["error"]
    # "is not None" first: isinstance against an ABC is a Python-level check, and most
    # attempts have no error.
    if error is not None and isinstance(error, Mapping):
        fields["error"] = error.get("code")
    waited = fields["waited_for"]
    fields["waited_for"] = waited.get("delivery_id") if waited else None
    return fields


def log_attempt(attempt: Mapping[str, Any]) -> None:
    """The attempt's ``gateway.attempts`` line: INFO, or WARNING when it failed finally."""
    try:
        level = logging.WARNING if attempt.get("status") == "failed" else logging.INFO
        if not attempt_log.isEnabledFor(level):
            return
        error = attempt.get("error")
        waited = attempt.get("waited_for")
        fields = attempt_fields(attempt)
        detail = f" ({redact(str(error.get('message')))})" \
            if error is not None and isinstance(error, Mapping) and error.get("message") else ""
        if isinstance(fields["error"], str):
            fields["error"] = redact(fields["error"])
        if waited is not None and isinstance(waited, Mapping):
            detail += f" after {waited.get('delivery_id')} ({waited.get('status')})"
        # Everything else in the line is ours: ids, the event name, a sink name (a slug by
        # config), numbers, enums. Only the error text is redacted, here, so the filter's
        # full pass over the record (a tenth of a worker's CPU per delivery) is skipped.
        fields[SAFE_RECORD] = True
        _emit(attempt_log, level, "delivery %s of %s to %s: %s %s in %sms%s",
              (fields["delivery_id"], fields["event"], fields["sink"], fields["outcome"],
               fields["status_code"] or "-", fields["duration_ms"], detail), fields)
    except Exception:  # logging must never fail a delivery
        logging.getLogger("gateway.logs").exception("could not log a delivery attempt")
