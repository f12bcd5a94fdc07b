"""Mailhouse configuration: TOML file → typed, validated `Config`.

Keys (DESIGN.md §Operator interface): `hostname`, `data_dir`, `user`/`group`/`allow_root`
(runtime/privileges.py); `[listen]` with one key per
service (`"host:port"` or a list of them — a missing key means that service is off), keyed
in `Config.listen` by `Listener`;
`[tls] cert`, `key`, `ca_file` (extra CAs for outbound verification); `[store] url`; `[dns] nameservers`,
`dnssec`, `trust_anchor` (DANE, queue/dane.py). Without a config file every
service listens on 127.0.0.1 at an unprivileged port so a first try just works.

Invariant: every error names the file, the key and what is wrong (`ConfigError`).
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import os
import socket
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Listener(enum.StrEnum):
    """The `[listen]` keys: one per service a node can offer (`app.SERVERS` maps each to its adapter)."""

    SMTP = "smtp"  # RFC 5321 MTA, port 25
    SUBMISSION = "submission"  # RFC 6409 MSA, port 587 (STARTTLS, RFC 3207)
    SUBMISSIONS = "submissions"  # RFC 8314 §3.3 implicit TLS, port 465
    IMAP = "imap"  # RFC 9051, port 143 (STARTTLS)
    IMAPS = "imaps"  # RFC 8314 implicit TLS, port 993
    POP3 = "pop3"  # RFC 1939, port 110 (STLS, RFC 2595)
    POP3S = "pop3s"  # RFC 8314 implicit TLS, port 995
    HTTP = "http"  # webmail, admin, autoconfig
    HTTPS = "https"  # the same over TLS (RFC 8314 style implicit TLS, port 443); http then redirects
    MANAGESIEVE = "managesieve"  # RFC 5804, port 4190 (STARTTLS)

    @property
    def implicit_tls(self) -> bool:
        """TLS from the first byte (RFC 8314 §3.3), not STARTTLS."""
        return self in _IMPLICIT_TLS


_IMPLICIT_TLS = frozenset({Listener.SUBMISSIONS, Listener.IMAPS, Listener.POP3S, Listener.HTTPS})

SERVICES: tuple[str, ...] = tuple(Listener)


# `[listen]` keys DESIGN.md reserves for services this version does not have yet: an error
# naming the missing feature, not a listener that silently never starts.
class Dnssec(enum.StrEnum):
    """`[dns] dnssec`: where DNSSEC answers for DANE come from (RFC 7672 §2.1)."""

    VALIDATE = "validate"  # validate in-process from [dns] trust_anchor (mailauth/dnssec.py)
    RESOLVER = "resolver"  # trust the AD bit of the configured nameservers (declared validating)
    OFF = "off"  # no DNSSEC, so no DANE (Postfix's default smtp_dns_support_level)


NOT_YET: dict[str, str] = {}

# Unprivileged defaults so `mailhouse serve` runs without root (the standard ports are
# 25/587/465/143/993/110/995/443; configure them in production).
DEFAULT_LISTEN: dict[Listener, list[tuple[str, int]]] = {
    Listener.SMTP: [("127.0.0.1", 2525)],
    Listener.SUBMISSION: [("127.0.0.1", 2587)],
    Listener.SUBMISSIONS: [("127.0.0.1", 2465)],
    Listener.IMAP: [("127.0.0.1", 2143)],
    Listener.IMAPS: [("127.0.0.1", 2993)],
    Listener.POP3: [("127.0.0.1", 2110)],
    Listener.POP3S: [("127.0.0.1", 2995)],
    Listener.HTTP: [("127.0.0.1", 8080)],
    Listener.MANAGESIEVE: [("127.0.0.1", 4190)],  # RFC 5804 §1.8: 4190 is already unprivileged
}

DEFAULT_MAX_MESSAGE_SIZE = (
    50 * 1024 * 1024
)  # Postfix's message_size_limit is 10 MiB; 50 MiB suits attachments today
DEFAULT_MAX_RECIPIENTS = 100  # RFC 5321 §4.5.3.1.8: servers must accept at least 100 recipients
# Message octets all SMTP sessions of one process may hold between first octet and delivery
# (spooled to disk, issue 12 item 2): 256 MiB, at least 2 × max_message_size so two messages
# of the largest size always fit; beyond it MAIL FROM SIZE= and DATA/BDAT get 452 4.3.1.
DEFAULT_MAX_INFLIGHT_BYTES = 256 * 1024 * 1024


class ConfigError(Exception):
    """A configuration problem, naming file, key and what is wrong."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}")
        self.path, self.key, self.problem = path, key, problem


@dataclass(slots=True)
class Route:
    """Where mail for a destination domain goes instead of its MX (like Postfix transport_maps)."""

    host: str
    port: int = 25
    username: str | None = None
    password: str | None = None
    # "required" (STARTTLS, certificate chain + host name verified; the default for routes),
    # "implicit" (TLS from the first byte, verified), "encrypt" (STARTTLS, not verified),
    # "opportunistic" (STARTTLS when offered, not verified), "none" (plaintext)
    tls: str = "required"
    # AUTH is sent only over a verified connection unless this is set (issue 15 item 1)
    auth_over_unverified: bool = False


@dataclass(frozen=True, slots=True)
class AuthLimits:
    """[auth] login throttling and bans (issue 12 item 7; accounts/throttle.py, accounts/bans.py)."""

    failure_window: float = 900.0  # seconds a failed login is remembered
    failure_delay: float = 0.5  # first penalty; doubles per failure (Dovecot auth_failure_delay)
    max_failure_delay: float = 15.0  # cap: an account is slowed, never locked out
    account_delay_after: int = 5  # failures on one account (any IP) before it is slowed (a typo is free)
    network_delay_after: int = 30  # failures from one /24 (IPv4) or /64 (IPv6) before it is slowed
    ban_after: int = 20  # failures from one IP within the window that ban it (0 = never)
    ban_time: float = 3600.0  # seconds a ban lasts


@dataclass(frozen=True, slots=True)
class SieveConfig:
    """`[sieve]` (issue 17): script quotas (ManageSieve, RFC 5804 §1.3 QUOTA/*), the admin's global
    scripts run before and after every user's script, and the redirect limits."""

    max_scripts: int = 16  # scripts per account (QUOTA/MAXSCRIPTS)
    max_script_size: int = 64 * 1024  # octets per script (QUOTA/MAXSIZE); Dovecot's default is 1 MiB
    before: Path | None = None  # a Sieve script file run before the user's (an admin's "before" script)
    after: Path | None = None  # run after the user's script when it kept the message (implicit keep)
    global_dir: Path | None = None  # scripts for `include :global "name"` (RFC 6609 §3.2): NAME.sieve here
    max_redirects: int = 4  # redirects one message may cause per recipient (Pigeonhole's sieve_max_redirects)
    redirects_per_day: int = 100  # redirects per account per day: a forwarding rule is no bulk sender


