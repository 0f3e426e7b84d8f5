"""Opening serial ports (device paths and pyserial URLs) with errors a user can act on.

Shared by the sources, which read ADCs, and the emulator, which writes to them: the same
device problems get the same messages and exit codes (ARCHITECTURE.md): a missing or busy
device or a refused connection is 66, a port the user may not open is 77.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from edge_agent.errors import AccessDeniedError, EdgeAgentError, InputMissingError

# udev's names for serial adapters, made from their vendor, product and serial number:
# they stay the same when an adapter is plugged in again, as /dev/ttyACM0 may not.
BY_ID = Path("/dev/serial/by-id")


def _errno(exc: BaseException) -> int | None:
    for e in (exc, exc.__cause__, exc.__context__):
        code = getattr(e, "errno", None)
        if code is not None:
            return code
    return None


def port_error(device: str, exc: BaseException) -> EdgeAgentError:
    """The error to raise for ``exc`` from opening ``device``, naming the device."""
    code = _errno(exc)
    text = str(exc)
    if code == errno.ENOENT:
        return InputMissingError(
            f"{device}: no such serial device; is the adapter plugged in? "
            "(`ls /dev/serial/by-id/` lists the serial ports)"
        )
    if code in (errno.EACCES, errno.EPERM):
        return AccessDeniedError(
            f"{device}: permission denied; the user running edge-agent must be in the "
            "'dialout' group (sudo usermod -aG dialout USER, then log in again)"
        )
    if code == errno.EBUSY or "exclusive" in text.lower() or "lock" in text.lower():
        return InputMissingError(
            f"{device}: device busy; another program has it open: another edge-agent? (its "
            "service: systemctl stop edge-agent, or edge-agent@NAME for one of several motors; "
            "or a check-wiring or run)"
        )
    if code == errno.ECONNREFUSED:
        return InputMissingError(f"{device}: connection refused; is the server listening?")
    # pyserial reports a failed termios setup without an errno ("Could not configure port").
    if code in (errno.ENOTTY, errno.EINVAL) or "configure port" in text:
        return InputMissingError(f"{device}: not a serial port ({exc})")
    return InputMissingError(f"{device}: cannot open: {exc}")


def open_port(device: str, baud: int, *, exclusive: bool = False, **kwargs: Any):
    """``serial.serial_for_url(device, baudrate=baud, **kwargs)``, with errors that name the
    device. ``exclusive`` (an advisory lock, so two programs cannot share the port) applies
    to device paths only; URLs ignore it."""
    import serial

    if "://" not in device and not os.path.exists(device):
        raise port_error(device, FileNotFoundError(errno.ENOENT, "no such file", device))
    if "://" not in device:
        kwargs["exclusive"] = exclusive
    try:
        return serial.serial_for_url(device, baudrate=baud, **kwargs)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise port_error(device, exc) from None


def stable_name(device: str) -> str | None:
    """The ``/dev/serial/by-id`` name of ``device`` when it is given by another (a kernel
    name such as /dev/ttyACM0, which may change when the adapter is plugged in again), or
    None: a URL, a by-id name already, or none found."""
    if "://" in device or Path(device).parent == BY_ID:
        return None
    try:
        real = os.path.realpath(device)
        links = sorted(BY_ID.iterdir())
    except OSError:
        return None
    for link in links:
        if os.path.realpath(link) == real:
            return str(link)
    return None
