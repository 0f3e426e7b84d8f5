"""Connecting to the broker: the URL, the TLS context, the password, and what went wrong.

The MQTT publisher (``mqtt.py``) calls these at each connection attempt. They turn
``[mqtt]`` settings into what paho needs, and an exception or refusal into one message a
user can act on, naming the broker, the file or the setting at fault and never the
password.
"""

from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge_agent.config import MqttConfig, MqttTlsConfig
from edge_agent.errors import ConfigError

CONNECT_TIMEOUT_S = 5.0  # TCP connect and TLS handshake

# TLS alerts the broker sends when it refuses our client certificate.
_CLIENT_CERT_ALERTS = (
    "UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN", "UNSUPPORTED_CERTIFICATE",
    "CERTIFICATE_EXPIRED", "CERTIFICATE_REVOKED", "ACCESS_DENIED", "DECRYPT_ERROR",
)  # fmt: skip


class ConnectError(Exception):
    """A failure to connect, already worded for the user."""

    def __init__(self, message: str, level: int = logging.WARNING) -> None:
        super().__init__(message)
        self.level = level


def parse_url(url: str | None) -> tuple[bool, str, int]:
    """``(tls, host, port)`` of ``mqtt://host[:port]`` or ``mqtts://host[:port]``."""
    if not url:
        raise ConfigError("mqtt.url is not set: expected mqtt://host[:1883] or mqtts://host[:8883]")
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(f"mqtt.url: expected mqtt:// or mqtts://, got {parts.scheme!r}")
    if "@" in parts.netloc:
        # Not echoed: it may hold a password.
        raise ConfigError(
            "mqtt.url must not hold credentials: set mqtt.username and mqtt.password_file"
        )
    if parts.path or parts.query or parts.fragment:
        raise ConfigError(f"mqtt.url={url!r}: expected no path, query or fragment")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"mqtt.url={url!r}: the port must be a number 1-65535") from None
    host = parts.hostname
    if not host:
        raise ConfigError(f"mqtt.url={url!r}: no host name")
    tls = parts.scheme == "mqtts"
    return tls, host, port or (8883 if tls else 1883)


def _no_passphrase(*_: Any) -> bytes:
    # Without this, OpenSSL would prompt on the terminal for an encrypted key.
    return b""


def tls_trust(cfg: MqttConfig) -> str:
    """What the broker's certificate is checked against, for messages."""
    tls = cfg.tls
    if tls is not None and tls.ca_file is not None:
        return f"tls.ca_file {tls.ca_file}"
    return "the system's CA certificates"


def client_cert_problem(cfg: MqttConfig, hostport: str, text: str) -> str | None:
    """A user message if ``text`` (an SSL error) says the broker refused our client
    certificate, else None."""
    up = text.upper()
    tls = cfg.tls
    cert = tls.cert_file if tls is not None else None
    if "CERTIFICATE_REQUIRED" in up or ("HANDSHAKE_FAILURE" in up and cert is None):
        return (
            f"{hostport}: TLS: the broker requires a client certificate "
            f"({text}); set mqtt.tls.cert_file and key_file"
        )
    if any(a in up for a in _CLIENT_CERT_ALERTS) and "ALERT" in up:
        which = f"client certificate {cert}" if cert is not None else "client"
        return f"{hostport}: TLS: the broker refused our {which} ({text})"
    return None


def describe(
    cfg: MqttConfig, hostport: str, exc: BaseException
) -> tuple[str, int]:
    """A message and log level for an exception raised by connect()."""
    use_tls, host, _ = parse_url(cfg.url)
    hp = hostport
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = getattr(exc, "verify_code", None)
        why = getattr(exc, "verify_message", None) or str(exc)
        if code in (62, 64) or "mismatch" in why.lower():  # X509_V_ERR_{HOSTNAME,IP}_…
            return (
                f"{hp}: TLS: the broker's certificate does not match the name "
                f"{host!r} ({why}); use a name the certificate holds in mqtt.url, "
                "or set mqtt.tls.check_hostname = false",
                logging.ERROR,
            )
        if code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
            return f"{hp}: TLS: the broker's certificate has expired ({why})", logging.ERROR
        return (
            f"{hp}: TLS: the broker's certificate is not trusted by {tls_trust(cfg)} "
            f"({why})",
            logging.ERROR,
        )
    if isinstance(exc, ssl.SSLError):
        text = str(exc)
        cert = client_cert_problem(cfg, hostport, text)
        if cert is not None:
            return cert, logging.ERROR
        if "WRONG_VERSION_NUMBER" in text.upper():
            return (
                f"{hp}: TLS handshake failed ({text}): is that port a TLS listener? "
                "mqtts:// needs one, mqtt:// is plain",
                logging.ERROR,
            )
        return f"{hp}: TLS handshake failed ({text})", logging.ERROR
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the broker's host name {host!r}: {exc.strerror}", (
            logging.WARNING
        )
    if isinstance(exc, ConnectionResetError) and use_tls:
        return (
            f"{hp}: the connection was reset during the TLS handshake: is that port a "
            "TLS listener? mqtts:// needs one, mqtt:// is plain",
            logging.WARNING,
        )
    if isinstance(exc, ConnectionRefusedError):
        return f"{hp}: connection refused (is the broker running there?)", logging.WARNING
    if isinstance(exc, TimeoutError):
        return f"{hp}: no answer within {CONNECT_TIMEOUT_S:g} s ({exc})", logging.WARNING
    if isinstance(exc, OSError):
        return f"{hp}: cannot connect: {exc.strerror or exc}", logging.WARNING
    return f"{hp}: cannot connect: {type(exc).__name__}: {exc}", logging.ERROR


def read_password(cfg: MqttConfig) -> str | None:
    """The password, read now (a fixed password file is picked up at the next try)."""
    if cfg.password is not None:
        return cfg.password.get_secret_value()
    path = cfg.password_file
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:  # its message would quote the file's bytes
        raise ConnectError(
            f"mqtt.password_file {path}: not UTF-8 text", logging.ERROR
        ) from None
    except OSError as exc:
        raise ConnectError(
            f"mqtt.password_file {path}: cannot read it: {exc.strerror or type(exc).__name__}",
            logging.ERROR,
        ) from None
    lines = text.splitlines()
    return lines[0] if lines else ""

def ssl_context(cfg: MqttConfig) -> ssl.SSLContext:
    """The TLS context from ``mqtt.tls`` (built at each connect: renewed certificate
    files are picked up)."""
    tls = cfg.tls or MqttTlsConfig()
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(tls, name)
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"mqtt.tls.{name}: {path}: file not found")
    try:
        ctx = ssl.create_default_context(
            cafile=str(tls.ca_file) if tls.ca_file is not None else None
        )
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"mqtt.tls.ca_file: {tls.ca_file}: not a PEM CA certificate bundle ({exc})"
        ) from None
    ctx.check_hostname = tls.check_hostname
    if tls.cert_file is not None:
        try:
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file), _no_passphrase)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"mqtt.tls: cannot use cert_file {tls.cert_file} with key_file "
                f"{tls.key_file} ({exc}); expected PEM files, the key unencrypted and "
                "matching the certificate"
            ) from None
    return ctx