@dataclass(frozen=True, slots=True)
class SpamConfig:
    """[spam]: the scoring pipeline on port 25 (issue 14 §3, §5; spam/pipeline.py, README "Spam and
    authentication")."""

    enabled: bool = True
    junk_threshold: float = 5.0  # SpamAssassin's required_score: at or above, filed into Junk
    reject_threshold: float = 15.0  # at or above: 550 5.7.1 at end of DATA (no backscatter)
    # DNS lists: "zone" or "zone=score"; empty by default (public lists have terms of use)
    dnsbl: tuple[str, ...] = ()
    dnswl: tuple[str, ...] = ()
    domain_blocklists: tuple[str, ...] = ()
    trusted_networks: tuple[str, ...] = ()  # clients never scored; loopback is not trusted by itself
    score_submission: bool = False  # score authenticated submission too
    timeout: float = 3.0  # seconds all rules of one message may take (then the verdict goes without them)
    rspamd_url: str = ""  # Rspamd's normal worker, e.g. "http://127.0.0.1:11333"; empty = not asked
    rspamd_max_size: int = 2 * 1024 * 1024  # larger messages are not sent to Rspamd (spamc's max size)
    # greylisting at RCPT (spam/greylist.py, RFC 6647): off by default, it delays first mail
    greylisting: bool = False
    greylist_delay: float = 300.0  # a retry of a new triplet is accepted after this (postgrey: 300 s)
    greylist_expire: float = 4 * 3600.0  # a triplet not retried within this starts over
    greylist_pass_ttl: float = 36 * 86400.0  # a network that retried is not greylisted for this long


SPAM_KEYS = (
    "enabled",
    "junk_threshold",
    "reject_threshold",
    "dnsbl",
    "dnswl",
    "domain_blocklists",
    "trusted_networks",
    "score_submission",
    "timeout",
    "rspamd_url",
    "rspamd_max_size",
    "greylisting",
    "greylist_delay",
    "greylist_expire",
    "greylist_pass_ttl",
)


AUTH_LIMIT_KEYS = (  # the [auth] keys of AuthLimits
    "failure_window",
    "failure_delay",
    "max_failure_delay",
    "account_delay_after",
    "network_delay_after",
    "ban_after",
    "ban_time",
)


