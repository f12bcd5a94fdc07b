"""`mailhouse doctor`: what is wrong with this installation, one line per check, with what to do.

Checks (issue 16 §7): the configuration (file, host name); the store (reachable, schema
current); files (data directory writable, private key not readable by others); the TLS
certificate (readable, expiry, the names it must cover: the host name and the `mta-sts.` /
`autoconfig.` names of hosted domains); listeners (something accepts on each); DNS of every
hosted domain against live DNS (mailauth/dnscheck.py: MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT,
SRV, PTR/FCrDNS of the outbound addresses); the outbound addresses on the configured DNS block
lists (`[spam] dnsbl`); the clock (systemd's NTP synchronisation). Exit status 1 when a check
fails, 0 when there are only warnings.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import enum
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from mailhouse import config as config_mod
from mailhouse.cli.common import missing_store, with_store
from mailhouse.cli.status import listening
from mailhouse.mailauth import dnscheck
from mailhouse.mailauth.dnsrecords import advice
from mailhouse.spam.dnslists import interpret, parse_zone
from mailhouse.spam.lookup import Lookup, reverse_name
from mailhouse.store import schema_versions
from mailhouse.tls import covers, dns_names

CERT_WARN_DAYS = 14  # renew well before: ACME clients renew at 30 days left
DNS_TIMEOUT = 5.0


class Level(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Check:
    level: Level
    name: str
    message: str
    todo: str = ""

    def line(self) -> str:
        tail = f" — {self.todo}" if self.todo and self.level is not Level.OK else ""
        return f"{self.level.value:<5} {self.name}: {self.message}{tail}"


def check_config(cfg: config_mod.Config) -> list[Check]:
    out = [Check(Level.OK, "config", f"read from {cfg.source_path}")]
    if cfg.source_path == "<defaults>":
        out = [
            Check(
                Level.WARN,
                "config",
                "no configuration file; built-in defaults (loopback, unprivileged ports)",
                "write /etc/mailhouse/mailhouse.toml (README: Configuration)",
            )
        ]
    problem = cfg.hostname_warning()
    out.append(
        Check(Level.WARN, "hostname", problem, "set `hostname`")
        if problem
        else Check(Level.OK, "hostname", cfg.hostname)
    )
    return out


def check_files(cfg: config_mod.Config) -> list[Check]:
    out = []
    d = cfg.data_dir
    if not d.exists():
        out.append(Check(Level.FAIL, "data_dir", f"{d} does not exist", "run `mailhouse setup`"))
    elif not os.access(d, os.W_OK | os.X_OK):
        out.append(
            Check(Level.FAIL, "data_dir", f"{d} is not writable by this user", "chown it to the service user")
        )
    else:
        out.append(Check(Level.OK, "data_dir", f"{d} is writable"))
    key = cfg.tls_key or d / "tls" / "key.pem"
    try:
        mode = key.stat().st_mode
    except OSError:
        return out
    if mode & 0o004:
        out.append(Check(Level.FAIL, "tls key", f"{key} is readable by every user", f"chmod o-r {key}"))
    else:
        out.append(Check(Level.OK, "tls key", f"{key} is not readable by others"))
    return out


def check_certificate(cfg: config_mod.Config, domains: Sequence[str], now: datetime.datetime) -> list[Check]:
    path = cfg.tls_cert or cfg.data_dir / "tls" / "cert.pem"
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as e:
        return [Check(Level.FAIL, "certificate", f"cannot read {path}: {e}", "fix [tls] cert")]
    out = []
    left = cert.not_valid_after_utc - now
    if left.total_seconds() <= 0:
        out.append(
            Check(
                Level.FAIL,
                "certificate",
                f"{path} expired on {cert.not_valid_after_utc:%Y-%m-%d}",
                "renew it",
            )
        )
    elif left.days < CERT_WARN_DAYS:
        out.append(Check(Level.WARN, "certificate", f"expires in {left.days} days", "renew it"))
    else:
        out.append(
            Check(
                Level.OK, "certificate", f"valid until {cert.not_valid_after_utc:%Y-%m-%d} ({left.days} days)"
            )
        )
    if cert.issuer == cert.subject:
        out.append(
            Check(
                Level.WARN,
                "certificate",
                "self-signed: mail clients warn, MTA-STS senders refuse it",
                "set [tls] cert/key to a certificate from a CA (docs/deploy.md)",
            )
        )
    names = dns_names(path.read_bytes())
    want = [cfg.hostname] + [f"{p}.{d}" for d in domains for p in ("mta-sts", "autoconfig")]
    missing = [n for n in want if not covers(names, n)]
    if not covers(names, cfg.hostname):
        out.append(
            Check(
                Level.FAIL,
                "certificate names",
                f"does not cover {cfg.hostname}",
                "reissue it for the host name",
            )
        )
    elif missing:
        out.append(
            Check(
                Level.WARN,
                "certificate names",
                f"does not cover {', '.join(missing)}",
                "add them to the certificate (MTA-STS needs mta-sts.DOMAIN over HTTPS)",
            )
        )
    else:
        out.append(Check(Level.OK, "certificate names", f"covers {', '.join(want)}"))
    return out


async def check_listeners(cfg: config_mod.Config) -> list[Check]:
    out = []
    for name, addrs in cfg.listen.items():
        for host, port in addrs:
            up = await asyncio.to_thread(listening, host, port)
            out.append(
                Check(Level.OK, f"listener {name}", f"{host}:{port} accepts connections")
                if up
                else Check(
                    Level.WARN,
                    f"listener {name}",
                    f"nothing accepts on {host}:{port}",
                    "is `mailhouse serve` running?",
                )
            )
    return out


async def check_dns(cfg: config_mod.Config, store: Any, domains: Sequence[str]) -> list[Check]:
    checker = dnscheck.Checker(
        dnscheck.async_resolver(cfg.dns_nameservers, DNS_TIMEOUT),
        cfg.hostname,
        cfg.dns_nameservers,
        cfg.source_addresses,
    )
    out = []
    for domain in domains:
        findings = await checker.check(domain, advice(cfg, domain, await store.get_dkim_keys(domain)))
        for f in findings:
            if f.status is dnscheck.Status.OK:
                continue
            level = Level.FAIL if f.failed else Level.WARN
            out.append(
                Check(
                    level,
                    f"dns {domain}",
                    f"{f.type} {f.name} {f.status.value}: {f.detail}",
                    f"mailhouse dns {domain}",
                )
            )
        if not any(c.name == f"dns {domain}" for c in out):
            out.append(Check(Level.OK, f"dns {domain}", f"all {len(findings)} records right"))
    return out


async def check_blocklists(cfg: config_mod.Config, addresses: Sequence[str]) -> list[Check]:
    zones = [parse_zone(z, 0.0)[0] for z in cfg.spam.dnsbl]
    if not zones or not addresses:
        return []
    lookup = Lookup(cfg.dns_nameservers or None)
    out = []
    for ip in addresses:
        label = reverse_name(ip)
        if label is None:
            continue
        for zone in zones:
            answers = await lookup.a(f"{label}.{zone}", DNS_TIMEOUT)
            if answers is None:
                out.append(Check(Level.WARN, "blocklist", f"{zone} did not answer for {ip}"))
                continue
            code, error = interpret(zone, answers)
            if code:
                out.append(
                    Check(
                        Level.FAIL,
                        "blocklist",
                        f"{ip} is listed on {zone} ({code})",
                        f"ask {zone} to delist {ip}",
                    )
                )
            elif error:
                out.append(
                    Check(
                        Level.WARN, "blocklist", f"{zone} answered {error} (an error code: blocked resolver?)"
                    )
                )
            else:
                out.append(Check(Level.OK, "blocklist", f"{ip} is not on {zone}"))
    return out


def check_clock() -> list[Check]:
    exe = shutil.which("timedatectl")
    if not exe:
        return [Check(Level.WARN, "clock", "cannot tell whether the clock is synchronised (no timedatectl)")]
    try:
        r = subprocess.run(
            [exe, "show", "--property=NTPSynchronized", "--value"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return [Check(Level.WARN, "clock", "timedatectl did not answer")]
    if r.returncode != 0:
        return [Check(Level.WARN, "clock", "cannot tell whether the clock is synchronised (no systemd here)")]
    if r.stdout.strip() == "yes":
        return [Check(Level.OK, "clock", "synchronised by NTP")]
    return [
        Check(
            Level.WARN,
            "clock",
            "not synchronised by NTP: DKIM, TOTP and TLS checks need the right time",
            "timedatectl set-ntp true",
        )
    ]


async def cmd_doctor(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    checks = check_config(cfg) + check_files(cfg)
    if (why := missing_store(cfg)) is not None:
        checks.append(Check(Level.FAIL, "store", why))
        return _report(checks)
    try:
        current, migrations = await schema_versions(cfg.store)
    except Exception as e:  # noqa: BLE001 - any failure to reach the store is the finding
        checks.append(Check(Level.FAIL, "store", f"cannot reach {cfg.store.split('://')[0]}: {e}"))
        return _report(checks)
    at = current or 0
    if at > len(migrations):
        checks.append(
            Check(
                Level.FAIL,
                "store",
                f"schema {at} is newer than this Mailhouse ({len(migrations)})",
                "upgrade",
            )
        )
        return _report(checks)
    if at < len(migrations):
        checks.append(
            Check(Level.WARN, "store", f"{len(migrations) - at} migration(s) pending", "mailhouse migrate")
        )
    else:
        checks.append(Check(Level.OK, "store", f"reachable, schema version {at} (current)"))

    async def run(store: Any) -> int:
        domains = [d.name for d in await store.list_domains()]
        checks.extend(check_certificate(cfg, domains, datetime.datetime.now(datetime.UTC)))
        checks.extend(await check_listeners(cfg))
        if not args.no_dns:
            checks.extend(await check_dns(cfg, store, domains))
            checks.extend(await check_blocklists(cfg, await _outbound(cfg)))
        checks.extend(check_clock())
        return _report(checks)

    return await with_store(cfg, run)


async def _outbound(cfg: config_mod.Config) -> list[str]:
    """The addresses mail leaves from: `[queue] source_address`, else the host name's."""
    if cfg.source_addresses:
        return list(cfg.source_addresses)
    checker = dnscheck.Checker(
        dnscheck.async_resolver(cfg.dns_nameservers, DNS_TIMEOUT), cfg.hostname, cfg.dns_nameservers
    )
    try:
        return sorted(await checker.host_addresses())
    except Exception:  # noqa: BLE001 - no answer: the DNS checks already say so
        return []


def _report(checks: list[Check]) -> int:
    for c in checks:
        print(c.line())
    failed = sum(c.level is Level.FAIL for c in checks)
    warned = sum(c.level is Level.WARN for c in checks)
    print(f"{len(checks)} checks: {failed} failed, {warned} warnings")
    return 1 if failed else 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "doctor", help="check configuration, store, certificate, listeners, DNS, block lists, clock"
    )
    p.add_argument("--no-dns", action="store_true", help="skip the checks that query DNS")
    p.set_defaults(fn=cmd_doctor)
