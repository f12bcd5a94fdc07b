"""The HTTP listener's connection guard: per-address limit and a header deadline (issue 12 items 5, 6).

uvicorn's h11 protocol (``H11Protocol``) serves each connection; :func:`guarded_protocol` makes a
subclass of it that, for every connection:

* asks the node's :class:`~mailhouse.runtime.connlimits.ConnectionGate` at accept time (per
  client address, ``[connections] per_ip.http``, and the per-process cap) and answers a refused
  client ``429 Too Many Requests`` (RFC 6585 §4; ``503``, RFC 9110 §15.6.4, when the process
  itself is full) with ``Connection: close``, then closes. Reverse proxies named in ``[web]
  forwarded_allow_ips`` carry many users' connections: only the process cap applies to them;
* gives the client ``HEADER_TIMEOUT`` seconds from the connection (or from the end of the
  previous response on a kept-alive connection) to complete a request's header section, however
  it trickles the bytes (slowloris): uvicorn has only ``timeout_keep_alive``, which the first
  octet of a request cancels. A late client gets ``408 Request Timeout`` (RFC 9110 §15.5.9) and
  the connection is closed.

``limit_concurrency`` in uvicorn is global only; this is the per-address part. Requests with
both Content-Length and Transfer-Encoding are refused by ``web.limits.BodyLimit``.

Invariants: an admission is released exactly once, when the connection is lost; the header
timer never runs while a request is being served (their side past IDLE).
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any, Final

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from mailhouse.runtime.connlimits import Admission, ConnectionGate, Refusal

#: Seconds a client has to send a complete request header section (Apache's mod_reqtimeout
#: ``header=20-40``, nginx ``client_header_timeout 60s``; 10 s is plenty for a browser).
HEADER_TIMEOUT: Final = 10.0

_REFUSED: Final = {
    Refusal.PER_IP: (429, b"Too Many Requests", b"too many connections from your address\n"),
    Refusal.BUSY: (503, b"Service Unavailable", b"too many connections, try again later\n"),
    Refusal.PER_ACCOUNT: (429, b"Too Many Requests", b"too many connections\n"),
}
_TIMEOUT: Final = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def _response(why: Refusal) -> bytes:
    status, reason, body = _REFUSED[why]
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
        b"Retry-After: 10\r\nConnection: close\r\n\r\n%s" % (status, reason, len(body), body)
    )


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the node's connection gate and a header deadline."""

    gate: ConnectionGate | None = None
    proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    header_timeout: float = HEADER_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._admission: Admission | None = None
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        gate = self.gate
        if gate is not None:
            ip = self.client[0] if self.client else "?"
            got = gate.admit("http", ip, per_ip=not self._proxy(ip))
            if isinstance(got, Refusal):
                transport.write(_response(got))
                transport.close()
                return
            self._admission = got
        self._arm()

    def _proxy(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.proxies)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_late(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.write(_TIMEOUT)  # RFC 9110 §15.5.9
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is not None and self.conn.their_state is not h11.IDLE:
            self._disarm()  # the header section is complete: the request is being served

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request's headers are due within HEADER_TIMEOUT

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._disarm()
        admission, self._admission = self._admission, None
        if admission is not None:
            admission.release()


def guarded_protocol(
    gate: ConnectionGate | None, proxies: list[str], header_timeout: float = HEADER_TIMEOUT
) -> type[GuardedH11Protocol]:
    """The h11 protocol class of one HTTP server: counting at GATE, PROXIES exempt per address."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {
            "gate": gate,
            "proxies": tuple(ipaddress.ip_network(p, strict=False) for p in proxies),
            "header_timeout": header_timeout,
        },
    )