@dataclass(slots=True)
class Config:
    hostname: str
    data_dir: Path
    listen: dict[Listener, list[tuple[str, int]]]
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # [tls] sni = [{cert, key}, ...]: more certificates, each served to clients asking (SNI) for a
    # name it covers (other domains' names, a second host name); the main pair for everyone else
    tls_sni: list[tuple[Path, Path]] = field(default_factory=list)
    # [tls] ca_file: extra CAs trusted for every outbound verification (system store + these)
    tls_ca_file: Path | None = None
    store_url: str = ""
    dns_nameservers: list[tuple[str, int]] = field(default_factory=list)
    # [dns] dnssec (issue 15 item 3, queue/dane.py): "validate" checks signatures in-process from
    # the trust anchor (mailauth/dnssec.py); "resolver" trusts the AD bit of the nameservers
    # (declared validating, as Postfix smtp_dns_support_level = dnssec) for DANE; "off" (the
    # default, as Postfix's): no DANE
    dns_dnssec: Dnssec = Dnssec.OFF
    # [dns] trust_anchor: DS or DNSKEY records (zone-file format) for dnssec = "validate";
    # None: the IANA root KSK built in (mailauth/dnssec.py ROOT_ANCHOR)
    dns_trust_anchor: Path | None = None
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    # issue 12 item 4: one SEARCH/SORT/THREAD (and a webmail search) runs at most this long
    # (then IMAP NO [LIMIT], RFC 5530) and scans at most this many decoded octets per message
    search_time_budget: float = 20.0
    search_max_decoded_bytes: int = DEFAULT_MAX_MESSAGE_SIZE
    # issue 12 item 1: the CPU process pool (runtime/cpupool.py) for SEARCH matching and MIME
    # parsing of big messages: worker processes per serving process, jobs waiting, seconds per job
    cpu_workers: int = field(default_factory=lambda: max(1, min(2, os.cpu_count() or 1)))
    cpu_queue: int = 32
    cpu_budget: float = 30.0
    max_inflight_bytes_set: int | None = None  # [limits] max_inflight_bytes; see `max_inflight_bytes`
    allow_plaintext_auth: bool = False  # AUTH/LOGIN/USER over unencrypted connections (never by default)
    auth_cache_ttl: float = (
        3600.0  # seconds a verified password skips argon2id (accounts/authcache.py); 0 = off
    )
    auth_limits: AuthLimits = field(default_factory=AuthLimits)
    # issue 14 §3 [spam]: the per-user Bayes classifier (spam/bayes.py) and the trained messages
    # of each kind an account needs before it gives a verdict (SpamAssassin's bayes_min_*_num)
    spam_bayes: bool = True
    spam_bayes_min_spam: int = 200
    spam_bayes_min_ham: int = 200
    workers: int = 1  # processes sharing the listening sockets (SO_REUSEPORT) and one store
    smtp_idle_timeout: float = 300.0  # RFC 5321 §4.5.3.2.7: server timeout ≥ 5 minutes
    imap_idle_timeout: float = 1800.0  # RFC 9051 §5.4: autologout timer ≥ 30 minutes
    pop3_idle_timeout: float = 600.0  # RFC 1939 §3: autologout timer ≥ 10 minutes
    # issue 12 item 6: deadlines, not idle timers (see runtime/limits.py for the reasons)
    smtp_command_deadline: float = 300.0  # Postfix smtpd_per_request_deadline: a whole command/transfer
    smtp_min_data_rate: float = 500.0  # Postfix smtpd_min_data_rate: octets/s added to a DATA deadline
    session_timeout: float = 3600.0  # whole SMTP/POP3 session; IMAP before login only
    preauth_timeout: float = 180.0  # idle timer before login (IMAP, POP3, submission): Dovecot's 3 min
    stress_timeout: float = 10.0  # idle timer under stress (Postfix smtpd_timeout under stress)
    connection_budget: int = 1000  # connections per process; stress above 75 % of it
    smtp_forbid_unauth_pipelining: bool = True  # Postfix ≥ 3.9 smtpd_forbid_unauth_pipelining
    queue_lifetime: float = 5 * 86400.0  # Postfix maximal_queue_lifetime = 5d
    queue_delay_warning: float = 4 * 3600.0  # Postfix delay_warning_time = 4h
    queue_retry_base: float = 300.0
    queue_retry_max: float = 4000.0
    # [mta_sts] (RFC 8461, queue/mtasts.py): apply published policies to MX delivery
    mta_sts_enabled: bool = True
    mta_sts_fetch_timeout: float = 10.0
    # test/ops override: policy host → (address, port) instead of DNS and port 443
    mta_sts_resolve: dict[str, tuple[str, int]] = field(default_factory=dict)
    # [mta_sts] publish (issue 15 §7): the policy served at https://mta-sts.DOMAIN/ for every hosted
    # domain (web/mtasts.py) and advertised by `mailhouse dns`: "testing" first (report, do not
    # enforce), "enforce" once TLS works, "none" to withdraw a policy, "off" to serve nothing
    mta_sts_publish: str = "testing"
    mta_sts_publish_max_age: int = 604800  # RFC 8461 §3.2: one week
    relayhost: Route | None = None
    routes: dict[str, Route] = field(default_factory=dict)
    dkim_selector: str = "mailhouse"
    outbound_port: int = 25  # TCP port used for MX delivery (tests point it elsewhere)
    # [queue] source_address: local IPv4 and/or IPv6 address outbound mail leaves from
    # (Postfix smtp_bind_address/-6): the one your PTR and SPF records name
    source_addresses: list[str] = field(default_factory=list)
    verify_inbound: bool = True  # SPF + DKIM on mail from other servers → Authentication-Results
    pregreet_wait: float = 0.2  # seconds the smtp listener waits before greeting (postscreen's pregreet test)
    # [web] forwarded_allow_ips: reverse proxies whose X-Forwarded-For/-Proto are believed.
    # None by default (issue 12 item 12): trusting 127.0.0.1 let every local process claim any
    # client address (and so dodge IP-based limits) or HTTPS; list the proxy when behind one.
    forwarded_allow_ips: list[str] = field(default_factory=list)
    # issue 12 item 5: connection limits (defaults and reasons in runtime/connlimits.py)
    conn_per_ip: dict[str, int] = field(default_factory=dict)  # [connections] per_ip: overrides by service
    conn_per_user_ip: int = 10  # [connections] per_user_ip (Dovecot mail_max_userip_connections)
    conn_per_account: int = 50  # [connections] per_account
    max_connections: int = 0  # [connections] max: per process; 0 = RLIMIT_NOFILE minus headroom
    # issue 12 item 8: a client that passed the pregreet test is greeted at once for this long
    # (postscreen_greet_ttl = 1d), on every worker and node (store mark "pregreet:<ip>")
    pregreet_ttl: float = 86400.0
    # a client that talked first is refused at once for this long (no cheap retry)
    pregreet_fail_ttl: float = 600.0
    # issue 12 item 9: seconds of DNS (SPF, DKIM, … in parallel) one inbound message may wait for
    # before its results are recorded as temperror (RFC 8601 §2.7, RFC 7208 §2.6.6)
    dns_budget: float = 5.0
    # [dmarc] (issue 14 §1): enforce = act on p=reject (550 5.7.1 at end of DATA) and
    # p=quarantine (Junk) failures; allow = sender (From) domains never enforced (a partner whose
    # forwarding breaks DMARC); trusted_arc_sealers = ARC sealers (d= of the newest ARC-Seal) whose
    # passing chain rescues a DMARC failure (mailing lists, forwarders you rely on)
    dmarc_enforce: bool = True
    # [dmarc] reports: count DMARC results and send the daily aggregate reports (RFC 7489 §7.2)
    # to domains that ask (with `[reports] send`, which also covers TLS-RPT)
    dmarc_reports: bool = True
    log_format: str = "text"  # [log] format: "text" or "json" (log.py)
    log_file: Path | None = None  # [log] file: `serve` appends here instead of standard error (log.py)
    dmarc_allow: list[str] = field(default_factory=list)
    trusted_arc_sealers: list[str] = field(default_factory=list)
    # [limits] trusted_networks: clients exempt from connection limits, login throttling, bans,
    # the pregreet test and send-rate limits (monitoring, your own relays). NOT a relay permission:
    # relaying always needs authentication. Empty by default, loopback included.
    trusted_networks: list[str] = field(default_factory=list)
    # [limits] per authenticated account, against compromised accounts (delivery/sendlimits.py);
    # 0 = off. 30 messages a minute is far above a person's pace, far below a spam run's;
    # 1000 recipients a day sits between Gmail's 500 and Google Workspace's 2000.
    send_rate: int = 30  # message transactions per minute (submission and webmail)
    recipients_per_day: int = 1000  # accepted recipients per 24 h (submission and webmail)
    # [reports] (issue 14 §2): reports mailed to these addresses — local parts on every hosted
    # domain, or whole addresses — are summarised (`mailhouse report`) and filed into `folder`;
    # the default is the rua address `mailhouse dns` publishes
    reports_enabled: bool = True
    report_addresses: tuple[str, ...] = ("postmaster",)
    reports_folder: str = "Reports"
    # [reports] the reports we send (reports/schedule.py): DMARC aggregate (RFC 7489 §7.2) and TLS-RPT
    # (RFC 8460), daily; from = their sender ("" = noreply-reports@<hostname>), org_name = the
    # organisation they name ("" = the host name)
    reports_send: bool = True
    reports_from: str = ""
    reports_org_name: str = ""
    spam: SpamConfig = field(default_factory=SpamConfig)
    sieve: SieveConfig = field(default_factory=SieveConfig)
    # [metrics] (issue 16 §6): who may read /metrics on the web listener — these addresses or
    # networks, or a client presenting `token` as "Authorization: Bearer TOKEN"; 403 otherwise
    metrics_allow_ips: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1"])
    metrics_token: str = ""
    # [srs] (issue 15 item 6, delivery/srs.py): envelope senders of mail forwarded to other domains
    # are rewritten into this domain ("" = hostname), valid max_age days for bounces; raising
    # secret_generation rotates the store-kept secret (the previous one still verifies)
    srs_enabled: bool = True
    srs_domain_set: str = ""
    srs_max_age: int = 21
    srs_secret_generation: int = 1
    # [acme] (issue 16 §2, certs/acme.py): with `directory` (the ACME server's directory URL) the node
    # orders its certificate over HTTP-01 on the web listener; `names` default to the host name and
    # mta-sts./autoconfig. of every hosted domain; `ca_file` trusts a private ACME server's CA
    acme_directory: str = ""
    acme_email: str = ""
    acme_names: list[str] = field(default_factory=list)
    acme_ca_file: Path | None = None
    acme_challenge: str = ""  # "http-01" | "tls-alpn-01"; "": derived (certs.challenge_type)
    source_path: str = "<defaults>"
    # issue 16 §1 (runtime/privileges.py): started as root, serve as this user after binding
    user: str | None = None
    group: str | None = None  # default: the user's login group
    allow_root: bool = False  # keep serving as root on a port < 1024 without `user`

    def hostname_warning(self) -> str | None:
        """Why `hostname` cannot be this server's public name (then MX, HELO and certificates go
        wrong), or None. A warning, not an error: labs and tests use names like mail.example.test."""
        name = self.hostname.lower().rstrip(".")
        if name in ("localhost", "localhost.localdomain") or name.endswith(".localhost"):
            why = f"is {name!r}"
        elif "." not in name:
            why = f"{name!r} has no dot"
        elif name.endswith((".local", ".localdomain", ".lan", ".internal", ".home.arpa")):
            why = f"{name!r} is a local-network name"
        else:
            return None
        source = "set in the config" if self.source_path != "<defaults>" else "taken from this machine"
        return (
            f"the host name ({source}) {why}: other servers cannot reach or verify it; set `hostname`"
            " in the config to the public name of this server (its MX, HELO and certificate name)"
        )

    def is_trusted(self, ip: str) -> bool:
        """Whether client address IP lies in `trusted_networks` (an unparsable IP never does)."""
        return bool(self.trusted_networks) and address_in(ip, parse_networks(tuple(self.trusted_networks)))

    @property
    def store(self) -> str:
        return self.store_url or f"sqlite:///{self.data_dir / 'mailhouse.db'}"

    @property
    def srs_domain(self) -> str:
        """[srs] domain, else the host name."""
        return self.srs_domain_set or self.hostname

    @property
    def max_inflight_bytes(self) -> int:
        """[limits] max_inflight_bytes, else 256 MiB raised to 2 × max_message_size."""
        if self.max_inflight_bytes_set is not None:
            return self.max_inflight_bytes_set
        return max(DEFAULT_MAX_INFLIGHT_BYTES, 2 * self.max_message_size)


