"""A validating DNS resolver on loopback for DANE tests: Debian's unbound, twice.

- an *authoritative* unbound (``auth-zone``, iterator only) serves the test zones, each signed
  by ``ldns-signzone`` with keys made here by ``ldns-keygen`` (ECDSAP256SHA256, KSK + ZSK,
  NSEC3), or left unsigned;
- a *validating* unbound (``validator iterator``) reaches those zones through ``stub-zone``
  entries and trusts the DS of each signed zone as a local trust anchor (no root key): answers
  from a signed zone come back with AD, from an unsigned one without, and a zone whose
  signatures were broken (``Zone(bogus=...)``) answers SERVFAIL for the broken RRsets;
- a zone listed below another listed zone is delegated from it (NS + glue, and the DS when the
  child is signed), so only the top signed zones are trust anchors (``anchors``,
  ``write_trust_anchor(path)``) and an unsigned child is a proved-insecure delegation;
- with ``plain_host``, a third, *non-validating* unbound (``iterator`` only) that passes on
  RRSIG/NSEC3 records and never sets AD (``plain_nameserver``): for `[dns] dnssec = "validate"`.

Nothing leaves the machine: both bind and send from their own 127.0.0.x address
(``outgoing-interface``), and every name outside the test zones is REFUSED (``local-zone: "."
refuse``). Both are stopped by PID (``stop()``; ``start_new_session`` so children go too).

Example::

    zones = [Zone("dane.test", ["@ MX 10 mx", "mx A 127.0.0.30", "_25._tcp.mx TLSA 3 1 1 ab.."])]
    res = ValidatingResolver(zones).start()
    res.nameserver          # "127.0.0.62:40123" for [dns] nameservers
    res.stop()
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ._proc import find_binary, stop_process, tail
from .ports import check_loopback, free_port

__all__ = ["ValidatingResolver", "Zone"]


@dataclass
class Zone:
    """A test zone: NAME, records in zone-file syntax relative to it (``"mx A 127.0.0.30"``);
    SIGNED: signed and anchored at the resolver; BOGUS: RR types (``{"TLSA"}``) whose
    signatures are corrupted after signing (the resolver then answers SERVFAIL for them)."""

    name: str
    records: list[str]
    signed: bool = True
    bogus: set[str] = field(default_factory=set)
    ttl: int = 300


def _run(*args: str, cwd: Path) -> str:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def _corrupt(line: str) -> str:
    """Change one base64 character inside an RRSIG's signature (its last field, ~88 characters)."""
    line = line.rstrip()
    i = len(line) - 10
    return line[:i] + ("A" if line[i] != "A" else "B") + line[i + 1 :]


def _write_zone(zone: Zone, directory: Path, extra: Iterable[str] = ()) -> tuple[Path, str | None]:
    """The zone file to serve (ZONE's records and EXTRA ones: delegations to its children), and
    the DS record of its key-signing key (None: unsigned)."""
    origin = zone.name.rstrip(".") + "."
    text = (
        f"$ORIGIN {origin}\n$TTL {zone.ttl}\n"
        f"@ IN SOA ns.{origin} hostmaster.{origin} 1 3600 600 86400 {zone.ttl}\n"
        f"@ IN NS ns.{origin}\nns IN A 127.0.0.1\n" + "".join(r + "\n" for r in [*zone.records, *extra])
    )
    path = directory / f"{zone.name}.zone"
    path.write_text(text)
    if not zone.signed:
        return path, None
    keygen, sign = find_binary("ldns-keygen"), find_binary("ldns-signzone")
    ksk = _run(keygen, "-a", "ECDSAP256SHA256", "-k", zone.name, cwd=directory)
    zsk = _run(keygen, "-a", "ECDSAP256SHA256", zone.name, cwd=directory)
    # -n: NSEC3 (as most signed zones today); signatures valid from now for 4 weeks (default)
    _run(sign, "-n", "-f", str(path) + ".signed", str(path), ksk, zsk, cwd=directory)
    signed = Path(str(path) + ".signed")
    if zone.bogus:
        lines = signed.read_text().splitlines()
        out = []
        for line in lines:
            parts = line.split()
            if len(parts) > 4 and parts[3] == "RRSIG" and parts[4] in zone.bogus:
                line = _corrupt(line)
            out.append(line)
        signed.write_text("\n".join(out) + "\n")
    ds = (directory / f"{ksk}.ds").read_text().split()
    # "name IN DS keytag alg digesttype digest"
    return signed, f"{ds[0]} DS {' '.join(ds[3:])}"


