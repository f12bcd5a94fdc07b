"""A real DNS server on loopback for tests and benchmarks: dnsmasq fed from Python data.

Every name not given is answered locally (``local=/#/``), so a lookup for a real
domain gets NXDOMAIN and no query is ever forwarded off the machine.
TXT strings longer than 255 octets are split into several character-strings
(RFC 1035 §3.3.14), which is what DKIM keys need.

Example::

    dns = DNSServer(
        mx={"example.test": [(10, "mx.example.test")]},
        a={"mx.example.test": ["127.0.0.2"]},
        txt={"example.test": ["v=spf1 ip4:127.0.0.2 -all"]},
    ).start()
    dns.nameserver      # "127.0.0.1:40123"
    dns.stop()
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from ._proc import find_binary, stop_process, tail
from .ports import check_loopback, free_port

__all__ = ["DNSServer"]

_TXT_CHUNK = 255  # RFC 1035 §3.3.14: one character-string is at most 255 octets


def _as_list(v):
    if isinstance(v, (str, bytes, tuple)):
        return [v]
    return list(v)


def _txt_quote(s: str) -> str:
    chunks = [s[i : i + _TXT_CHUNK] for i in range(0, len(s), _TXT_CHUNK)] or [""]
    return ",".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


class DNSServer:
    """dnsmasq serving only the records given.

    Records (all optional, names without trailing dot):

    - ``mx``:    {domain: [(preference, host), ...]}
    - ``a``:     {name: [ipv4, ...]}
    - ``aaaa``:  {name: [ipv6, ...]}
    - ``txt``:   {name: [text, ...]}   (each text is one TXT record; long ones are split)
    - ``srv``:   {"_submission._tcp.example.test": [(priority, weight, port, target), ...]}
    - ``cname``: {alias: target}       (target must itself be served here)
    - ``ptr``:   {"2.0.0.127.in-addr.arpa": "mx.example.test"}
    """

    def __init__(
        self,
        *,
        mx: Mapping[str, Iterable[tuple[int, str]]] | None = None,
        a: Mapping[str, Iterable[str] | str] | None = None,
        aaaa: Mapping[str, Iterable[str] | str] | None = None,
        txt: Mapping[str, Iterable[str] | str] | None = None,
        srv: Mapping[str, Iterable[tuple[int, int, int, str]]] | None = None,
        cname: Mapping[str, str] | None = None,
        ptr: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        base_dir: str | Path | None = None,
        log_queries: bool = True,
    ) -> None:
        self.host = check_loopback(host)
        self.port = port
        self.records = {
            "mx": dict(mx or {}),
            "a": dict(a or {}),
            "aaaa": dict(aaaa or {}),
            "txt": dict(txt or {}),
            "srv": dict(srv or {}),
            "cname": dict(cname or {}),
            "ptr": dict(ptr or {}),
        }
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="mh-dns-"))
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.conf_file = self.base_dir / "dnsmasq.conf"
        self.log_file = self.base_dir / "dnsmasq.log"
        self.stderr_file = self.base_dir / "dnsmasq.stderr"
        self.log_queries = log_queries
        self.proc: subprocess.Popen | None = None

    # -- configuration -------------------------------------------------------------
    def _conf_lines(self) -> list[str]:
        r = self.records
        out: list[str] = []
        for domain, mxs in r["mx"].items():
            for pref, target in _as_list(mxs):
                out.append(f"mx-host={domain},{target},{int(pref)}")
        for name, ips in r["a"].items():
            for ip in _as_list(ips):
                out.append(f"host-record={name},{ip}")
        for name, ips in r["aaaa"].items():
            for ip in _as_list(ips):
                out.append(f"host-record={name},{ip}")
        for name, texts in r["txt"].items():
            for t in _as_list(texts):
                out.append(f"txt-record={name},{_txt_quote(t)}")
        for name, srvs in r["srv"].items():
            for prio, weight, port, target in _as_list(srvs):
                out.append(f"srv-host={name},{target},{int(port)},{int(prio)},{int(weight)}")
        for alias, target in r["cname"].items():
            out.append(f"cname={alias},{target}")
        for name, target in r["ptr"].items():
            out.append(f"ptr-record={name},{target}")
        # Everything else is ours to answer (NXDOMAIN): nothing is ever forwarded.
        out.append("local=/#/")
        return out

    def write_config(self) -> Path:
        self.conf_file.write_text("\n".join(self._conf_lines()) + "\n")
        return self.conf_file

    @property
    def nameserver(self) -> str:
        """``"127.0.0.1:PORT"`` — the form Mailhouse's ``[dns] nameservers`` takes."""
        return f"{self.host}:{self.port}"

    def resolver(self):
        """A dnspython Resolver pointed only at this server (never at /etc/resolv.conf)."""
        import dns.resolver

        r = dns.resolver.Resolver(configure=False)
        r.nameservers = [self.host]
        r.port = self.port
        r.lifetime = 5.0
        return r

    # -- lifecycle -----------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> DNSServer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.write_config()
        binary = find_binary("dnsmasq")
        for attempt in range(5):
            if self.port is None or attempt > 0:
                self.port = free_port(self.host)
            cmd = [
                binary,
                "--keep-in-foreground",  # not --no-daemon: that serves TCP in the main process, and
                # a client that keeps its TCP connection open (Rspamd does) would stall every query
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--bind-interfaces",
                f"--listen-address={self.host}",
                f"--port={self.port}",
                f"--conf-file={self.conf_file}",
                "--pid-file=",
                "--user=nobody",
                f"--log-facility={self.log_file}",
                "--cache-size=0",
            ]
            if self.log_queries:
                cmd.append("--log-queries")
            # dnsmasq writes its log to log_file itself; stderr only gets start-up errors.
            with open(self.stderr_file, "ab") as err:
                self.proc = subprocess.Popen(
                    cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
                )
            try:
                self._wait_ready(timeout)
                return self
            except RuntimeError:
                # Port race with another process, or a bad record: retry once with a new port.
                stop_process(self.proc)
                self.proc = None
                if "in use" not in tail(self.stderr_file):
                    break
        raise RuntimeError(f"dnsmasq failed to start:\n{tail(self.stderr_file)}\n{tail(self.log_file)}")

    def _wait_ready(self, timeout: float) -> None:
        import dns.message
        import dns.query

        deadline = time.monotonic() + timeout
        q = dns.message.make_query("mailhouse-readiness-probe.invalid.", "A")
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("dnsmasq exited")
            try:
                dns.query.udp(q, self.host, port=self.port, timeout=0.3)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError("dnsmasq did not answer") from None
                time.sleep(0.05)

    def update(self, **records) -> None:
        """Replace some record sets and restart on the same port (dnsmasq can't reload options)."""
        for k, v in records.items():
            if k not in self.records:
                raise TypeError(f"unknown record type {k!r}")
            self.records[k] = dict(v or {})
        port = self.port
        self.stop(cleanup=False)
        self.port = port
        self.start()

    def queries(self) -> list[str]:
        """The query lines dnsmasq logged (``query[A] name from 127.0.0.1``)."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return []
        return [ln for ln in text.splitlines() if "query[" in ln]

    def forwarded(self) -> list[str]:
        """Log lines showing a query sent upstream — must always be empty."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return []
        return [ln for ln in text.splitlines() if " forwarded " in ln]

    def log(self, lines: int = 40) -> str:
        return tail(self.log_file, lines)

    def stop(self, cleanup: bool = True) -> None:
        stop_process(self.proc, signal.SIGTERM)
        self.proc = None
        if cleanup and self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> DNSServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<DNSServer {self.host}:{self.port} pid={self.proc.pid if self.proc else None}>"
