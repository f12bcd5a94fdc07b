"""Start as root only to bind the listeners and read the TLS key, then serve as `user` (issue 16 §1).

`mailhouse serve` started as root with a top-level `user = "mailhouse"` (optional `group`, default
the user's login group) does, in this order (app.serve):

1. binds every configured listener (runtime/listener.py `bind_shared`, which the web server's
   listener uses too), so ports below 1024 work without CAP_NET_BIND_SERVICE;
2. creates the data directory and hands it to the user (`prepare_data_dir`: chown of the
   directory and of every entry not owned by the user yet, with one log line) and reads the TLS
   certificate and key (a key readable only by root stays usable: it is held in memory);
3. drops: setgroups, setgid, setuid — in that order, since after setuid the process may no
   longer change its groups (`drop`) — and checks with getresuid/getresgid that no real, effective
   or saved id is still root and that setuid(0) now fails;
4. only then builds the store and services, so every file they write belongs to the user, and
   (with `[server] workers`) forks the workers, which inherit the dropped ids: no process that
   serves a connection runs as root.

Refusal (`check_root`): a root process without `user` refuses to start when a listener port is
below 1024 unless `allow_root = true` — that is the configuration that needs root and would keep
it for the whole run. Root on unprivileged ports only gets a warning: root is not needed there
(it is what a container or a test run does), and refusing it would break every such setup while
protecting nothing the operator asked for.

Certificates after the drop: a reload (SIGHUP, the 30 s watch, an ACME renewal) reads the files as
the user. With `[acme]` the files are Mailhouse's own: `prepare_acme_files` (as root, before the
drop) gives them and their directory to the user, so the renewals it writes there stay readable.
Files an operator's tool renews (certbot) must be readable by the user or its group; nothing of
root is kept around to read them, so a root-only renewed key is refused with one log line naming
the file, its owner and mode and what to do, and the running certificate is kept (tls.py).
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PRIVILEGED_PORT = (
    1024  # ports below this need root or CAP_NET_BIND_SERVICE (Linux ip_unprivileged_port_start)
)


class PrivilegeError(Exception):
    """Privileges cannot be set as configured; the message is one line saying what to do."""


@dataclass(frozen=True, slots=True)
class Identity:
    """The unprivileged account a node serves as."""

    user: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def identity(user: str, group: str | None = None) -> Identity:
    """USER (and GROUP, default the user's login group) from the system's account database."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise PrivilegeError(
            f"user = {user!r}: no such system user (create it: useradd --system --home /var/lib/mailhouse"
            f" --shell /usr/sbin/nologin {user})"
        ) from None
    if group is None:
        gid = pw.pw_gid
    else:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise PrivilegeError(f"group = {group!r}: no such system group") from None
    if pw.pw_uid == 0 or gid == 0:
        raise PrivilegeError(f"user = {user!r}: must be an unprivileged account (uid and gid not 0)")
    # the user's supplementary groups (e.g. ssl-cert for a key readable by that group), never root's
    groups = tuple(sorted({g for g in os.getgrouplist(user, gid) if g != 0} | {gid}))
    return Identity(user, pw.pw_uid, gid, groups)


def privileged_ports(ports: list[int]) -> list[int]:
    return sorted({p for p in ports if 0 < p < PRIVILEGED_PORT})


def check_root(ports: list[int], *, has_user: bool, allow_root: bool) -> None:
    """Refuse to serve as root on a privileged port without `user` or `allow_root` (module docstring)."""
    if os.geteuid() != 0 or has_user:
        return
    low = privileged_ports(ports)
    if low and not allow_root:
        raise PrivilegeError(
            f'running as root on port {low[0]}: set user = "mailhouse" (an unprivileged system user) at'
            " the top of the config to drop root after binding, or allow_root = true to keep it"
        )
    log.warning('serving as root: set user = "mailhouse" to drop root after binding the listeners')


def check_not_root(user: str) -> None:
    """Started unprivileged (systemd's User=) with `user` set: nothing to drop; say so if it differs."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    if me != user:
        log.warning("user = %r is only used when started as root; serving as %s", user, me)


def prepare_data_dir(data_dir: Path, who: Identity) -> None:
    """Create DATA_DIR and give it and everything in it to WHO (as root, before the drop)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    changed = 0
    for path in (data_dir, *data_dir.rglob("*")):
        st = path.lstat()
        if st.st_uid != who.uid or st.st_gid != who.gid:
            os.lchown(path, who.uid, who.gid)
            changed += 1
    if changed:
        log.info(
            "data directory %s: %d entr(ies) now owned by %s (uid %d)", data_dir, changed, who.user, who.uid
        )


def prepare_log_file(file: Path, who: Identity) -> None:
    """`[log] file` (opened by root at start-up) becomes WHO's: after a rotation the dropped node
    opens the new file by its path (logrotate's `create MODE mailhouse GROUP`, or a directory WHO
    may write in, lets it exist)."""
    if file.exists() and (file.stat().st_uid, file.stat().st_gid) != (who.uid, who.gid):
        os.chown(file, who.uid, who.gid)


def prepare_acme_files(cert: Path, key: Path, who: Identity) -> None:
    """With `[acme]`: the directories of CERT and KEY (created if missing) and the files become
    WHO's, so the dropped node can replace them at each renewal and read them back. A directory
    of someone else holding other files is not taken over: PrivilegeError says what to do."""
    ours = {cert.name, key.name, cert.name + ".acme", key.name + ".acme"}  # certs/acme.py writes *.acme first
    for d in dict.fromkeys((cert.parent, key.parent)):
        d.mkdir(parents=True, exist_ok=True)
        st = d.stat()
        if (st.st_uid, st.st_gid) == (who.uid, who.gid):
            continue
        if others := sorted(p.name for p in d.iterdir() if p.name not in ours):
            raise PrivilegeError(
                f"[acme] renews {cert} and {key} as {who.user}, but {d} is not {who.user}'s and holds"
                f" other files ({others[0]}): point [tls] cert and key into a directory of their own"
            )
        os.chown(d, who.uid, who.gid)
        log.info("ACME certificate directory %s now owned by %s (uid %d)", d, who.user, who.uid)
    for f in (cert, key):
        if f.exists() and (f.stat().st_uid, f.stat().st_gid) != (who.uid, who.gid):
            os.chown(f, who.uid, who.gid)


def drop(who: Identity) -> None:
    """Become WHO for good: setgroups, setgid, setuid (in that order), then prove root is gone."""
    os.setgroups(list(who.groups))
    os.setgid(who.gid)  # as root: real, effective and saved gid
    os.setuid(who.uid)  # as root: real, effective and saved uid — no way back
    if os.getresuid() != (who.uid,) * 3 or os.getresgid() != (who.gid,) * 3:
        raise PrivilegeError(f"could not drop to {who.user}: ids are {os.getresuid()}/{os.getresgid()}")
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise PrivilegeError(f"dropped to {who.user} but setuid(0) still succeeds; refusing to serve")
    log.info("serving as %s (uid %d, gid %d)", who.user, who.uid, who.gid)


def check_data_dir(data_dir: Path, who: Identity) -> None:
    """After the drop: the user must reach and write DATA_DIR (every directory above it searchable)."""
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise PrivilegeError(
            f"data_dir {data_dir}: not writable for user {who.user} (a directory above it is not searchable?)"
        )
