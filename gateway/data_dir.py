"""The data directory (``gateway.data_dir``, ``.gateway`` by default) is private to its owner.

It holds the embedded Redis (tickets with customers' details, sinks with destination URLs
that carry credentials, their secrets), the generated admin token and the metrics files: the
directory is created 0700 and the embedded redis-server writes its files 0600 (its umask,
:data:`PRIVATE_UMASK`). A directory that exists with group or other access (made by an
earlier version, or by hand) is narrowed to 0700 at start, with a log line saying so.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_UMASK = 0o077
"""For processes writing into the data directory: files 0600, directories 0700."""

log = logging.getLogger("gateway.data_dir")


def ensure_private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and missing parents) with mode 0700, or narrow an existing one to
    0700 when others could read or enter it. Returns it, resolved."""
    target = Path(path).resolve()
    target.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    mode = stat.S_IMODE(target.stat().st_mode)
    if mode & ~PRIVATE_DIR_MODE:
        os.chmod(target, PRIVATE_DIR_MODE)
        log.warning("data directory %s was mode %04o (others could read tickets and sink credentials); "
                    "set it to %04o", target, mode, PRIVATE_DIR_MODE)
    return target
