"""`mailhouse` command line: serve, quickstart, domain, user, alias, queue, dns, mail, ban,
spam (explain, train), report, index, mailbox.

Passwords are read from stdin (`--password-stdin`) or a prompt, never from argv.
Errors are one line on stderr and exit status 1 (2 for usage and configuration).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import socket
import sys
from typing import Any

from mailhouse import __version__
from mailhouse import config as config_mod
from mailhouse.accounts.admin import Admin, AdminError, generate_password
from mailhouse.cli import backup as cli_backup
from mailhouse.cli import ban as cli_ban
from mailhouse.cli import doctor as cli_doctor
from mailhouse.cli import export as cli_export
from mailhouse.cli import importer as cli_importer
from mailhouse.cli import index as cli_index
from mailhouse.cli import mail as cli_mail
from mailhouse.cli import mailbox as cli_mailbox
from mailhouse.cli import migrate as cli_migrate
from mailhouse.cli import queue as cli_queue
from mailhouse.cli import report as cli_report
from mailhouse.cli import service as cli_service
from mailhouse.cli import spam as cli_spam
from mailhouse.cli import status as cli_status
from mailhouse.cli import store as cli_store
from mailhouse.cli.common import Handler, NoStore, missing_store, with_store
from mailhouse.delivery.sendlimits import SendOverrides, get_overrides, set_overrides
from mailhouse.store.api import StoreError

#: ``--send-rate default``: remove the account's override (back to ``[limits]``).
DEFAULT = "default"


def _read_password(args: argparse.Namespace) -> str:
    if getattr(args, "password_stdin", False):
        pw = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        pw = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != pw:
            raise AdminError("passwords do not match")
    else:
        raise AdminError("no password: use --password-stdin or run on a terminal")
    return pw


async def cmd_domain(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    async def run(store: Any) -> int:
        admin = Admin(store, cfg.dkim_selector)
        if args.action == "add":
            d = await admin.add_domain(args.name)
            print(f"domain {d.name} added; publish its DNS records: mailhouse dns {d.name}")
        elif args.action == "list":
            for d in await store.list_domains():
                print(d.name)
        elif args.action == "remove":
            await store.remove_domain(args.name.lower().rstrip("."))
            print(f"domain {args.name} removed")
        return 0

    return await with_store(cfg, run)


def _limit_arg(v: str) -> int | str:
    """``--send-rate`` / ``--recipients-per-day``: a whole number ≥ 0 (0: no limit) or "default"."""
    if v == DEFAULT:
        return v
    if not v.isdigit():
        raise argparse.ArgumentTypeError("a whole number ≥ 0 (0: no limit), or 'default'")
    return int(v)


async def _send_limits(store: Any, cfg: config_mod.Config, args: argparse.Namespace, address: str) -> None:
    """Apply the ``--send-rate`` / ``--recipients-per-day`` given (delivery/sendlimits.py) and
    print the account's limits."""
    acc = await store.get_account(address.lower())
    if acc is None:
        raise AdminError(f"no account {address}")
    cur = await get_overrides(store, acc)
    new = {}
    for name in ("send_rate", "recipients_per_day"):
        v = getattr(args, name)
        new[name] = getattr(cur, name) if v is None else (None if v == DEFAULT else v)
    if (got := SendOverrides(**new)) != cur:
        await set_overrides(store, acc, got)
    shown = []
    for name, unit in (("send_rate", "per minute"), ("recipients_per_day", "recipients a day")):
        v = getattr(got, name)
        limit = getattr(cfg, name) if v is None else v
        shown.append(
            f"{name} {limit or 'unlimited'}{f' {unit}' if limit else ''} ({'default' if v is None else 'set'})"
        )
    print(f"{acc.address}\t" + "\t".join(shown))


