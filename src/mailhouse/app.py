"""`mailhouse serve`: start every configured listener in one foreground process.

Each service of `[listen]` (a `config.Listener`) maps through `SERVERS` to its adapter
module's `Server` class. A node builds its `services.Services` once, then ONE `Server` per
adapter module, shared by all of that module's listeners (smtp, submission and submissions
share the SMTP server; imap and imaps share the IMAP server's state), and calls
`Server.listen(name, host, port)` once per configured address.
With `[server] workers = N > 1` the process binds the listening sockets once and forks N
workers that accept from them and open the same store, so ingest uses every core
(`runtime.listener.bind_shared`; the web server's sockets use SO_REUSEPORT).
Connection limits (issue 12 item 5): one `runtime.connlimits.ConnectionGate` per node, shared by
every adapter's `Server`; with workers its counts live in a table mapped from
`data_dir/connections.shm` before the fork, so per-address and per-account limits hold across them.
Privileges (issue 16 §1, runtime/privileges.py): started as root with `user` set, `serve` binds
every listener and reads the key, hands the data directory to the user and drops root before
building anything that writes files or forking workers; as root on a port < 1024 without `user`
it refuses unless `allow_root = true`. Systemd socket activation (LISTEN_FDS) hands over
sockets for configured addresses instead: those are not bound again (runtime/listener.py).
SIGTERM (and SIGINT) stop accepting, let sessions finish for `DRAIN_SECONDS`, then
exit 0; SIGHUP re-reads the configuration file and reports problems without stopping.
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from mailhouse import __version__
from mailhouse import config as config_mod
from mailhouse import tls as tls_mod
from mailhouse.accounts.housekeeping import Housekeeper
from mailhouse.accounts.throttle import LoginThrottle
from mailhouse.config import Config, Listener
from mailhouse.queue.owner import node_id
from mailhouse.reports.schedule import DailyReports
from mailhouse.runtime import cpupool, privileges, sdnotify
from mailhouse.runtime.beacon import Beacon, NodeInfo
from mailhouse.runtime.connlimits import ConnectionGate, CountTable, policy_from_config
from mailhouse.runtime.listener import adopt_listen_fds, bind_shared
from mailhouse.runtime.watchdog import Watchdog
from mailhouse.services import Services, build, load_certificate
from mailhouse.store import open_store

log = logging.getLogger(__name__)

DRAIN_SECONDS = 10.0
CERT_CHECK_SECONDS = 30.0  # how often the certificate files are checked for a renewal
SWITCH_INTERVAL = 0.001  # seconds: sys.setswitchinterval for a node (see run_node)


class Listening(Protocol):
    """What `Server.listen` returns: something the node closes to stop accepting."""

    def close(self) -> None: ...


class NodeServer(Protocol):
    """An adapter's per-node server: `Server(svc, gate)`, then `listen` once per address."""

    async def listen(self, name: Listener, host: str, port: int) -> Listening: ...


# The static listener table: `[listen]` key → "module:Server". A node imports only the adapters
# it runs (a command such as `mailhouse user add` never loads the web stack); every entry must
# exist — a missing module is a bug, not a service to skip.
SERVERS: dict[Listener, str] = {
    Listener.SMTP: "mailhouse.smtpserver.server:Server",
    Listener.SUBMISSION: "mailhouse.smtpserver.server:Server",
    Listener.SUBMISSIONS: "mailhouse.smtpserver.server:Server",
    Listener.IMAP: "mailhouse.imapserver.server:Server",
    Listener.IMAPS: "mailhouse.imapserver.server:Server",
    Listener.POP3: "mailhouse.pop3server.server:Server",
    Listener.POP3S: "mailhouse.pop3server.server:Server",
    Listener.HTTP: "mailhouse.web.server:Server",
    Listener.HTTPS: "mailhouse.web.server:Server",
    Listener.MANAGESIEVE: "mailhouse.managesieve.server:Server",
}


class StartupError(Exception):
    """Serving cannot start; the message is one line saying what to do (no traceback)."""


def bind_error(name: Listener | str, host: str, port: int, e: OSError) -> StartupError:
    """A listener that cannot bind, in words an operator can act on."""
    where = f"cannot listen for {name} on {host}:{port}"
    if e.errno == errno.EADDRINUSE:
        return StartupError(f"{where}: the address is in use (is Mailhouse or another mail server running?)")
    if e.errno == errno.EACCES and port < 1024:
        return StartupError(
            f"{where}: ports below 1024 need root or CAP_NET_BIND_SERVICE (`mailhouse service install`"
            " sets that up; see docs/deploy.md), or use an unprivileged port"
        )
    if e.errno == errno.EADDRNOTAVAIL:
        return StartupError(f"{where}: this machine has no such address")
    return StartupError(f"{where}: {e.strerror or e}")


