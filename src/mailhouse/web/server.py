"""The `http` listener: webmail, admin pages and client autoconfiguration in one ASGI app.

`Server(svc)` is the node's HTTP server: it builds the ASGI app once (on the first
`listen`) and every `http` and `https` address of the node serves that one app (one session
key, one summary cache); `https` listeners speak TLS from the first byte with the node's
certificate, and plain `http` then redirects to them (web/redirect.py). `Server.listen(name, host, port)` binds the socket itself (so it returns
only once the port accepts connections), then runs uvicorn's server as a task of the
running loop. uvicorn must not install signal handlers: `mailhouse serve` owns SIGTERM/SIGHUP.

Invariants:
- Every response carries the security headers of `web.security` (CSP `default-src 'none'`).
- Each connection is admitted by the node's connection gate and must complete its request
  headers within `connguard.HEADER_TIMEOUT` (issue 12 items 5 and 6; `web/connguard.py`).
- `close()` stops accepting at once, ends server-sent event streams, and lets in-flight
  requests finish for `GRACEFUL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from mailhouse.certs import TLSALPN01, challenge_type
from mailhouse.config import Listener
from mailhouse.runtime.connlimits import ConnectionGate, policy_from_config
from mailhouse.runtime.listener import reuse_port, shared_socket
from mailhouse.services import Services
from mailhouse.web import acme, security
from mailhouse.web.connguard import guarded_protocol
from mailhouse.web.routes import SecurityHeadersApp, create_app

log = logging.getLogger(__name__)

GRACEFUL_SECONDS = 5  # in-flight HTTP requests get this long after close()
BACKLOG = 511  # uvicorn's default listen backlog


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling (the node handles SIGTERM/SIGHUP)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        return None


class HttpListener:
    def __init__(
        self,
        server: _Server,
        task: asyncio.Task[None],
        app: SecurityHeadersApp,
        validations: asyncio.Task[None] | None = None,
    ) -> None:
        self.server = server
        self.task = task
        self.app = app
        self.validations = validations

    def close(self) -> None:
        self.app.state.closing.set()  # ends SSE streams
        self.server.should_exit = True
        if self.validations is not None:
            self.validations.cancel()


def _bind(host: str, port: int) -> socket.socket:
    if (shared := shared_socket(host, port)) is not None:  # bound before root was dropped
        return shared
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port():
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


class Server:
    """The node's HTTP server: one ASGI app for all of the node's `http` addresses."""

    def __init__(self, svc: Services, gate: ConnectionGate | None = None) -> None:
        self.svc = svc
        self.gate = gate or ConnectionGate(policy_from_config(svc.cfg))
        self._app: SecurityHeadersApp | None = None
        self._validations: asyncio.Task[None] | None = None  # TLS-ALPN-01 (web/acme.py)

    async def _asgi_app(self) -> SecurityHeadersApp:
        if self._app is None:
            self._app = create_app(
                self.svc, await security.load_secret(self.svc.store, self.svc.cfg.data_dir)
            )
        return self._app

    async def listen(self, name: Listener | str, host: str, port: int) -> HttpListener:
        app = await self._asgi_app()
        sock = _bind(host, port)
        protocol: type[H11Protocol] = guarded_protocol(self.gate, self.svc.cfg.forwarded_allow_ips)
        cert, cfg = self.svc.certificate, self.svc.cfg
        context = self.svc.tls
        if Listener(name).implicit_tls and cert and cfg.acme_directory and challenge_type(cfg) == TLSALPN01:
            context = cert.acme_context()  # the validation certificates are served here only
            protocol = acme.closing_protocol(protocol, cert)  # RFC 8737 §3: ACME's handshakes only
            if self._validations is None:
                self._validations = asyncio.get_running_loop().create_task(
                    acme.follow_validations(self.svc.store, cert), name="acme-tls-alpn"
                )
        config = uvicorn.Config(
            app,
            http=protocol,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
            server_header=False,
            # X-Forwarded-For/-Proto, believed only from [web] forwarded_allow_ips (none by default:
            # uvicorn would otherwise fall back to trusting 127.0.0.1)
            proxy_headers=bool(self.svc.cfg.forwarded_allow_ips),
            forwarded_allow_ips=self.svc.cfg.forwarded_allow_ips or None,
        )
        if Listener(name).implicit_tls:
            # the node's own server context (tls.ServerCertificate): a renewed certificate reaches
            # new HTTPS handshakes too, as it does every other listener's
            config.load()
            config.ssl = context
        server = _Server(config)
        task = asyncio.get_running_loop().create_task(
            server.serve(sockets=[sock]), name=f"http-{host}:{port}"
        )
        self.svc.track(task)  # the node's drain waits for in-flight requests
        # return once uvicorn is serving on the bound socket
        for _ in range(200):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()  # raise uvicorn's start-up error here
        return HttpListener(server, task, app, self._validations)
