"""Debian's Rspamd on loopback for tests and benchmarks, with its own configuration directory.

The stock ``/etc/rspamd`` is read as ``$CONFDIR`` (every module's defaults), but the top-level file is
ours: one worker on a free 127.0.0.x port — the *normal* worker (``/checkv2``, what
``[spam] rspamd_url`` talks to) or, with ``milter=True``, the *proxy* worker in milter mode that scans
by itself (``self_scan``: what Postfix's ``smtpd_milters = inet:HOST:PORT`` talks to). No controller
(no password to manage), no Redis (statistics and the modules that need it stay off), no fuzzy
storage, and DNS only from the given nameserver (the test dnsmasq): nothing leaves loopback.
``$LOCAL_CONFDIR``, ``$DBDIR``, ``$RUNDIR`` and ``$LOGDIR`` all point at a temporary directory,
and ``local_d`` adds files to its ``local.d/`` (e.g. a multimap rule).

With ``fast_start=True`` (tests) Rspamd gets a tiny TLD list and no Hyperscan: it answers within
seconds instead of compiling ~10k TLD suffixes and its regexps first. Benchmarks use the stock
ones (``fast_start=False``), as a real installation runs.

Example::

    rs = RspamdInstance(nameserver=dns.nameserver, local_d={"multimap.conf": "..."}).start()
    rs.url          # "http://127.0.0.1:40123"
    rs.stop()       # by PID

Invariant: only loopback; the process is started in its own session and stopped by its PID.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from ._proc import find_binary, stop_process, tail
from .ports import check_loopback, free_port, port_is_open

__all__ = ["RspamdInstance"]

#: The TLDs the tests use: what Rspamd's URL parser knows with ``fast_start``.
TEST_TLDS = ("test", "example", "invalid", "localhost", "org", "com", "net")

_TOP = """\
.include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}}
logging {{
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    .include "$CONFDIR/logging.inc"
}}
{worker}
"""

_NORMAL = """\
worker "normal" {{
    bind_socket = "{host}:{port}";
    .include "$CONFDIR/worker-normal.inc"
    count = 1;
}}
"""

_MILTER = """\
worker "rspamd_proxy" {{
    bind_socket = "{host}:{port}";
    milter = yes;
    timeout = 120s;
    upstream "local" {{
        default = yes;
        self_scan = yes;
    }}
    count = {count};
    discard_on_reject = false;
    quarantine_on_reject = false;
    spam_header = "X-Spam";
    reject_message = "Spam message rejected";
}}
"""


class RspamdInstance:
    def __init__(
        self,
        *,
        nameserver: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        milter: bool = False,
        workers: int = 1,
        local_d: Mapping[str, str] | None = None,
        fast_start: bool = True,
        base_dir: str | Path | None = None,
    ) -> None:
        self.host = check_loopback(host)
        self.port = port
        self.nameserver = nameserver
        self.milter = milter
        self.workers = workers
        self.local_d = dict(local_d or {})
        self.fast_start = fast_start
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="mh-rspamd-"))
        self.log_file = self.base_dir / "rspamd.log"
        self.stderr_file = self.base_dir / "rspamd.stderr"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The normal worker's base URL (``[spam] rspamd_url``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def milter_address(self) -> str:
        """``inet:HOST:PORT`` for Postfix's ``smtpd_milters``."""
        return f"inet:{self.host}:{self.port}"

    def _write_config(self) -> Path:
        local = self.base_dir / "local.d"
        local.mkdir(parents=True, exist_ok=True)
        options: list[str] = []
        if self.nameserver:
            options.append(f'dns {{ nameserver = ["{self.nameserver}"]; timeout = 1s; retransmits = 1; }}')
        else:  # no DNS at all: a port nobody listens on, so nothing leaves the machine
            options.append('dns { nameserver = ["127.0.0.1:9"]; timeout = 0.2s; retransmits = 0; }')
        if self.fast_start:
            tld = self.base_dir / "tld.dat"
            tld.write_text("\n".join(TEST_TLDS) + "\n")
            options += [f'url_tld = "{tld}";', "disable_hyperscan = true;"]
        (local / "options.inc").write_text("\n".join(options) + "\n")
        # fuzzy_check would ask rspamd.com's fuzzy servers; never from a test
        files = {"fuzzy_check.conf": "enabled = false;\n", **self.local_d}
        for name, text in files.items():
            (local / name).write_text(text)
        worker = (_MILTER if self.milter else _NORMAL).format(
            host=self.host, port=self.port, count=self.workers
        )
        conf = self.base_dir / "rspamd.conf"
        conf.write_text(_TOP.format(worker=worker))
        shutil.chown(self.base_dir, "_rspamd", "_rspamd")
        for p in self.base_dir.rglob("*"):
            shutil.chown(p, "_rspamd", "_rspamd")
        return conf

    def start(self, timeout: float = 180.0) -> RspamdInstance:
        if self.proc is not None and self.proc.poll() is None:
            return self
        if self.port is None:
            self.port = free_port(self.host)
        conf = self._write_config()
        d = self.base_dir
        cmd = [
            find_binary("rspamd"),
            "-f",
            "-u",
            "_rspamd",
            "-g",
            "_rspamd",
            "-c",
            str(conf),
            f"--var=LOCAL_CONFDIR={d}",
            f"--var=DBDIR={d}",
            f"--var=RUNDIR={d}",
            f"--var=LOGDIR={d}",
        ]
        with open(self.stderr_file, "ab") as err:
            self.proc = subprocess.Popen(cmd, stdout=err, stderr=err, start_new_session=True)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop(cleanup=False)
            raise
        return self

    def _ready(self) -> bool:
        if self.milter:  # the socket speaks the milter protocol, not HTTP
            return port_is_open(self.host, self.port) and "rspamd_proxy" in self.logtext()
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1.0) as r:  # noqa: S310 (loopback)
                return r.read().strip() == b"pong"
        except OSError:
            return False

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"rspamd exited:\n{tail(self.stderr_file)}\n{tail(self.log_file)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"rspamd did not answer within {timeout}s:\n{tail(self.log_file)}")
            time.sleep(0.2)

    def check(self, message: bytes, **headers: str) -> dict:
        """``/checkv2`` from the test itself (normal worker): Rspamd's JSON reply."""
        req = urllib.request.Request(f"{self.url}/checkv2", data=message, method="POST")
        for k, v in headers.items():
            req.add_header(k.replace("_", "-"), v)
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 (loopback)
            return json.loads(r.read())

    def log(self, lines: int = 60) -> str:
        return tail(self.log_file, lines)

    def logtext(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, cleanup: bool = True) -> None:
        stop_process(self.proc)
        self.proc = None
        if cleanup and self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> RspamdInstance:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RspamdInstance {self.host}:{self.port} pid={self.proc.pid if self.proc else None}>"