def server_class(name: Listener) -> Callable[[Services, ConnectionGate | None], NodeServer]:
    """The `Server` class serving listener NAME."""
    mod_name, _, attr = SERVERS[name].partition(":")
    cls: Callable[[Services, ConnectionGate | None], NodeServer] = getattr(
        importlib.import_module(mod_name), attr
    )
    return cls


def node_servers(
    svc: Services, names: Iterable[Listener], gate: ConnectionGate | None = None
) -> dict[Listener, NodeServer]:
    """One `Server` per adapter module for the listeners NAMES, shared by that module's listeners;
    all of them count connections at GATE (the node's; a fresh one when None)."""
    gate = gate or ConnectionGate(policy_from_config(svc.cfg))
    by_module: dict[str, NodeServer] = {}
    out: dict[Listener, NodeServer] = {}
    for name in names:
        path = SERVERS[name]
        if path not in by_module:
            by_module[path] = server_class(name)(svc, gate)
        out[name] = by_module[path]
    return out


async def run_node(
    cfg: Config,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    table: CountTable | None = None,
    ready_fd: int | None = None,
    certificate: tls_mod.ServerCertificate | None = None,
) -> int:
    """Run one node; TABLE is the connection count table shared with the other workers.

    READY_FD (a worker): one byte is written there once the listeners are up, for the parent to
    tell systemd; the main process of a single-process node tells systemd itself.
    CERTIFICATE: read before root was dropped (`serve`)."""
    svc = await build(cfg, certificate)
    listening: list[Listening] = []
    watchdog = Watchdog()  # issue 12: warn, naming the culprit, when something blocks the loop
    watchdog.start()
    # Offload threads (search decoding, big MIME parses, DKIM, sanitising) hold the GIL in C
    # loops; the loop thread asks for it back and waits up to the switch interval each time
    # (5 ms by default, several times per event under load): 1 ms keeps the loop's latency low.
    sys.setswitchinterval(SWITCH_INTERVAL)
    # issue 12 item 1: GIL-holding jobs go to worker processes of this serving process (started
    # with the first job, so each forked worker has its own; killed on stop)
    cpupool.configure(workers=cfg.cpu_workers, queue=cfg.cpu_queue, budget=cfg.cpu_budget)
    gate = ConnectionGate(policy_from_config(cfg), table)
    housekeeper = Housekeeper(svc.store)
    cert_watch: asyncio.Future[None] | None = None
    acme: asyncio.Future[None] | None = None
    beacon: Beacon | None = None
    reports = DailyReports(cfg, svc.store, svc.outbound.enqueue, svc.outbound.owner)  # issue 14 §2, 15 §4
    try:
        servers = node_servers(svc, cfg.listen, gate)
        for name, addrs in cfg.listen.items():
            for host, port in addrs:
                try:
                    listening.append(await servers[name].listen(name, host, port))
                except OSError as e:
                    raise bind_error(name, host, port, e) from None
                log.info("%s listening on %s:%d", name, host, port)
        await svc.outbound.start()
        if svc.certificate is not None:
            cert_watch = asyncio.ensure_future(_watch_certificate(svc.certificate))
            if cfg.acme_directory:  # issue 16 §2: order and renew the certificate (certs/acme.py)
                from mailhouse.certs.acme import AcmeManager

                acme = asyncio.ensure_future(AcmeManager(cfg, svc.store, svc.certificate).run())
        beacon = Beacon(
            svc.store,
            NodeInfo(
                node_id(cfg.hostname, cfg.data_dir),
                cfg.hostname,
                __version__,
                os.getpid(),
                time.time(),
                tuple(f"{name}={h}:{p}" for name, addrs in cfg.listen.items() for h, p in addrs),
                time.time(),
            ),
        )
        beacon.start()  # `mailhouse status`: this node serves
        housekeeper.start()  # hourly purge of expired bans/marks and old limit events
        reports.start()
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        main = ready_fd is None
        try:
            loop.add_signal_handler(
                signal.SIGHUP, _reload, cfg, gate, svc.auth.limiter, main, svc.certificate
            )
        except (NotImplementedError, RuntimeError):
            pass
        web = cfg.listen.get(Listener.HTTP)
        log.info(
            "Mailhouse %s ready (pid %d, store %s)%s",
            cfg.hostname,
            os.getpid(),
            cfg.store.split("://")[0],
            f"; webmail and admin at http://{web[0][0]}:{web[0][1]}/" if web else "",
        )
        if main and (problem := cfg.hostname_warning()):
            log.warning("%s", problem)
        if ready:
            ready.set()
        if ready_fd is not None:
            os.write(ready_fd, b".")
            os.close(ready_fd)
        else:
            sdnotify.notify(sdnotify.READY, f"STATUS=serving {len(listening)} listener(s)")
        await stop.wait()
        if main:
            sdnotify.notify(sdnotify.STOPPING)
        log.info("stopping: no new connections, draining %d session(s)", len(svc.sessions))
        svc.draining = True
        for s in listening:
            s.close()
        if svc.sessions:
            _, pending = await asyncio.wait(set(svc.sessions), timeout=DRAIN_SECONDS)
            for t in pending:
                t.cancel()
        await svc.outbound.stop()
        return 0
    finally:
        if cert_watch is not None:
            cert_watch.cancel()
        if acme is not None:
            acme.cancel()
        if beacon is not None:
            await beacon.stop()
        for s in listening:
            s.close()
        await housekeeper.stop()
        await reports.stop()
        await watchdog.stop()
        await cpupool.shutdown()
        await svc.store.close()


