"""Start real `mailhouse serve` processes for end-to-end tests and benchmarks.

No pytest dependency: benchmarks use `MailhouseProcess` too. Every listener binds a free
port on the chosen loopback address; the process is stopped by PID.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mailhouse.accounts.admin import Admin
from mailhouse.config import Listener
from tests.peers.ports import free_port, wait_port

# every listener but https, which test servers start only when asked (plain http redirects to it)
ALL_SERVICES: tuple[str, ...] = tuple(s for s in Listener if s is not Listener.HTTPS)

# MAILHOUSE_TEST_SERVICES=smtp,imap narrows what test servers start (handy while a service is in progress).
SERVICES = tuple(
    s
    for s in ALL_SERVICES
    if s in os.environ.get("MAILHOUSE_TEST_SERVICES", ",".join(ALL_SERVICES)).split(",")
)
PASSWORD = "correct-horse-42"


class MailhouseProcess:
    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        hostname: str = "mail.example.org",
        services: tuple[str, ...] = SERVICES,
        ports: dict[str, int] | None = None,
        extra: str = "",
        store_url: str | None = None,
        verify_inbound: bool = False,
    ) -> None:
        self.root = root
        self.host = host
        self.hostname = hostname
        self.data_dir = root / "data"
        self.ports = dict(ports or {})
        for svc in services:
            if svc not in self.ports:
                port = free_port(host)
                while port in self.ports.values():  # the kernel may hand out a port twice in a row
                    port = free_port(host)
                self.ports[svc] = port
        self.cfgfile = root / "mailhouse.toml"
        listen = "\n".join(f'{svc} = "{host}:{port}"' for svc, port in self.ports.items())
        store = f'[store]\nurl = "{store_url}"\n' if store_url else ""
        if not verify_inbound and "[mailauth]" not in extra:
            # SPF/DKIM lookups would go to the system resolver, which is off this machine:
            # tests that want them pass verify_inbound=True with [dns] nameservers on loopback.
            store += "[mailauth]\nverify_inbound = false\n"
        if "[dns]" not in extra:
            # Never the system resolver (it is off this machine): an unanswered loopback port
            # makes every lookup fail at once; tests that need DNS pass their dnsmasq.
            store += '[dns]\nnameservers = ["127.0.0.1:9"]\n'
        self.cfgfile.write_text(
            f'hostname = "{hostname}"\ndata_dir = "{self.data_dir}"\n{extra}\n[listen]\n{listen}\n{store}'
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "serve.log"

    def env(self) -> dict[str, str]:
        return dict(os.environ, MAILHOUSE_CONFIG=str(self.cfgfile), PYTHONUNBUFFERED="1")

    def cli(self, *args: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [sys.executable, "-m", "mailhouse", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=120,
        )
        if check and r.returncode != 0:
            raise RuntimeError(f"mailhouse {' '.join(args)} failed: {r.stderr}")
        return r

    def admin(self, fn: Callable[[Admin], Awaitable[Any]]) -> Any:
        """Run FN(Admin) against this instance's store in-process (much faster than the CLI,
        which has its own tests); in a thread so it also works under a running event loop."""
        from mailhouse import config as config_mod
        from mailhouse.store import open_store

        cfg = config_mod.load(str(self.cfgfile))

        async def run() -> Any:
            store = open_store(cfg.store, cfg.data_dir)
            await store.open()
            try:
                return await fn(Admin(store, cfg.dkim_selector))
            finally:
                await store.close()

        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            return ex.submit(asyncio.run, run()).result()

    def add_domain(self, domain: str) -> None:
        self.admin(lambda a: a.add_domain(domain))

    def add_user(self, address: str, password: str = PASSWORD, *extra: str) -> None:
        opts = {"quota_bytes": 0, "quota_messages": 0, "is_admin": False}
        args = list(extra)
        while args:
            flag = args.pop(0)
            if flag == "--admin":
                opts["is_admin"] = True
            elif flag in ("--quota-bytes", "--quota-messages"):
                opts[flag[2:].replace("-", "_")] = int(args.pop(0))
            else:
                raise ValueError(f"unknown user option {flag}")
        self.admin(lambda a: a.add_user(address, password, **opts))  # type: ignore[arg-type]

    def start(self, timeout: float = 30.0) -> MailhouseProcess:
        logf = open(self.log, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailhouse", "serve"],
            env=self.env(),
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for svc, port in self.ports.items():
            try:
                wait_port(self.host, port, timeout=timeout, proc=self.proc)
            except Exception as e:
                raise RuntimeError(
                    f"mailhouse did not open {svc}: {e}\n{self.log.read_text()[-3000:]}"
                ) from e
        return self

    def addr(self, svc: str) -> tuple[str, int]:
        return self.host, self.ports[svc]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        code = self.proc.returncode
        self.proc = None
        return code

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def logtext(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_log(self, needle: str, timeout: float = 10.0) -> bool:
        end = time.time() + timeout
        while time.time() < end:
            if needle in self.logtext():
                return True
            time.sleep(0.05)
        return False

    def __enter__(self) -> MailhouseProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
