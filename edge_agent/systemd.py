"""systemd's service notifications (sd_notify(3)) and watchdog, for ``edge-agent run``.

Under a unit with ``Type=notify`` (systemd/edge-agent.service), systemd passes a datagram
socket in ``$NOTIFY_SOCKET``; the daemon tells it there when it is ready (after the
kernels are compiled and the source is open, which on a first start takes minutes on a
Raspberry Pi), what it is doing (``STATUS=``, shown by ``systemctl status``) and that it
is stopping. With ``WatchdogSec=`` systemd also passes ``$WATCHDOG_USEC``, and restarts
the daemon when the analysis loop has not said ``WATCHDOG=1`` for that long: a hung
processing thread, or a dead MQTT thread, ends in a restart rather than a silent agent.

The protocol is a few lines over a Unix socket, written here rather than taken from a
library: python-systemd needs libsystemd and a compiler on the Pi, and the small pure
Python packages add nothing but a dependency. Outside systemd every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

# Seconds between STATUS= updates while running.
STATUS_INTERVAL_S = 10.0


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """The watchdog timeout in seconds systemd asks of process ``pid``, or None.

    As sd_watchdog_enabled(3): ``$WATCHDOG_USEC`` set to a positive number, and
    ``$WATCHDOG_PID`` unset or equal to ``pid`` (the variable is inherited by children,
    which must not ping on the daemon's behalf).
    """
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    wd_pid = environ.get("WATCHDOG_PID")
    try:
        if wd_pid and int(wd_pid) != pid:
            return None
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r / WATCHDOG_PID=%r: not integers", usec, wd_pid)
        return None
    return value / 1e6 if value > 0 else None


class Notifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET``; does nothing when it is unset.

    ``environ`` and ``clock`` are for tests; by default the process's environment and
    ``time.monotonic``.
    """

    def __init__(self, environ: Mapping[str, str] | None = None, clock=time.monotonic) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        if address is not None and address.startswith("@"):  # Linux abstract namespace
            address = "\0" + address[1:]
        self.address = address
        self.watchdog_s = watchdog_interval(env, os.getpid()) if address else None
        self._clock = clock
        self._last_ping = -float("inf")
        self._last_status = -float("inf")
        self._failed = False
        self._sock: socket.socket | None = None
        if address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def send(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields in one datagram; False if not under systemd or if the
        send failed (logged once: systemd will act on the missing pings by itself)."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("cannot notify systemd at %s: %s", self.address.lstrip("\0"), exc)
                self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str) -> None:
        now = self._clock()
        self.send("READY=1", f"STATUS={status}")
        self._last_status = now
        if self.watchdog_s is not None:
            self.send("WATCHDOG=1")
            self._last_ping = now

    def tick(self, status=None) -> None:
        """From the analysis loop, at least every few seconds: a ``WATCHDOG=1`` every half
        watchdog interval, and a new ``STATUS=`` from ``status()`` every
        ``STATUS_INTERVAL_S``."""
        if self._sock is None:
            return
        now = self._clock()
        if self.watchdog_s is not None and now - self._last_ping >= self.watchdog_s / 2:
            self.send("WATCHDOG=1")
            self._last_ping = now
        if status is not None and now - self._last_status >= STATUS_INTERVAL_S:
            self.send(f"STATUS={status()}")
            self._last_status = now

    def reloading(self) -> None:
        """``RELOADING=1``; :meth:`ready` says when the reload is done. systemd wants the
        time of the request (``MONOTONIC_USEC``) from version 253 on."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