class ValidatingResolver:
    """An authoritative unbound for ZONES plus a validating unbound in front of it."""

    def __init__(
        self,
        zones: Iterable[Zone],
        *,
        host: str = "127.0.0.62",
        auth_host: str = "127.0.0.61",
        plain_host: str | None = None,
        base_dir: str | Path | None = None,
    ) -> None:
        self.zones = list(zones)
        self.host = check_loopback(host)
        self.auth_host = check_loopback(auth_host)
        self.port = 0
        self.auth_port = 0
        # PLAIN_HOST: also start a non-validating recursive unbound there (`plain_nameserver`),
        # for in-process validation (`[dns] dnssec = "validate"`)
        self.plain_host = check_loopback(plain_host) if plain_host else None
        self.plain_port = 0
        self.anchors: list[str] = []  # "name DS keytag alg digesttype digest" of the top signed zones
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="mh-unbound-"))
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def nameserver(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def plain_nameserver(self) -> str:
        return f"{self.plain_host}:{self.plain_port}"

    def _common(self, host: str, port: int, name: str, modules: str) -> list[str]:
        return [
            "server:",
            f"  interface: {host}@{port}",
            f"  port: {port}",
            f"  outgoing-interface: {host}",  # queries it sends leave from loopback only
            "  do-ip6: no",
            "  do-daemonize: no",
            '  username: ""',
            '  chroot: ""',
            '  pidfile: ""',
            f'  directory: "{self.base_dir}"',
            "  use-syslog: no",
            f'  logfile: "{self.base_dir / name}.log"',
            "  verbosity: 1",
            f'  module-config: "{modules}"',
            "  access-control: 127.0.0.0/8 allow",
            "  do-not-query-localhost: no",
            "  num-threads: 1",
            "  msg-cache-size: 1m",
            "  rrset-cache-size: 1m",
            '  local-zone: "." refuse',  # nothing outside the test zones is ever looked up
            *(f'  local-zone: "{z.name}." transparent' for z in self.zones),
        ]

    def _parent(self, zone: Zone) -> Zone | None:
        """The nearest listed zone above ZONE (it then delegates ZONE), or None."""
        above = [z for z in self.zones if zone.name.endswith("." + z.name.rstrip("."))]
        return max(above, key=lambda z: z.name.count("."), default=None)

    def write_config(self) -> list[Path]:
        """Sign and write the zones (children first: a signed parent carries their DS and NS),
        then the configurations: auth, validating resolver, and the plain one when asked."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.anchors = []
        auth = self._common(self.auth_host, self.auth_port, "auth", "iterator")
        stubs: list[str] = []
        delegations: dict[str, list[str]] = {z.name: [] for z in self.zones}
        for z in sorted(self.zones, key=lambda z: -z.name.count(".")):
            path, ds = _write_zone(z, self.base_dir, delegations[z.name])
            parent = self._parent(z)
            if parent is None:
                if ds:
                    self.anchors.append(ds)  # a top zone: its DS is a trust anchor
            else:
                label = z.name.removesuffix("." + parent.name.rstrip("."))
                delegations[parent.name] += [f"{label} NS ns.{label}", f"ns.{label} A 127.0.0.1"]
                if ds:
                    delegations[parent.name].append(f"{label} DS {ds.split(' DS ', 1)[1]}")
            auth += ["auth-zone:", f'  name: "{z.name}."', f'  zonefile: "{path}"']
            auth += ["  for-downstream: yes", "  for-upstream: no"]
            stubs += ["stub-zone:", f'  name: "{z.name}."', f"  stub-addr: {self.auth_host}@{self.auth_port}"]
        auth += ["remote-control:", "  control-enable: no"]
        res = self._common(self.host, self.port, "resolver", "validator iterator")
        res += [f'  trust-anchor: "{a}"' for a in self.anchors]
        res += ["  val-log-level: 2", "remote-control:", "  control-enable: no", *stubs]
        confs = {"auth": auth, "resolver": res}
        if self.plain_host:
            # a recursive resolver that does not validate: it passes RRSIG/NSEC3 on to the client
            plain = self._common(self.plain_host, self.plain_port, "plain", "iterator")
            confs["plain"] = [*plain, "remote-control:", "  control-enable: no", *stubs]
        paths = []
        for name, lines in confs.items():
            path = self.base_dir / f"{name}.conf"
            path.write_text("\n".join(lines) + "\n")
            paths.append(path)
        return paths

    def write_trust_anchor(self, path: Path) -> Path:
        """The DS records of the top signed zones, zone-file syntax (for `[dns] trust_anchor`)."""
        path.write_text(
            "".join(f"{a.split(' DS ', 1)[0]} IN DS {a.split(' DS ', 1)[1]}\n" for a in self.anchors)
        )
        return path

    def start(self, timeout: float = 15.0) -> ValidatingResolver:
        if self.procs:
            return self
        self.port = self.port or free_port(self.host, socket.SOCK_DGRAM)
        self.auth_port = self.auth_port or free_port(self.auth_host, socket.SOCK_DGRAM)
        if self.plain_host:
            self.plain_port = self.plain_port or free_port(self.plain_host, socket.SOCK_DGRAM)
        unbound = find_binary("unbound")
        for conf in self.write_config():
            subprocess.run([find_binary("unbound-checkconf"), str(conf)], check=True, capture_output=True)
            self.procs.append(
                subprocess.Popen(
                    [unbound, "-d", "-c", str(conf)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        try:
            self._wait_ready(timeout)
        except Exception:
            self.stop(cleanup=False)
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        import dns.message
        import dns.query
        import dns.rcode

        deadline = time.monotonic() + timeout
        name = self.zones[0].name + "."
        while True:
            try:
                servers = [(self.auth_host, self.auth_port), (self.host, self.port)]
                if self.plain_host:
                    servers.append((self.plain_host, self.plain_port))
                for host, port in servers:
                    r = dns.query.udp(dns.message.make_query(name, "SOA"), host, port=port, timeout=0.5)
                    if r.rcode() != dns.rcode.NOERROR:
                        raise OSError(f"{host}:{port} answered {dns.rcode.to_text(r.rcode())}")
                return
            except (OSError, dns.exception.Timeout) as e:
                if any(p.poll() is not None for p in self.procs) or time.monotonic() > deadline:
                    raise RuntimeError(f"unbound did not start: {e}\n{self.log()}") from None
                time.sleep(0.1)

    def log(self, lines: int = 40) -> str:
        return "\n".join(
            tail(self.base_dir / f"{n}.log", lines)
            for n in ("auth", "resolver", "plain")
            if (self.base_dir / f"{n}.log").exists()
        )

    def stop(self, cleanup: bool = True) -> None:
        for p in self.procs:
            stop_process(p, signal.SIGTERM)
        self.procs = []
        if cleanup and self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> ValidatingResolver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