async def cmd_user(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    async def run(store: Any) -> int:
        admin = Admin(store, cfg.dkim_selector)
        if args.action == "add":
            pw = _read_password(args)
            acc = await admin.add_user(
                args.address,
                pw,
                quota_bytes=args.quota_bytes,
                quota_messages=args.quota_messages,
                is_admin=args.admin,
            )
            print(f"user {acc.address} added")
            if args.send_rate is not None or args.recipients_per_day is not None:
                await _send_limits(store, cfg, args, acc.address)
        elif args.action == "limits":
            await _send_limits(store, cfg, args, args.address)
        elif args.action == "passwd":
            await admin.set_password(args.address, _read_password(args))
            print(f"password of {args.address} changed")
        elif args.action == "list":
            for acc in await store.list_accounts(args.address):
                usage = await store.usage(acc.id)
                quota = f"{acc.quota_bytes}" if acc.quota_bytes else "unlimited"
                admin_mark = " admin" if acc.is_admin else ""
                print(
                    f"{acc.address}\t{usage.messages} messages\t{usage.bytes} bytes\tquota {quota}{admin_mark}"
                )
        elif args.action == "remove":
            await store.remove_account(args.address.lower())
            print(f"user {args.address} removed")
        return 0

    return await with_store(cfg, run)


async def cmd_alias(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    async def run(store: Any) -> int:
        admin = Admin(store, cfg.dkim_selector)
        if args.action == "add":
            if not args.destination:
                raise AdminError("alias add needs SOURCE and DESTINATION")
            a = await admin.add_alias(args.source, args.destination)
            print(f"alias {a.source} → {a.destination} added")
        elif args.action == "list":
            for a in await store.list_aliases(args.source):
                print(f"{a.source}\t{a.destination}")
        elif args.action == "remove":
            await store.remove_alias(
                args.source.lower(), args.destination.lower() if args.destination else None
            )
            print(f"alias {args.source} removed")
        return 0

    return await with_store(cfg, run)


def _settings_text(cfg: config_mod.Config, address: str) -> str:
    def port(svc: str) -> str:
        ls = cfg.listen.get(config_mod.Listener(svc))
        return str(ls[0][1]) if ls else "off"

    return (
        f"  Username:   {address}\n"
        f"  IMAP:       {cfg.hostname} port {port('imaps')} (TLS) or {port('imap')} (STARTTLS)\n"
        f"  POP3:       {cfg.hostname} port {port('pop3s')} (TLS) or {port('pop3')} (STARTTLS)\n"
        f"  SMTP:       {cfg.hostname} port {port('submissions')} (TLS) or {port('submission')} (STARTTLS),"
        " normal password\n"
        f"  Webmail:    http://{cfg.hostname}:{port('http')}/\n"
        f"  Incoming mail from other servers: port {port('smtp')}\n"
    )


def _warn_hostname(cfg: config_mod.Config) -> None:
    problem = cfg.hostname_warning()
    if problem:
        print(f"mailhouse: WARNING: {problem}", file=sys.stderr)


def _print_records(cfg: config_mod.Config, want: list[Any]) -> None:
    for r in want:
        print(f"; {r.note}")
        print(r.zone_line())
    if not cfg.source_addresses:
        print(f"; this server's address: {cfg.hostname}. A (and AAAA) = its public IP address(es),")
        print("; and a PTR record for each naming it; set [queue] source_address to have them printed here")


def _server_running(cfg: config_mod.Config) -> str | None:
    """The first listener that answers a TCP connect (a server already runs), or None."""
    for name, addrs in cfg.listen.items():
        for host, port in addrs:
            target = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
            try:
                with socket.create_connection((target, port), timeout=0.5):
                    return f"{name} on {host}:{port}"
            except OSError:
                continue
    return None


async def cmd_quickstart(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    from mailhouse.mailauth.dnsrecords import advice

    _warn_hostname(cfg)

    async def run(store: Any) -> int:
        admin = Admin(store, cfg.dkim_selector)
        domain = args.address.rpartition("@")[2].lower()
        if await store.get_domain(domain) is None:
            await admin.add_domain(domain)
        password = generate_password()
        acc = await admin.add_user(args.address, password, is_admin=True)
        print(f"Mailhouse is set up for {acc.address}.\n")
        print(f"  Password:   {password}\n")
        print(_settings_text(cfg, acc.address))
        print(f"DNS records to publish for {domain} (again with `mailhouse dns {domain}`):\n")
        _print_records(cfg, advice(cfg, domain, await store.get_dkim_keys(domain)))
        running = await asyncio.to_thread(_server_running, cfg)
        print("\nNext steps:")
        if running:
            print(f"  - the server is already running ({running}): log in with the password above;")
        else:
            print("  - start the server: `mailhouse serve` (or `make serve`);")
        print(f"  - publish the records above, then check them: `mailhouse dns {domain} --check`;")
        print("  - going to production (certificates, service unit, firewall): docs/deploy.md.")
        return 0

    return await with_store(cfg, run, create=True)


async def cmd_setup(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    _warn_hostname(cfg)
    new = missing_store(cfg) is not None

    async def run(store: Any) -> int:
        where = cfg.store if not cfg.store.startswith("postgres") else "the PostgreSQL database"
        print(f"{'Created' if new else 'Found'} the Mailhouse store at {where} (schema up to date).")
        print(
            "Next: `mailhouse quickstart you@example.org` (a domain and an admin account), then `mailhouse serve`."
        )
        return 0

    return await with_store(cfg, run, create=True)


async def cmd_dns(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    from mailhouse.mailauth import dnscheck
    from mailhouse.mailauth.dnsrecords import advice

    async def run(store: Any) -> int:
        domain = args.domain.lower().rstrip(".")
        if await store.get_domain(domain) is None:
            raise AdminError(f"domain {domain} is not hosted here")
        want = advice(cfg, domain, await store.get_dkim_keys(domain))
        _warn_hostname(cfg)
        if not args.check:
            _print_records(cfg, want)
            return 0
        checker = dnscheck.Checker(
            dnscheck.async_resolver(cfg.dns_nameservers),
            cfg.hostname,
            cfg.dns_nameservers,
            cfg.source_addresses,
        )
        findings = await checker.check(domain, want)
        for f in findings:
            print(f"{f.status.value:<9} {f.type:<5} {f.name}: {f.detail}")
            if not f.status.fine:
                for value in f.found:
                    print(f"{'':<16}found: {value}")
        failed = [f for f in findings if f.failed]
        print(
            f"{len(failed)} required record(s) missing or different"
            if failed
            else "all required records are right"
        )
        return 1 if failed else 0

    return await with_store(cfg, run)


async def cmd_serve(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    from mailhouse.app import StartupError, serve
    from mailhouse.store.api import SchemaTooNew
    from mailhouse.tls import CertificateError

    try:
        return await serve(cfg)
    except (StartupError, CertificateError, SchemaTooNew) as e:  # one line, not a traceback (issue 16 §9)
        print(f"mailhouse: {e}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mailhouse", description="Mailhouse: a complete, self-hostable mail system"
    )
    p.add_argument("--config", help="TOML config file (default: $MAILHOUSE_CONFIG, else built-in defaults)")
    p.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="log verbosity (default INFO)",
    )
    p.add_argument("--version", action="version", version=f"mailhouse {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("serve", help="run every configured listener in the foreground").set_defaults(fn=cmd_serve)

    sub.add_parser(
        "setup", help="create the store (data directory and schema) for this configuration"
    ).set_defaults(fn=cmd_setup)

    q = sub.add_parser("quickstart", help="create a domain and an admin account, print client settings")
    q.add_argument("address")
    q.set_defaults(fn=cmd_quickstart)

    d = sub.add_parser("domain", help="hosted domains")
    d.add_argument("action", choices=["add", "list", "remove"])
    d.add_argument("name", nargs="?")
    d.set_defaults(fn=cmd_domain)

    u = sub.add_parser("user", help="accounts")
    u.add_argument("action", choices=["add", "passwd", "list", "remove", "limits"])
    u.add_argument("address", nargs="?", help="ADDRESS (for list: a domain to filter on)")
    u.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line of stdin"
    )
    u.add_argument("--quota-bytes", type=int, default=0)
    u.add_argument("--quota-messages", type=int, default=0)
    u.add_argument("--admin", action="store_true", help="may use the web admin pages")
    for opt, what in (("--send-rate", "messages a minute"), ("--recipients-per-day", "recipients a day")):
        u.add_argument(
            opt,
            type=_limit_arg,
            metavar="N|default",
            help=f"with add or limits: this account's {what} (0: no limit; default: [limits])",
        )
    u.set_defaults(fn=cmd_user)

    a = sub.add_parser("alias", help="aliases (SOURCE may be @domain for a catch-all)")
    a.add_argument("action", choices=["add", "list", "remove"])
    a.add_argument("source", nargs="?")
    a.add_argument("destination", nargs="?")
    a.set_defaults(fn=cmd_alias)

    n = sub.add_parser("dns", help="DNS records to publish for a domain (--check: compare with live DNS)")
    n.add_argument("domain")
    n.add_argument(
        "--check",
        action="store_true",
        help="query DNS and say, record by record, what is missing or different",
    )
    n.set_defaults(fn=cmd_dns)

    for register in (
        cli_queue.register,
        cli_mail.register,
        cli_store.register,
        cli_ban.register,
        cli_mailbox.register,
        cli_index.register,
        cli_importer.register,
        cli_spam.register,
        cli_report.register,
        cli_service.register,
        cli_migrate.register,
        cli_status.register,
        cli_doctor.register,
        cli_backup.register,
        cli_export.register,
    ):
        register(sub)
    return p


def _needs_arg(args: argparse.Namespace) -> str | None:
    if args.command in ("domain",) and args.action in ("add", "remove") and not args.name:
        return f"domain {args.action} needs a domain name"
    if args.command == "user" and args.action in ("add", "passwd", "remove", "limits") and not args.address:
        return f"user {args.action} needs an ADDRESS"
    if args.command == "alias" and args.action in ("add", "remove") and not args.source:
        return f"alias {args.action} needs a SOURCE"
    return None


def _multiprocess_metrics(cfg: config_mod.Config, argv: list[str]) -> None:
    """Workers share /metrics through prometheus_client's multiprocess mode, which it picks when
    first imported: start this command again with PROMETHEUS_MULTIPROC_DIR set (same PID)."""
    from mailhouse.metrics import MULTIPROC_ENV

    if os.environ.get(MULTIPROC_ENV):
        return
    shared = cfg.data_dir / "metrics"
    shared.mkdir(parents=True, exist_ok=True)
    for stale in shared.glob("*.db"):  # counters of an earlier run
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(shared)
    os.execv(sys.executable, [sys.executable, "-m", "mailhouse", *argv])  # noqa: S606 - ourselves again


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from mailhouse import log

    log.setup(args.log_level)
    problem = _needs_arg(args)
    if problem:
        parser.error(problem)
    try:
        cfg = config_mod.load(args.config)
    except config_mod.ConfigError as e:
        print(f"mailhouse: configuration error: {e}", file=sys.stderr)
        return 2
    log_file = cfg.log_file if args.command == "serve" else None  # commands talk to their terminal
    if cfg.log_format != "text" or log_file:
        try:
            log.setup(args.log_level, cfg.log_format, log_file)
        except OSError as e:
            print(f"mailhouse: cannot open the log file [log] file: {e}", file=sys.stderr)
            return 2
    if args.command == "serve" and cfg.workers > 1:
        _multiprocess_metrics(cfg, sys.argv[1:] if argv is None else argv)
    try:
        import uvloop  # the fast event loop where available (DESIGN.md §Conventions 6)

        uvloop.install()
    except ImportError:
        pass
    fn: Handler = args.fn

    async def run() -> int:
        return await fn(args, cfg)

    try:
        return asyncio.run(run())
    except (AdminError, StoreError, ValueError, NoStore) as e:
        print(f"mailhouse: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
