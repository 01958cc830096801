"""The admin token when none is configured: generated once into ``<data_dir>/admin_token``.

So that the admin API works straight after ``make run``, :func:`ensure_admin_token` is
called when a :class:`gateway.runtime.Runtime` is built from settings: with no
``gateway.admin_token`` configured it reads the file, creating it first (mode 0600, 32
random bytes, URL-safe) if it does not exist. Every process of one deployment shares the
data directory, so every process gets the same token; ``O_EXCL`` makes the first creator
win when several start at once. Deployments spread over several machines must set
``admin_token`` in the config instead.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from pathlib import Path

from gateway.config import Settings
from gateway.data_dir import ensure_private_dir

TOKEN_FILE = "admin_token"


def token_path(settings: Settings) -> Path:
    """Where the generated token lives for these settings."""
    return Path(settings.data_dir) / TOKEN_FILE


def read_or_create_token(path: Path) -> str:
    """The token in ``path``, creating the file (0600) with a new random token if missing."""
    ensure_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_complete(path)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
    return token


def _read_complete(path: Path, timeout: float = 5.0) -> str:
    # Another process may have created the file and not yet written the token.
    deadline = time.monotonic() + timeout
    while True:
        token = path.read_text(encoding="ascii").strip()
        if token or time.monotonic() > deadline:
            if len(token) < 8:
                raise RuntimeError(f"{path} does not hold an admin token; delete it to generate a new one.")
            return token
        time.sleep(0.01)


def ensure_admin_token(settings: Settings) -> Settings:
    """``settings`` with ``admin_token`` set: the configured one, else the generated one;
    unchanged when admins have tokens of their own (``admin_tokens``)."""
    if settings.admin_token or settings.admin_tokens:
        return settings
    return dataclasses.replace(settings, admin_token=read_or_create_token(token_path(settings)))