def _reload(
    cfg: Config,
    gate: ConnectionGate | None = None,
    throttle: LoginThrottle | None = None,
    main: bool = False,
    certificate: tls_mod.ServerCertificate | None = None,
) -> None:
    if main:
        sdnotify.notify(sdnotify.RELOADING)
    try:
        _apply_reload(cfg, gate, throttle)
        if certificate is not None:
            _reload_certificate(certificate)
    finally:
        if main:
            sdnotify.notify(sdnotify.READY)


def _reload_certificate(certificate: tls_mod.ServerCertificate) -> None:
    try:
        certificate.reload()
    except tls_mod.CertificateError as e:
        log.error("certificate not reloaded, keeping the running one: %s", e)
        return
    log.info("TLS certificate reloaded from %s", certificate.cert)


async def _watch_certificate(certificate: tls_mod.ServerCertificate) -> None:
    """Reload the certificate when its files change (a renewal by certbot or another node)."""
    while True:
        await asyncio.sleep(CERT_CHECK_SECONDS)
        if certificate.changed():
            _reload_certificate(certificate)


def _apply_reload(cfg: Config, gate: ConnectionGate | None, throttle: LoginThrottle | None) -> None:
    try:
        new = config_mod.load(cfg.source_path if cfg.source_path != "<defaults>" else None)
    except config_mod.ConfigError as e:
        log.error("reload failed, keeping the running configuration: %s", e)
        return
    # Limits and timeouts apply to new sessions at once; listeners and store need a restart.
    for attr in (
        "max_message_size",
        "max_recipients",
        "smtp_idle_timeout",
        "imap_idle_timeout",
        "pop3_idle_timeout",
        "routes",
        "relayhost",
        "allow_plaintext_auth",
        "queue_lifetime",
        "queue_delay_warning",
        "queue_retry_base",
        "queue_retry_max",
        "dns_nameservers",
        "verify_inbound",
        "pregreet_wait",
        "conn_per_ip",
        "conn_per_user_ip",
        "conn_per_account",
        "max_connections",
        "trusted_networks",
        "pregreet_ttl",
        "pregreet_fail_ttl",
        "dns_budget",
        "auth_limits",
    ):
        setattr(cfg, attr, getattr(new, attr))
    if gate is not None:
        gate.policy = policy_from_config(cfg)  # new connections and logins get the new limits
    if throttle is not None:
        throttle.limits = cfg.auth_limits  # [auth]: the next login attempt gets the new penalties and bans
    log.info("configuration reloaded from %s", cfg.source_path)


async def serve(cfg: Config) -> int:
    """Serve CFG: as root with `user` set, bind, read the key and drop root first (runtime/privileges.py)."""
    if adopted := adopt_listen_fds():  # systemd socket activation: its sockets, nothing to bind
        configured = {addr for addrs in cfg.listen.values() for addr in addrs}
        if stray := [f"{h}:{p}" for h, p in adopted if (h, p) not in configured]:
            raise StartupError(f"systemd passed sockets for {', '.join(stray)}, which [listen] does not name")
        log.info("listening on %d socket(s) from systemd", len(adopted))
    ports = [port for addrs in cfg.listen.values() for h, port in addrs if (h, port) not in adopted]
    certificate: tls_mod.ServerCertificate | None = None
    try:
        privileges.check_root(ports, has_user=cfg.user is not None, allow_root=cfg.allow_root)
        if cfg.user is not None and os.geteuid() == 0:
            certificate = _bind_and_drop(cfg, privileges.identity(cfg.user, cfg.group))
        elif cfg.user is not None:
            privileges.check_not_root(cfg.user)
    except privileges.PrivilegeError as e:
        raise StartupError(str(e)) from None
    if cfg.workers <= 1:
        return await run_node(cfg, certificate=certificate)
    return await _serve_workers(cfg, certificate)


