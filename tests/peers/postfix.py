"""A private Postfix instance on loopback, for interop tests and benchmarks.

Runs from its own ``config_directory``/``queue_directory`` under a temp dir, with
``master -d`` in the foreground so it is stopped by PID (``postfix -c DIR stop`` is
the backup). Never uses DNS: ``smtp_dns_support_level = disabled``, and relaying
goes to an explicit ``[ip]:port``.

Modes:

- ``"local"``: accepts mail for ``domains`` and delivers into virtual maildirs
  under ``mail_dir/<domain>/<localpart>/`` (``virtual(8)``, uid ``nobody``).
- ``"relay"``: relays mail (for ``relay_domains``, or everything from
  ``mynetworks``) to ``relay_to="127.0.0.2:2525"``.

Also: :func:`smtp_sink` / :func:`smtp_source` wrappers for Postfix's load tools.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from ._proc import find_binary, stop_process, tail
from .ports import check_loopback, free_port, wait_port

__all__ = ["PostfixInstance", "SmtpSink", "smtp_sink", "smtp_source"]

DAEMON_DIR = "/usr/lib/postfix/sbin"
MAIL_USER = "nobody"  # owner of virtual maildirs; must be >= virtual_minimum_uid (100)

MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


_queue_template: Path | None = None


def _seed_queue_dir(dest: Path) -> bool:
    """Copy a pre-built queue directory tree (``post-install create-missing`` takes ~2 s)."""
    global _queue_template
    if _queue_template is None or not _queue_template.exists():
        tmpl_base = Path(tempfile.mkdtemp(prefix="mh-postfix-template-"))
        tmpl = PostfixInstance(tmpl_base, port=1)
        tmpl.write_config()
        r = subprocess.run(
            [find_binary("postfix"), "-c", str(tmpl.config_dir), "post-install", "create-missing"],
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode != 0:
            shutil.rmtree(tmpl_base, ignore_errors=True)
            return False  # `postfix check` will create it the slow way and report errors
        _queue_template = tmpl.queue_dir
        atexit.register(shutil.rmtree, tmpl_base, True)
    subprocess.run(["cp", "-a", f"{_queue_template}/.", str(dest)], check=True)
    return True


class PostfixInstance:
    """A private Postfix: ``PostfixInstance(mode="local", domains=["example.test"]).start()``.

    Arguments:
        base_dir: where everything lives (temp dir if None; removed on stop()).
        config_dir / queue_dir: override ``base_dir/etc`` and ``base_dir/queue``.
        host, port: the smtpd listener (port: a free one if None; use 25 if a test needs it).
        mode: ``"local"`` or ``"relay"``.
        domains: local mode — domains whose mail is delivered to maildirs.
        mailboxes: local mode — addresses to accept (default: ``catchall`` for each domain
            via a ``@domain`` entry, so any local part is accepted).
        relay_to: relay mode — ``"127.0.0.2:2525"`` next hop (no MX lookup).
        relay_domains: relay mode — domains accepted from anyone and relayed; empty means
            only clients in ``mynetworks`` may relay.
        mynetworks: clients allowed to relay (default ``127.0.0.0/8``; pass ``"127.0.0.1/32"``
            or ``""`` to test that relaying is refused).
        myhostname: HELO/banner name.
        main: extra ``main.cf`` settings, applied last.
        resolv_conf: a resolv.conf bind-mounted over /etc/resolv.conf for this instance only
            (a private mount namespace, root only): Postfix's DNS lookups (DANE, MX) then go
            to a resolver on loopback instead of the system's.
    """

    def __init__(
        self,
        base_dir: str | Path | None = None,
        *,
        config_dir: str | Path | None = None,
        queue_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        mode: str = "local",
        domains: Iterable[str] = ("example.test",),
        mailboxes: Iterable[str] | None = None,
        relay_to: str | None = None,
        relay_domains: Iterable[str] = (),
        mynetworks: str = "127.0.0.0/8",
        myhostname: str | None = None,
        main: Mapping[str, str] | None = None,
        resolv_conf: str | Path | None = None,
    ) -> None:
        if mode not in ("local", "relay"):
            raise ValueError("mode must be 'local' or 'relay'")
        if mode == "relay" and not relay_to:
            raise ValueError("relay mode needs relay_to='127.0.0.X:PORT'")
        self.host = check_loopback(host)
        self.port = port
        self.mode = mode
        self.domains = list(domains)
        self.mailboxes = list(mailboxes) if mailboxes is not None else None
        self.relay_to = relay_to
        if relay_to:
            check_loopback(relay_to.rsplit(":", 1)[0].strip("[]"))
        self.relay_domains = list(relay_domains)
        self.mynetworks = mynetworks
        self.myhostname = myhostname or f"postfix-{host.replace('.', '-')}.test"
        self.extra_main = dict(main or {})
        self.resolv_conf = Path(resolv_conf) if resolv_conf else None

        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="mh-postfix-"))
        self.config_dir = Path(config_dir or self.base_dir / "etc")
        self.queue_dir = Path(queue_dir or self.base_dir / "queue")
        self.data_dir = self.base_dir / "data"
        self.mail_dir = self.base_dir / "mail"
        self.log_file = self.base_dir / "maillog"
        self.proc: subprocess.Popen | None = None

    # -- configuration -------------------------------------------------------------
    def main_cf(self) -> dict[str, str]:
        cfg = self.config_dir
        m: dict[str, str] = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": self.myhostname,
            "mydomain": "test",
            "myorigin": "$myhostname",
            "mydestination": "",
            # Must name an address configured on an interface: 127.0.0.2+ are routable on lo
            # but not "configured", so Postfix refuses them here. The smtpd listener binds
            # the chosen address explicitly in master.cf instead.
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": self.mynetworks or "",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_recipient_restrictions": "",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "local_transport": "error:5.1.1 no local delivery in test instance",
            "biff": "no",
            "append_dot_mydomain": "no",
            "smtputf8_enable": "yes",
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": f"/var, /dev/stdout, {self.base_dir}",
            # Never query DNS: next hops are [ip]:port, host names go through /etc/hosts only.
            "smtp_dns_support_level": "disabled",
            "lmtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "smtpd_peername_lookup": "no",
            "smtp_bind_address": self.host,
            # Fast retries so tests can watch the queue drain.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "5s",
            "maximal_queue_lifetime": "1h",
            "bounce_queue_lifetime": "1h",
            "delay_warning_time": "0",
            "smtp_connect_timeout": "5s",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "message_size_limit": "52428800",
            "default_process_limit": "100",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0",
            "smtpd_client_message_rate_limit": "0",
            "smtpd_client_recipient_rate_limit": "0",
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "1000",
            "smtpd_hard_error_limit": "1000",
            "in_flow_delay": "0",
            "header_checks": "",
            "relayhost": "",
        }
        if self.mode == "local":
            uid = pwd.getpwnam(MAIL_USER)
            m.update(
                {
                    "virtual_mailbox_domains": " ".join(self.domains),
                    "virtual_mailbox_maps": f"texthash:{cfg}/vmailbox",
                    "virtual_mailbox_base": str(self.mail_dir),
                    "virtual_uid_maps": f"static:{uid.pw_uid}",
                    "virtual_gid_maps": f"static:{uid.pw_gid}",
                    "virtual_minimum_uid": "100",
                    "virtual_mailbox_limit": "0",
                    "virtual_transport": "virtual",
                }
            )
        else:
            host, port = self.relay_to.rsplit(":", 1)
            nexthop = f"smtp:[{host.strip('[]')}]:{port}"
            m.update(
                {
                    "relay_domains": " ".join(self.relay_domains),
                    "transport_maps": f"texthash:{cfg}/transport",
                    "default_transport": nexthop,
                    "relay_transport": nexthop,
                }
            )
        m.update(self.extra_main)
        return m

    def write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.queue_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o755)  # virtual(8) runs as nobody and must traverse it
        pf = pwd.getpwnam("postfix")
        os.chown(self.data_dir, pf.pw_uid, pf.pw_gid)
        os.chmod(self.data_dir, 0o700)
        (self.config_dir / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in self.main_cf().items()))
        listen = f"{self.host}:{self.port}"
        (self.config_dir / "master.cf").write_text(MASTER_CF.format(listen=listen))
        if self.mode == "local":
            self.mail_dir.mkdir(parents=True, exist_ok=True)
            u = pwd.getpwnam(MAIL_USER)
            os.chown(self.mail_dir, u.pw_uid, u.pw_gid)
            lines = []
            if self.mailboxes is None:
                # Catch-all per domain: any local part lands in <domain>/catchall/.
                lines = [f"@{d} {d}/catchall/" for d in self.domains]
            else:
                for addr in self.mailboxes:
                    local, domain = addr.rsplit("@", 1)
                    lines.append(f"{addr} {domain}/{local}/")
            (self.config_dir / "vmailbox").write_text("\n".join(lines) + "\n")
        else:
            host, port = self.relay_to.rsplit(":", 1)
            (self.config_dir / "transport").write_text(f"* smtp:[{host.strip('[]')}]:{port}\n")
        # Postfix re-reads a table/config file in 300 ms steps while its mtime is not yet in
        # the past (a guard against half-written files): back-date ours to start at once.
        past = time.time() - 5
        for f in self.config_dir.iterdir():
            os.utime(f, (past, past))

    def postconf(self, *args: str) -> str:
        return subprocess.run(
            [find_binary("postconf"), "-c", str(self.config_dir), *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    # -- lifecycle -----------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def start(self, timeout: float = 20.0) -> PostfixInstance:
        if self.proc is not None and self.proc.poll() is None:
            return self
        if self.port is None:
            self.port = free_port(self.host)
        self.write_config()
        env = {**os.environ, "MAIL_CONFIG": str(self.config_dir)}
        postfix = find_binary("postfix")
        seeded = not any(self.queue_dir.iterdir()) and _seed_queue_dir(self.queue_dir)
        # `postfix check` creates the queue directory tree with the right owners (~2 s; skipped
        # when the tree was copied from a template: master's own errors land in maillog).
        chk = (
            None
            if seeded
            else subprocess.run(
                [postfix, "-c", str(self.config_dir), "check"], capture_output=True, text=True, env=env
            )
        )
        if chk is not None and chk.returncode != 0:
            raise RuntimeError(f"postfix check failed:\n{chk.stdout}{chk.stderr}\n{self.log()}")
        # Stale pid file from a crashed run would make master refuse to start.
        (self.queue_dir / "pid" / "master.pid").unlink(missing_ok=True)
        with open(self.base_dir / "master.stderr", "ab") as err:
            cmd = [f"{DAEMON_DIR}/master", "-c", str(self.config_dir), "-d"]
            if self.resolv_conf is not None:
                # unshare execs sh, which execs master: the PID stays master's
                mount = f"mount --bind {shlex.quote(str(self.resolv_conf))} /etc/resolv.conf"
                cmd = [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    f"{mount} && exec {shlex.join(cmd)}",
                ]
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                env=env,
                start_new_session=True,
            )
        try:
            wait_port(self.host, self.port, timeout=timeout, proc=self.proc)
        except Exception as e:
            self.stop(cleanup=False)
            # Fatal start-up errors go to syslog (postlogd isn't up yet); postconf shows config ones.
            pc = subprocess.run(
                [find_binary("postconf"), "-c", str(self.config_dir), "-n"],
                capture_output=True,
                text=True,
                check=False,
            )
            raise RuntimeError(f"postfix did not start: {e}\n{self.log()}\npostconf: {pc.stderr}") from e
        return self

    def stop(self, cleanup: bool = True) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, timeout=10)
            self.proc = None
            if (self.queue_dir / "pid" / "master.pid").exists():
                subprocess.run(
                    [find_binary("postfix"), "-c", str(self.config_dir), "stop"],
                    capture_output=True,
                    check=False,
                )
        if cleanup and self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> PostfixInstance:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- inspection ----------------------------------------------------------------
    def log(self, lines: int = 60) -> str:
        return tail(self.log_file, lines) + "\n" + tail(self.base_dir / "master.stderr", 20)

    def maildir(self, address: str) -> Path:
        """The maildir a recipient's mail lands in (catch-all dir if no explicit mailboxes)."""
        local, domain = address.rsplit("@", 1)
        if self.mailboxes is None:
            local = "catchall"
        return self.mail_dir / domain / local

    def delivered(self, address: str | None = None) -> list[Path]:
        """Message files delivered (to one address's maildir, or to all)."""
        roots = [self.maildir(address)] if address else [self.mail_dir]
        out: list[Path] = []
        for root in roots:
            for sub in ("new", "cur"):
                out.extend(p for p in root.rglob(f"{sub}/*") if p.is_file())
        return sorted(out)

    def wait_delivered(self, count: int, address: str | None = None, timeout: float = 20.0) -> list[Path]:
        deadline = time.monotonic() + timeout
        while True:
            files = self.delivered(address)
            if len(files) >= count:
                return files
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(files)}/{count} delivered after {timeout}s\n{self.log()}")
            time.sleep(0.1)

    def queue(self) -> str:
        """``postqueue -p`` output ("Mail queue is empty" when empty)."""
        r = subprocess.run(
            [find_binary("postqueue"), "-c", str(self.config_dir), "-p"],
            capture_output=True,
            text=True,
            check=False,
        )
        return r.stdout + r.stderr

    def queue_empty(self) -> bool:
        return "Mail queue is empty" in self.queue()

    def flush(self) -> None:
        subprocess.run(
            [find_binary("postqueue"), "-c", str(self.config_dir), "-f"], capture_output=True, check=False
        )

    def wait_queue_empty(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.queue_empty():
            if time.monotonic() > deadline:
                raise TimeoutError(f"queue not empty after {timeout}s:\n{self.queue()}\n{self.log()}")
            time.sleep(0.2)

    def __repr__(self) -> str:
        return f"<PostfixInstance {self.mode} {self.host}:{self.port} pid={self.proc.pid if self.proc else None}>"


# -- smtp-sink / smtp-source --------------------------------------------------------


class SmtpSink:
    """Postfix's ``smtp-sink`` on loopback: accepts and discards mail, optionally dumping it.

    ``dump_dir``: if given, each message is saved there (``-d DIR/%Y%m%d%H/%M.``), so tests
    can check that relayed mail arrived. ``count`` returns messages received (from ``-c``
    output is unreliable in the background, so we count dump files).
    """

    def __init__(
        self,
        host: str = "127.0.0.2",
        port: int | None = None,
        *,
        dump_dir: str | Path | None = None,
        backlog: int = 256,
        args: Iterable[str] = (),
    ) -> None:
        self.host = check_loopback(host)
        self.port = port
        self.dump_dir = Path(dump_dir) if dump_dir else None
        self.backlog = backlog
        self.args = list(args)
        self.proc: subprocess.Popen | None = None
        self._err = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> SmtpSink:
        if self.port is None:
            self.port = free_port(self.host)
        cmd = [find_binary("smtp-sink")]
        if os.geteuid() == 0:
            # smtp-sink insists on -u when started as root; staying root keeps dump dirs writable.
            cmd += ["-u", "root"]
        if self.dump_dir:
            self.dump_dir.mkdir(parents=True, exist_ok=True)
            # One file per message; %-escapes are strftime's, the rest is a unique suffix.
            cmd += ["-d", str(self.dump_dir) + "/%Y%m%d%H%M%S."]
        cmd += [*self.args, f"{self.host}:{self.port}", str(self.backlog)]
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._err, start_new_session=True)
        try:
            wait_port(self.host, self.port, timeout=timeout, proc=self.proc)
        except Exception as e:
            self.stop()
            raise RuntimeError(f"smtp-sink did not start: {e}\n{self.stderr()}") from e
        return self

    def stderr(self) -> str:
        if self._err is None:
            return ""
        self._err.seek(0)
        return self._err.read().decode(errors="replace")

    def messages(self) -> list[Path]:
        if not self.dump_dir:
            raise RuntimeError("SmtpSink(dump_dir=...) needed to inspect messages")
        return sorted(p for p in self.dump_dir.rglob("*") if p.is_file())

    def wait_messages(self, count: int, timeout: float = 20.0) -> list[Path]:
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages()
            if len(msgs) >= count:
                return msgs
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(msgs)}/{count} messages at smtp-sink after {timeout}s")
            time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def smtp_sink(host: str = "127.0.0.2", port: int | None = None, **kw) -> SmtpSink:
    """Start and return an :class:`SmtpSink`."""
    return SmtpSink(host, port, **kw).start()


def smtp_source(
    host: str,
    port: int,
    *,
    messages: int = 100,
    sessions: int = 10,
    recipients: int = 1,
    size: int | None = None,
    sender: str = "bench@source.test",
    to: str = "user@example.test",
    helo: str = "source.test",
    extra: Iterable[str] = (),
    timeout: float = 600.0,
) -> float:
    """Run Postfix's ``smtp-source`` against host:port; return elapsed seconds.

    ``-m messages -s sessions -r recipients [-l size]``; raises on non-zero exit.
    """
    check_loopback(host)
    cmd = [
        find_binary("smtp-source"),
        "-m",
        str(messages),
        "-s",
        str(sessions),
        "-r",
        str(recipients),
        "-f",
        sender,
        "-t",
        to,
        "-M",
        helo,
    ]
    if size is not None:
        cmd += ["-l", str(size)]
    cmd += [*extra, f"{host}:{port}"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"smtp-source failed ({r.returncode}): {r.stderr}{r.stdout}")
    return elapsed
