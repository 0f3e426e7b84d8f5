"""Errors that reach the user, each with the exit code of ARCHITECTURE.md.

The CLI prints ``str(error)`` and exits with ``error.exit_code``; the message must name
the file, line or field at fault and what was expected.
"""

from __future__ import annotations


class EdgeAgentError(Exception):
    """Base class: a failure the user can act on. Exit code 1 (runtime failure)."""

    exit_code = 1


class InputDataError(EdgeAgentError):
    """Input data that cannot be used: bad header, non-numeric cell, broken model (EX_DATAERR)."""

    exit_code = 65


class InputMissingError(EdgeAgentError):
    """An input file or folder that does not exist or cannot be opened (EX_NOINPUT)."""

    exit_code = 66


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
