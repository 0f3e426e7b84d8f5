"""Errors that reach the user, each with the exit code of ARCHITECTURE.md.

The CLI prints ``str(error)`` and exits with ``error.exit_code``; the message must name
the file, line or field at fault and what was expected.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


class EdgeAgentError(Exception):
    """Base class: a failure the user can act on. Exit code 1 (runtime failure)."""

    exit_code = 1


class InputDataError(EdgeAgentError):
    """Input data that cannot be used: bad header, non-numeric cell, broken model (EX_DATAERR)."""

    exit_code = 65


class InputMissingError(EdgeAgentError):
    """An input file or folder that does not exist or cannot be opened (EX_NOINPUT)."""

    exit_code = 66


class StorageError(EdgeAgentError):
    """A write the disk refused: full, or failing (EX_IOERR). The daemon holds what it
    could not write in memory and tries again; other commands stop."""

    exit_code = 74


class DeliveryPendingError(EdgeAgentError):
    """Messages the broker has not acknowledged in time; kept in the outbox (EX_TEMPFAIL)."""

    exit_code = 75


class AccessDeniedError(EdgeAgentError):
    """A device or file this user may not open, e.g. a serial port without the ``dialout``
    group (EX_NOPERM)."""

    exit_code = 77


class ConfigError(EdgeAgentError):
    """A configuration value that is missing, of the wrong type or out of range (EX_CONFIG)."""

    exit_code = 78


def sqlite_error(
    path: Path | str, what: str, exc: sqlite3.Error, doing: str, busy_timeout_s: float
) -> EdgeAgentError:
    """A user-facing error for an SQLite failure on ``path`` (``what``: "the event store",
    "the outbox database") while ``doing`` something, naming the file and the cause."""
    name = getattr(exc, "sqlite_errorname", "")  # Python >= 3.11
    text = str(exc)
    low = text.lower()
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "not a database" in low or "malformed" in low:
        return InputDataError(
            f"{path}: not a usable SQLite database ({text}); expected edge-agent's store "
            f"({what}). Move the file aside or set [store] path to another file"
        )
    if name.startswith("SQLITE_READONLY") or "readonly" in low or name == "SQLITE_PERM":
        return AccessDeniedError(
            f"{path}: cannot write {what} ({text}); the user running edge-agent needs write "
            "access to the file and its folder"
        )
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in low:
        return InputMissingError(
            f"{path}: cannot open {what} ({text}); expected a writable file path (not a "
            "folder) in an existing, writable folder"
        )
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in low:
        return EdgeAgentError(
            f"{path}: the database is locked by another connection or process for more than "
            f"{busy_timeout_s:g} s while {doing} ({text})"
        )
    io_error = name.startswith("SQLITE_IOERR") or "disk i/o error" in low
    # Opening a WAL database makes its -wal and -shm files: on a full disk that fails as
    # an I/O error, not as SQLITE_FULL.
    if name.startswith("SQLITE_FULL") or "disk is full" in low or (io_error and _full(path)):
        return StorageError(f"{path}: disk full while {doing} ({text}); free space on its disk")
    if io_error:
        return StorageError(f"{path}: the disk failed while {doing} ({text})")
    return EdgeAgentError(f"{path}: {doing} failed: {text}")


def _full(path: Path | str) -> bool:
    """The file system holding ``path`` has no block left for this user (root may write
    the blocks reserved for it)."""
    try:
        st = os.statvfs(Path(path).parent)
    except OSError:
        return False
    return (st.f_bfree if os.geteuid() == 0 else st.f_bavail) == 0