def parse_hostport(value: str, path: str, key: str) -> tuple[str, int]:
    """`"host:port"`, `"[v6]:port"` → (host, port)."""
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(path, key, f'expected "host:port", got {value!r}')
    host, _, port_s = value.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_s)
    except ValueError:
        raise ConfigError(path, key, f"port {port_s!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(path, key, f"port {port} out of range 0-65535")
    if not host:
        raise ConfigError(path, key, "host is empty")
    return host, port


def _nameserver(value: str, path: str, key: str) -> tuple[str, int]:
    if not isinstance(value, str):
        raise ConfigError(path, key, f"expected a string, got {value!r}")
    if value.count(":") == 1:
        return parse_hostport(value, path, key)
    return value.strip("[]"), 53


ROUTE_TLS_MODES = ("required", "implicit", "encrypt", "opportunistic", "none")


def _route(value: Any, path: str, key: str) -> Route:
    if isinstance(value, str):
        host, port = parse_hostport(value if ":" in value else value + ":25", path, key)
        return Route(host, port)
    if not isinstance(value, dict) or "host" not in value:
        raise ConfigError(
            path, key, 'expected "host:port" or a table with host, port, username, password, tls'
        )
    for k in value:
        if k not in _ROUTE_KEYS:
            raise ConfigError(path, f"{key}.{k}", f"unknown key (known: {', '.join(sorted(_ROUTE_KEYS))})")
    r = Route(str(value["host"]), int(value.get("port", 25)))
    r.username = value.get("username")
    r.password = value.get("password")
    r.tls = str(value.get("tls", "required"))
    if r.tls not in ROUTE_TLS_MODES:
        raise ConfigError(
            path, f"{key}.tls", f"unknown TLS mode {r.tls!r} (known: {', '.join(ROUTE_TLS_MODES)})"
        )
    r.auth_over_unverified = _bool(
        value.get("auth_over_unverified", False), path, f"{key}.auth_over_unverified"
    )
    return r


def default_config(data_dir: str | Path = "mailhouse-data") -> Config:
    return Config(
        hostname=socket.getfqdn() or "localhost",
        data_dir=Path(data_dir).resolve(),
        listen={k: list(v) for k, v in DEFAULT_LISTEN.items()},
    )


#: Where the server and the CLI look for a config file when neither --config nor
#: $MAILHOUSE_CONFIG names one: the system-wide place, then the current directory.
DEFAULT_PATHS: tuple[str, ...] = ("/etc/mailhouse/mailhouse.toml", "mailhouse.toml")


def load(path: str | None = None) -> Config:
    """Load config from PATH, else $MAILHOUSE_CONFIG, else the first of `DEFAULT_PATHS` that
    exists, else built-in defaults."""
    path = (
        path
        or os.environ.get("MAILHOUSE_CONFIG")
        or next((p for p in DEFAULT_PATHS if os.path.isfile(p)), None)
    )
    if not path:
        return default_config()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(path, "-", "file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "-", f"invalid TOML: {e}") from None
    return from_dict(data, path)


_TOP_KEYS = {
    "hostname",
    "data_dir",
    "user",
    "group",
    "allow_root",
    "listen",
    "tls",
    "store",
    "dns",
    "limits",
    "auth",
    "server",
    "queue",
    "relayhost",
    "routes",
    "mta_sts",
    "dkim",
    "mailauth",
    "dmarc",
    "web",
    "connections",
    "spam",
    "sieve",
    "reports",
    "metrics",
    "srs",
    "log",
    "acme",
}

# the keys each table knows: a misspelt key is an error, not silently ignored
_TABLE_KEYS = {
    "tls": {"cert", "key", "ca_file", "sni"},
    "store": {"url"},
    "dns": {"nameservers", "dnssec", "trust_anchor"},
    "limits": {
        "max_message_size",
        "max_recipients",
        "trusted_networks",
        "search_time_budget",
        "search_max_decoded_bytes",
        "send_rate",
        "recipients_per_day",
        "max_inflight_bytes",
        "cpu_workers",
        "cpu_queue",
        "cpu_budget",
    },
    "auth": {"allow_plaintext", "cache_ttl", *AUTH_LIMIT_KEYS},
    "spam": {"bayes", "bayes_min_spam", "bayes_min_ham", *SPAM_KEYS},
    "sieve": {
        "max_scripts",
        "max_script_size",
        "before",
        "after",
        "global_dir",
        "max_redirects",
        "redirects_per_day",
    },
    "server": {
        "workers",
        "smtp_idle_timeout",
        "imap_idle_timeout",
        "pop3_idle_timeout",
        "smtp_pregreet_wait",
        "smtp_pregreet_ttl",
        "smtp_pregreet_fail_ttl",
        "smtp_command_deadline",
        "smtp_min_data_rate",
        "session_timeout",
        "preauth_timeout",
        "stress_timeout",
        "connection_budget",
        "smtp_forbid_unauth_pipelining",
    },
    "connections": {"per_ip", "per_user_ip", "per_account", "max"},
    "queue": {"lifetime", "delay_warning", "retry_base", "retry_max", "outbound_port", "source_address"},
    "mailauth": {"verify_inbound", "dns_budget"},
    "dmarc": {"enforce", "allow", "trusted_arc_sealers", "reports"},
    "log": {"format", "file"},
    "dkim": {"selector"},
    "web": {"forwarded_allow_ips"},
    "reports": {"enabled", "dmarc_address", "tlsrpt_address", "folder", "send", "from", "org_name"},
    "metrics": {"allow_ips", "token"},
    "mta_sts": {"enabled", "fetch_timeout", "resolve", "publish", "publish_max_age"},
    "srs": {"enabled", "domain", "max_age", "secret_generation"},
    "acme": {"directory", "email", "names", "ca_file", "challenge"},
}
_ROUTE_KEYS = {"host", "port", "username", "password", "tls", "auth_over_unverified"}


def from_dict(data: dict[str, Any], path: str = "<dict>") -> Config:
    for k in data:
        if k not in _TOP_KEYS:
            raise ConfigError(path, k, "unknown key")
    base = Path(path).parent if path not in ("<dict>", "<defaults>") else Path.cwd()
    cfg = default_config()
    cfg.source_path = path
    if "hostname" in data:
        if not isinstance(data["hostname"], str) or not data["hostname"]:
            raise ConfigError(path, "hostname", "must be a non-empty string")
        cfg.hostname = data["hostname"]
    if "data_dir" in data:
        if not isinstance(data["data_dir"], str):
            raise ConfigError(path, "data_dir", "must be a string path")
        cfg.data_dir = (base / data["data_dir"]).resolve()
    for key in ("user", "group"):
        if key in data:
            if not isinstance(data[key], str) or not data[key]:
                raise ConfigError(path, key, "must be a non-empty system account name")
            setattr(cfg, key, data[key])
    if "group" in data and "user" not in data:
        raise ConfigError(path, "group", "needs user (the account to serve as)")
    if "allow_root" in data:
        cfg.allow_root = _bool(data["allow_root"], path, "allow_root")
    if "listen" in data:
        listen = data["listen"]
        if not isinstance(listen, dict):
            raise ConfigError(path, "listen", "must be a table")
        cfg.listen = {}
        for svc, val in listen.items():
            if svc in NOT_YET:
                raise ConfigError(path, f"listen.{svc}", NOT_YET[svc])
            if svc not in SERVICES:
                raise ConfigError(path, f"listen.{svc}", f"unknown service (known: {', '.join(SERVICES)})")
            vals = val if isinstance(val, list) else [val]
            cfg.listen[Listener(svc)] = [parse_hostport(v, path, f"listen.{svc}") for v in vals]
    tls = _table(data, "tls", path)
    if "cert" in tls or "key" in tls:
        if not ("cert" in tls and "key" in tls):
            raise ConfigError(path, "tls", "cert and key must be given together")
        cfg.tls_cert, cfg.tls_key = (base / tls["cert"]).resolve(), (base / tls["key"]).resolve()
        for k, p in (("tls.cert", cfg.tls_cert), ("tls.key", cfg.tls_key)):
            if not p.is_file():
                raise ConfigError(path, k, f"file {p} does not exist")
    sni = tls.get("sni", [])
    if not isinstance(sni, list) or not all(isinstance(x, dict) and set(x) == {"cert", "key"} for x in sni):
        raise ConfigError(path, "tls.sni", 'expected a list of {cert = "FILE", key = "FILE"}')
    for i, pair in enumerate(sni):
        sni_cert, sni_key = (base / str(pair["cert"])).resolve(), (base / str(pair["key"])).resolve()
        for what, file in (("cert", sni_cert), ("key", sni_key)):
            if not file.is_file():
                raise ConfigError(path, f"tls.sni[{i}].{what}", f"file {file} does not exist")
        cfg.tls_sni.append((sni_cert, sni_key))
    if "ca_file" in tls:
        cfg.tls_ca_file = (base / str(tls["ca_file"])).resolve()
        if not cfg.tls_ca_file.is_file():
            raise ConfigError(path, "tls.ca_file", f"file {cfg.tls_ca_file} does not exist")
    store = _table(data, "store", path)
    if "url" in store:
        url = store["url"]
        if not isinstance(url, str) or not url.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ConfigError(path, "store.url", "must start with sqlite:/// or postgresql://")
        cfg.store_url = url
    dns = _table(data, "dns", path)
    if "nameservers" in dns:
        ns = dns["nameservers"]
        if not isinstance(ns, list):
            raise ConfigError(path, "dns.nameservers", 'must be a list of "IP" or "IP:port"')
        cfg.dns_nameservers = [_nameserver(v, path, "dns.nameservers") for v in ns]
    if "dnssec" in dns:
        mode = dns["dnssec"]
        if mode not in ("validate", "resolver", "off"):
            raise ConfigError(path, "dns.dnssec", 'must be "validate", "resolver" or "off"')
        cfg.dns_dnssec = Dnssec(mode)
    if "trust_anchor" in dns:
        cfg.dns_trust_anchor = (base / str(dns["trust_anchor"])).resolve()
        if not cfg.dns_trust_anchor.is_file():
            raise ConfigError(path, "dns.trust_anchor", f"file {cfg.dns_trust_anchor} does not exist")
    limits = _table(data, "limits", path)
    for key, attr in (
        ("max_message_size", "max_message_size"),
        ("max_recipients", "max_recipients"),
        ("search_max_decoded_bytes", "search_max_decoded_bytes"),
        ("max_inflight_bytes", "max_inflight_bytes_set"),
        ("cpu_workers", "cpu_workers"),
        ("cpu_queue", "cpu_queue"),
    ):
        if key in limits:
            v = limits[key]
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(path, f"limits.{key}", "must be a positive integer")
            setattr(cfg, attr, v)
    if "search_time_budget" in limits:
        cfg.search_time_budget = _nonneg_number(
            limits["search_time_budget"], path, "limits.search_time_budget", "must be a number of seconds > 0"
        )
        if cfg.search_time_budget <= 0:
            raise ConfigError(path, "limits.search_time_budget", "must be a number of seconds > 0")
    if "cpu_budget" in limits:
        cfg.cpu_budget = _nonneg_number(
            limits["cpu_budget"], path, "limits.cpu_budget", "must be seconds > 0"
        )
        if cfg.cpu_budget <= 0:
            raise ConfigError(path, "limits.cpu_budget", "must be seconds > 0")
    auth = _table(data, "auth", path)
    if "allow_plaintext" in auth:
        cfg.allow_plaintext_auth = _bool(auth["allow_plaintext"], path, "auth.allow_plaintext")
    if "cache_ttl" in auth:
        cfg.auth_cache_ttl = _nonneg_number(
            auth["cache_ttl"],
            path,
            "auth.cache_ttl",
            "must be a number of seconds ≥ 0 (0 turns the cache off)",
        )
    cfg.auth_limits = _auth_limits(auth, path)
    server = _table(data, "server", path)
    if "workers" in server:
        w = server["workers"]
        if not isinstance(w, int) or not 1 <= w <= 64:
            raise ConfigError(path, "server.workers", "must be an integer 1-64")
        cfg.workers = w
    for key in (
        "smtp_idle_timeout",
        "imap_idle_timeout",
        "pop3_idle_timeout",
        "smtp_command_deadline",
        "smtp_min_data_rate",
        "session_timeout",
        "preauth_timeout",
        "stress_timeout",
    ):
        if key in server:
            setattr(cfg, key, _pos_number(server[key], path, f"server.{key}"))
    if "connection_budget" in server:
        b = server["connection_budget"]
        if not isinstance(b, int) or isinstance(b, bool) or b < 1:
            raise ConfigError(path, "server.connection_budget", "must be an integer ≥ 1")
        cfg.connection_budget = b
    if "smtp_forbid_unauth_pipelining" in server:
        cfg.smtp_forbid_unauth_pipelining = _bool(
            server["smtp_forbid_unauth_pipelining"], path, "server.smtp_forbid_unauth_pipelining"
        )
    _connections(cfg, _table(data, "connections", path), path)
    queue = _table(data, "queue", path)
    for key, attr in (
        ("lifetime", "queue_lifetime"),
        ("delay_warning", "queue_delay_warning"),
        ("retry_base", "queue_retry_base"),
        ("retry_max", "queue_retry_max"),
    ):
        if key in queue:
            setattr(cfg, attr, _pos_number(queue[key], path, f"queue.{key}"))
    if "source_address" in queue:
        v = queue["source_address"]
        addrs = v if isinstance(v, list) else [v]
        versions = [_ip_version(a, path, "queue.source_address") for a in addrs]
        if len(set(versions)) != len(versions):
            raise ConfigError(path, "queue.source_address", "at most one IPv4 and one IPv6 address")
        cfg.source_addresses = list(addrs)
    if "outbound_port" in queue:
        cfg.outbound_port = int(_pos_number(queue["outbound_port"], path, "queue.outbound_port"))
    mta_sts = _table(data, "mta_sts", path)
    if "enabled" in mta_sts:
        cfg.mta_sts_enabled = _bool(mta_sts["enabled"], path, "mta_sts.enabled")
    if "fetch_timeout" in mta_sts:
        cfg.mta_sts_fetch_timeout = _pos_number(mta_sts["fetch_timeout"], path, "mta_sts.fetch_timeout")
    if "publish" in mta_sts:
        v = str(mta_sts["publish"])
        if v not in ("enforce", "testing", "none", "off"):
            raise ConfigError(path, "mta_sts.publish", 'expected "enforce", "testing", "none" or "off"')
        cfg.mta_sts_publish = v
    if "publish_max_age" in mta_sts:
        age = int(_pos_number(mta_sts["publish_max_age"], path, "mta_sts.publish_max_age"))
        if age > 31557600:  # RFC 8461 §3.2
            raise ConfigError(path, "mta_sts.publish_max_age", "at most 31557600 seconds (RFC 8461)")
        cfg.mta_sts_publish_max_age = age
    resolve = mta_sts.get("resolve", {})
    if not isinstance(resolve, dict):
        raise ConfigError(path, "mta_sts.resolve", 'expected a table {"mta-sts.DOMAIN" = "ip:port"}')
    cfg.mta_sts_resolve = {
        str(h).lower(): parse_hostport(str(v), path, f"mta_sts.resolve.{h}") for h, v in resolve.items()
    }
    if "relayhost" in data:
        cfg.relayhost = _route(data["relayhost"], path, "relayhost")
    routes = _table(data, "routes", path)
    cfg.routes = {d.lower().rstrip("."): _route(v, path, f"routes.{d}") for d, v in routes.items()}
    mailauth = _table(data, "mailauth", path)
    if "verify_inbound" in mailauth:
        cfg.verify_inbound = _bool(mailauth["verify_inbound"], path, "mailauth.verify_inbound")
    if "dns_budget" in mailauth:
        cfg.dns_budget = _pos_number(mailauth["dns_budget"], path, "mailauth.dns_budget")
    log_table = _table(data, "log", path)
    if "format" in log_table:
        if log_table["format"] not in ("text", "json"):
            raise ConfigError(path, "log.format", 'expected "text" or "json"')
        cfg.log_format = log_table["format"]
    if "file" in log_table:
        v = log_table["file"]
        if not isinstance(v, str) or not v:
            raise ConfigError(path, "log.file", "must be the path of the log file")
        cfg.log_file = (base / v).resolve()
        if not cfg.log_file.parent.is_dir():
            raise ConfigError(path, "log.file", f"directory {cfg.log_file.parent} does not exist")
    dmarc = _table(data, "dmarc", path)
    if "enforce" in dmarc:
        cfg.dmarc_enforce = _bool(dmarc["enforce"], path, "dmarc.enforce")
    if "reports" in dmarc:
        cfg.dmarc_reports = _bool(dmarc["reports"], path, "dmarc.reports")
    for key, attr in (("allow", "dmarc_allow"), ("trusted_arc_sealers", "trusted_arc_sealers")):
        if key in dmarc:
            setattr(cfg, attr, _domains(dmarc[key], path, f"dmarc.{key}"))
    if "smtp_pregreet_wait" in server:
        cfg.pregreet_wait = _nonneg_number(server["smtp_pregreet_wait"], path, "server.smtp_pregreet_wait")
    if "smtp_pregreet_ttl" in server:  # 0: remember no pass (test every connection)
        cfg.pregreet_ttl = _nonneg_number(server["smtp_pregreet_ttl"], path, "server.smtp_pregreet_ttl")
    if "smtp_pregreet_fail_ttl" in server:  # 0: a failed client may retry at once
        cfg.pregreet_fail_ttl = _nonneg_number(
            server["smtp_pregreet_fail_ttl"], path, "server.smtp_pregreet_fail_ttl"
        )
    _reports(cfg, _table(data, "reports", path), path)
    metrics = _table(data, "metrics", path)
    if "allow_ips" in metrics:
        cfg.metrics_allow_ips = _networks(metrics["allow_ips"], path, "metrics.allow_ips")
    if "token" in metrics:
        if not isinstance(metrics["token"], str):
            raise ConfigError(path, "metrics.token", "must be a string")
        cfg.metrics_token = metrics["token"]
    _srs(cfg, _table(data, "srs", path), path)
    _acme(cfg, _table(data, "acme", path), path, base)
    web = _table(data, "web", path)
    if "forwarded_allow_ips" in web:
        cfg.forwarded_allow_ips = _networks(web["forwarded_allow_ips"], path, "web.forwarded_allow_ips")
    for key in ("send_rate", "recipients_per_day"):
        if key in limits:
            v = limits[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(path, f"limits.{key}", "must be a non-negative integer (0 = off)")
            setattr(cfg, key, v)
    if "trusted_networks" in limits:
        cfg.trusted_networks = _networks(limits["trusted_networks"], path, "limits.trusted_networks")
    dkim = _table(data, "dkim", path)
    if "selector" in dkim:
        cfg.dkim_selector = str(dkim["selector"])
    spam = _table(data, "spam", path)
    if "bayes" in spam:
        cfg.spam_bayes = _bool(spam["bayes"], path, "spam.bayes")
    for key in ("bayes_min_spam", "bayes_min_ham"):
        if key in spam:
            setattr(cfg, f"spam_{key}", _count(spam[key], path, f"spam.{key}"))
    cfg.spam = _spam({k: v for k, v in spam.items() if k in SPAM_KEYS}, path)
    cfg.sieve = _sieve(_table(data, "sieve", path), path, base)
    return cfg


def _sieve(t: dict[str, Any], path: str, base: Path) -> SieveConfig:
    """`[sieve]`: counts ≥ 1 (a zero quota would refuse every script) and existing script files."""
    kw: dict[str, Any] = {}
    for key in ("max_scripts", "max_script_size", "max_redirects", "redirects_per_day"):
        if key in t:
            v = t[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(path, f"sieve.{key}", "must be an integer ≥ 1")
            kw[key] = v
    for key in ("before", "after"):
        if key in t:
            if not isinstance(t[key], str) or not t[key]:
                raise ConfigError(path, f"sieve.{key}", "must be the path of a Sieve script file")
            p = (base / t[key]).resolve()
            if not p.is_file():
                raise ConfigError(path, f"sieve.{key}", f"file {p} does not exist")
            kw[key] = p
    if "global_dir" in t:
        if not isinstance(t["global_dir"], str) or not t["global_dir"]:
            raise ConfigError(path, "sieve.global_dir", "must be the path of a directory of Sieve scripts")
        d = (base / t["global_dir"]).resolve()
        if not d.is_dir():
            raise ConfigError(path, "sieve.global_dir", f"directory {d} does not exist")
        kw["global_dir"] = d
    return SieveConfig(**kw)


def _zones(v: Any, path: str, key: str) -> tuple[str, ...]:
    """DNS list zones: "zone" or "zone=score"."""
    if not isinstance(v, list) or not all(isinstance(z, str) for z in v):
        raise ConfigError(path, key, 'must be a list of zones, e.g. ["zen.spamhaus.org", "list.example=2.5"]')
    for z in v:
        zone, eq, score = z.partition("=")
        if not zone.strip() or " " in zone.strip():
            raise ConfigError(path, key, f"{z!r}: empty or malformed zone")
        if eq:
            try:
                float(score)
            except ValueError:
                raise ConfigError(path, key, f"{z!r}: the score after '=' is not a number") from None
    return tuple(v)


def _spam(t: dict[str, Any], path: str) -> SpamConfig:
    values: dict[str, Any] = {}
    for key in ("enabled", "score_submission", "greylisting"):
        if key in t:
            values[key] = _bool(t[key], path, f"spam.{key}")
    for key in ("greylist_delay", "greylist_expire", "greylist_pass_ttl"):
        if key in t:
            values[key] = _pos_number(t[key], path, f"spam.{key}")
    for key in ("junk_threshold", "reject_threshold"):
        if key in t:
            v = t[key]
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ConfigError(path, f"spam.{key}", "must be a number")
            values[key] = float(v)
    if "timeout" in t:
        values["timeout"] = _pos_number(t["timeout"], path, "spam.timeout")
    for key in ("dnsbl", "dnswl", "domain_blocklists"):
        if key in t:
            values[key] = _zones(t[key], path, f"spam.{key}")
    if "trusted_networks" in t:
        values["trusted_networks"] = tuple(_networks(t["trusted_networks"], path, "spam.trusted_networks"))
    if "rspamd_url" in t:
        url = t["rspamd_url"]
        if not isinstance(url, str) or (url and not url.startswith(("http://", "https://"))):
            raise ConfigError(
                path, "spam.rspamd_url", 'must be an http(s) URL, e.g. "http://127.0.0.1:11333"'
            )
        values["rspamd_url"] = url
    if "rspamd_max_size" in t:
        values["rspamd_max_size"] = _count(t["rspamd_max_size"], path, "spam.rspamd_max_size")
    spam = SpamConfig(**values)
    if spam.reject_threshold < spam.junk_threshold:
        raise ConfigError(path, "spam.reject_threshold", "must be ≥ spam.junk_threshold")
    return spam


def _auth_limits(auth: dict[str, Any], path: str) -> AuthLimits:
    values: dict[str, Any] = {}
    for key in AUTH_LIMIT_KEYS:
        if key not in auth:
            continue
        v = auth[key]
        if key.endswith("_after"):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(path, f"auth.{key}", "must be an integer ≥ 0")
            values[key] = v
        else:
            values[key] = _pos_number(v, path, f"auth.{key}")
    lim = AuthLimits(**values)
    if lim.max_failure_delay < lim.failure_delay:
        raise ConfigError(path, "auth.max_failure_delay", "must be ≥ auth.failure_delay")
    return lim


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=64)  # asked per connection; the configured lists are few
def parse_networks(networks: tuple[str, ...]) -> tuple[Network, ...]:
    """Configured addresses or networks ("192.0.2.0/24", "2001:db8::1"), validated at load."""
    return tuple(ipaddress.ip_network(n, strict=False) for n in networks)


def address_in(ip: str, networks: Sequence[Network]) -> bool:
    """Whether client address IP (a scope id ignored, IPv4-mapped IPv6 as IPv4) lies in NETWORKS."""
    if not networks:
        return False
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in networks)


def _networks(ips: Any, path: str, key: str) -> list[str]:
    """A list of IP addresses or networks ("192.0.2.0/24", "2001:db8::/32")."""
    if not isinstance(ips, list) or not all(isinstance(ip, str) for ip in ips):
        raise ConfigError(path, key, 'must be a list of addresses, e.g. ["127.0.0.1"]')
    for ip in ips:
        try:
            ipaddress.ip_network(ip, strict=False)
        except ValueError:
            raise ConfigError(path, key, f"{ip!r} is not an IP address or network") from None
    return list(ips)


def _count(v: Any, path: str, key: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ConfigError(path, key, "must be an integer ≥ 0 (0: no limit)")
    return v


def _connections(cfg: Config, t: dict[str, Any], path: str) -> None:
    """`[connections]`: per_ip (a table service → count), per_user_ip, per_account, max."""
    if "per_ip" in t:
        per_ip = t["per_ip"]
        if not isinstance(per_ip, dict):
            raise ConfigError(path, "connections.per_ip", "must be a table, e.g. { smtp = 50, imap = 30 }")
        for svc, n in per_ip.items():
            if svc not in SERVICES:
                raise ConfigError(
                    path, f"connections.per_ip.{svc}", f"unknown service (known: {', '.join(SERVICES)})"
                )
            cfg.conn_per_ip[svc] = _count(n, path, f"connections.per_ip.{svc}")
    for key, attr in (
        ("per_user_ip", "conn_per_user_ip"),
        ("per_account", "conn_per_account"),
        ("max", "max_connections"),
    ):
        if key in t:
            setattr(cfg, attr, _count(t[key], path, f"connections.{key}"))


def _reports(cfg: Config, t: dict[str, Any], path: str) -> None:
    if "enabled" in t:
        cfg.reports_enabled = _bool(t["enabled"], path, "reports.enabled")
    addresses = []
    for key in ("dmarc_address", "tlsrpt_address"):
        v = t.get(key, "postmaster")
        if not isinstance(v, str) or not v.strip() or v.startswith("@") or v.endswith("@"):
            raise ConfigError(path, f"reports.{key}", "must be a local part or an address")
        addresses.append(v.strip().lower())
    cfg.report_addresses = tuple(dict.fromkeys(addresses))
    if "folder" in t:
        v = t["folder"]
        if not isinstance(v, str) or not v.strip() or v.upper() == "INBOX":
            raise ConfigError(path, "reports.folder", "must be a mailbox name other than INBOX")
        cfg.reports_folder = v.strip()
    if "send" in t:
        cfg.reports_send = _bool(t["send"], path, "reports.send")
    if "from" in t:
        v = t["from"]
        if not isinstance(v, str) or v.count("@") != 1 or v.startswith("@") or v.endswith("@") or " " in v:
            raise ConfigError(path, "reports.from", "must be an address (local@domain)")
        cfg.reports_from = v.strip()
    if "org_name" in t:
        if not isinstance(t["org_name"], str) or not t["org_name"].strip():
            raise ConfigError(path, "reports.org_name", "must be a non-empty string")
        cfg.reports_org_name = t["org_name"].strip()


def _srs(cfg: Config, t: dict[str, Any], path: str) -> None:
    if "enabled" in t:
        cfg.srs_enabled = _bool(t["enabled"], path, "srs.enabled")
    if "domain" in t:
        d = _domains([t["domain"]] if isinstance(t["domain"], str) else None, path, "srs.domain")
        cfg.srs_domain_set = d[0]
    if "max_age" in t:
        v = t["max_age"]
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 1000:
            raise ConfigError(path, "srs.max_age", "must be a number of days from 1 to 1000")
        cfg.srs_max_age = v
    if "secret_generation" in t:
        v = t["secret_generation"]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(path, "srs.secret_generation", "must be an integer ≥ 1")
        cfg.srs_secret_generation = v


def _acme(cfg: Config, t: dict[str, Any], path: str, base: Path) -> None:
    """`[acme]`: directory (an https URL; http only on loopback, for tests), email, names, ca_file."""
    if "directory" in t:
        v = t["directory"]
        if not isinstance(v, str) or not v.startswith(("https://", "http://127.", "http://[::1]")):
            raise ConfigError(path, "acme.directory", "must be the https:// URL of the ACME directory")
        cfg.acme_directory = v
    if "email" in t:
        v = t["email"]
        if not isinstance(v, str) or v.count("@") != 1 or " " in v:
            raise ConfigError(path, "acme.email", "must be an address (local@domain)")
        cfg.acme_email = v
    if "names" in t:
        cfg.acme_names = _domains(t["names"], path, "acme.names")
    if "ca_file" in t:
        cfg.acme_ca_file = (base / str(t["ca_file"])).resolve()
        if not cfg.acme_ca_file.is_file():
            raise ConfigError(path, "acme.ca_file", f"file {cfg.acme_ca_file} does not exist")
    if "challenge" in t:
        if t["challenge"] not in ("http-01", "tls-alpn-01"):
            raise ConfigError(path, "acme.challenge", 'must be "http-01" or "tls-alpn-01"')
        cfg.acme_challenge = t["challenge"]


def _table(data: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    v = data.get(key, {})
    if not isinstance(v, dict):
        raise ConfigError(path, key, "must be a table")
    known = _TABLE_KEYS.get(key)
    if known is not None:
        for k in v:
            if k not in known:
                raise ConfigError(path, f"{key}.{k}", f"unknown key (known: {', '.join(sorted(known))})")
    return v


def _domains(v: Any, path: str, key: str) -> list[str]:
    """A list of domain names, lower-cased, without the trailing dot."""
    if not isinstance(v, list) or not all(isinstance(d, str) and d.strip(". ") for d in v):
        raise ConfigError(path, key, "must be a list of domain names")
    return [d.strip().lower().rstrip(".") for d in v]


def _bool(v: Any, path: str, key: str) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(path, key, "must be true or false")
    return v


def _nonneg_number(v: Any, path: str, key: str, problem: str = "must be a number ≥ 0") -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise ConfigError(path, key, problem)
    return float(v)


def _ip_version(v: Any, path: str, key: str) -> int:
    """4 or 6 for an IP address string; else a ConfigError naming the value."""
    try:
        if isinstance(v, str):
            return ipaddress.ip_address(v).version
    except ValueError:
        pass
    raise ConfigError(path, key, f"{v!r} is not an IP address")


def _pos_number(v: Any, path: str, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
        raise ConfigError(path, key, "must be a positive number")
    return float(v)