def _bind_and_drop(cfg: Config, who: privileges.Identity) -> tls_mod.ServerCertificate:
    """As root: bind every listener, read the certificate, hand the data directory to WHO, become
    WHO — before anything opens the store, so every file it writes belongs to WHO."""
    _bind_listeners(cfg, web=True)
    # import what serving loads lazily while root can read every file (the interpreter may live
    # where the user cannot read, e.g. under /root)
    for name in cfg.listen:
        server_class(name)
    open_store(cfg.store, cfg.data_dir)  # the backend's modules (the store is not opened here)
    if cfg.acme_directory:  # the ACME client (requests locates its CA bundle when imported)
        importlib.import_module("mailhouse.certs.acme")
    certificate = load_certificate(cfg)  # the key may be readable by root only
    privileges.prepare_data_dir(cfg.data_dir, who)
    if cfg.log_file:
        privileges.prepare_log_file(cfg.log_file, who)
    if cfg.acme_directory:  # the renewals it writes must stay the user's to replace and read
        privileges.prepare_acme_files(certificate.cert, certificate.key, who)
    privileges.drop(who)
    privileges.check_data_dir(cfg.data_dir, who)
    return certificate


def _bind_listeners(cfg: Config, *, web: bool) -> None:
    """One listening socket per address, inherited by every worker (runtime/listener.py); the web
    server's only when WEB (without it, each worker binds its own with SO_REUSEPORT)."""
    for name, addrs in cfg.listen.items():
        for host, port in addrs if web or name not in (Listener.HTTP, Listener.HTTPS) else ():
            try:
                bind_shared([(host, port)])
            except OSError as e:
                raise bind_error(name, host, port, e) from None


async def _serve_workers(cfg: Config, certificate: tls_mod.ServerCertificate | None = None) -> int:
    """Fork `cfg.workers` children, each a full node on the listening sockets bound here."""
    # Create the data dir, certificate and schema once before forking.
    svc = await build(cfg, certificate)
    await svc.store.close()
    # issue 12 item 5: the workers count connections per address and account in one table
    table = CountTable(cfg.data_dir / "connections.shm")
    _bind_listeners(cfg, web=False)  # already bound (the web's too) when root was dropped
    pids = []
    ready_r, ready_w = os.pipe()  # each worker writes one byte once it serves (sd_notify READY)
    for _ in range(cfg.workers):
        pid = os.fork()
        if pid == 0:  # child: a fresh event loop
            os.environ["MAILHOUSE_WORKER"] = "1"
            os.close(ready_r)
            code = 0
            try:
                code = _run_child(cfg, table, ready_w, certificate)
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(ready_w)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload_workers, pids)
    readiness = asyncio.ensure_future(asyncio.to_thread(_await_workers, ready_r, cfg.workers))
    waiter = asyncio.ensure_future(asyncio.to_thread(os.wait))
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    sdnotify.notify(sdnotify.STOPPING)
    readiness.cancel()
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in pids:
        try:
            await asyncio.to_thread(os.waitpid, p, 0)
        except ChildProcessError:
            pass
    stopper.cancel()
    return 0


def _await_workers(fd: int, n: int) -> None:
    """Tell systemd READY once N workers wrote their byte (EOF first: one died, no READY)."""
    got = 0
    try:
        while got < n and (chunk := os.read(fd, n - got)):
            got += len(chunk)
    finally:
        os.close(fd)
    if got == n:
        sdnotify.notify(sdnotify.READY, f"STATUS=serving with {n} workers")


def _reload_workers(pids: list[int]) -> None:
    sdnotify.notify(sdnotify.RELOADING)
    _signal_all(pids, signal.SIGHUP)  # each worker re-reads the configuration itself
    sdnotify.notify(sdnotify.READY)


def _signal_all(pids: list[int], sig: int) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def _run_child(
    cfg: Config, table: CountTable, ready_fd: int, certificate: tls_mod.ServerCertificate | None
) -> int:
    asyncio.set_event_loop(None)
    return asyncio.run(run_node(cfg, table=table, ready_fd=ready_fd, certificate=certificate))
