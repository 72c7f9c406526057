"""Whether a server answers: a tracking server or a Ray cluster, checked with a short timeout before
pyrovae writes anything, so that an address out of reach is one line, not a hang."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from .errors import ConfigError

TIMEOUT = 3.0  # seconds


def check_reachable(address: str, what: str, default_port: int | None = None, timeout: float = TIMEOUT) -> None:
    """One line unless a TCP connection to ``address`` (``host:port`` or a URL) opens within
    ``timeout`` seconds. ``what`` names the server in the message."""
    parts = urlsplit(address if "//" in address else f"//{address}")
    try:
        host, port = parts.hostname, parts.port or default_port
    except ValueError as e:  # a port that is not a number
        raise ConfigError(f"{what} address {address!r} is not host:port: {e}") from e
    if not host or port is None:
        raise ConfigError(f"{what} address {address!r} needs a host and a port (host:port)")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise ConfigError(
            f"cannot reach the {what} at {address} ({reason}, tried for {timeout:g} s); start it, "
            "or give another address"
        ) from e
