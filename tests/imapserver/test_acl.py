"""Shared mailboxes and rights over real sockets: NAMESPACE, the RFC 4314 commands, the rights
matrix of RFC 4314 §4, naming tricks, delivery to a shared mailbox, and a second client in
another process woken by a change in a shared folder (imapserver/namespaces.py,
imapserver/commands/acl.py, store/acl.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.imapserver.server_helpers import RawIMAP, deliver, raw_client, start_server, tagged
from tests.mailhouse_proc import PASSWORD, MailhouseProcess

OWNER = "owner@example.org"
OU = f"Other Users/{OWNER}"
MSG = b"From: a@example.org\r\nSubject: s\r\n\r\nbody\r\n"


@pytest.fixture(scope="module")
def mh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailhouseProcess]:
    m = start_server(tmp_path_factory.mktemp("acl"), users=("owner", "reader", "third", "outsider"))
    try:
        m.cli("mailbox", "share", "create", "support@example.org")
        m.cli("mailbox", "share", "set", "support@example.org", "reader@example.org", "lrs")
        yield m
    finally:
        m.stop()


def ok(lines: list[bytes]) -> bool:
    return tagged(lines).startswith(b"OK")


def q(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def append(c: RawIMAP, mailbox: str, msg: bytes = MSG, flags: str = "") -> list[bytes]:
    c.n += 1
    tag = b"R%d" % c.n
    c.send(tag + f" APPEND {q(mailbox)} ({flags}) {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
    return c.until_tagged(tag)


def test_capabilities_and_namespace(mh: MailhouseProcess) -> None:
    c = raw_client(mh, "reader")
    try:
        caps = b" ".join(c.cmd("CAPABILITY"))
        assert b" ACL " in caps and b" RIGHTS=texk" in caps
        r = c.cmd("NAMESPACE")
        assert r[0] == b'* NAMESPACE (("" "/")) (("Other Users/" "/")) (("Shared/" "/"))'
    finally:
        c.close()


def test_share_folder_getacl_myrights_listrights(mh: MailhouseProcess) -> None:
    o, r = raw_client(mh, "owner"), raw_client(mh, "reader")
    try:
        assert ok(o.cmd('CREATE "Team1"'))
        assert ok(o.cmd('SETACL "Team1" reader@example.org lrc'))  # c → k x (RFC 4314 §2.1.1)
        got = o.cmd('GETACL "Team1"')
        assert got[0] == b"* ACL Team1 owner@example.org lrswipkxteacd reader@example.org lrkxc", got
        assert o.cmd('MYRIGHTS "Team1"')[0] == b"* MYRIGHTS Team1 lrswipkxteacd"
        lr = o.cmd('LISTRIGHTS "Team1" reader@example.org')[0]
        assert lr == b'* LISTRIGHTS Team1 reader@example.org "" l r s w i p k x t e a c d'
        assert tagged(o.cmd('SETACL "Team1" reader@example.org lrQ')).startswith(b"BAD")
        assert b"[CANNOT]" in tagged(o.cmd('SETACL "Team1" owner@example.org l'))
        # the reader sees it under Other Users, with its own rights
        listed = r.cmd(f'LIST "" "{OU}/*"')
        assert f'* LIST (\\HasNoChildren) "/" "{OU}/Team1"'.encode() in listed, listed
        assert r.cmd(f'MYRIGHTS "{OU}/Team1"')[0] == f'* MYRIGHTS "{OU}/Team1" lrkxc'.encode()
        assert b"[NOPERM]" in tagged(r.cmd(f'GETACL "{OU}/Team1"'))  # needs a
        assert ok(r.cmd(f'SUBSCRIBE "{OU}/Team1"'))
        assert r.cmd(f'LSUB "" "{OU}/*"')[0] == f'* LSUB () "/" "{OU}/Team1"'.encode()
        assert ok(o.cmd('DELETEACL "Team1" reader@example.org'))
        assert b"[NONEXISTENT]" in tagged(r.cmd(f'MYRIGHTS "{OU}/Team1"'))
        assert f"{OU}/Team1".encode() not in b"".join(r.cmd(f'LIST "" "{OU}/*"'))
    finally:
        o.close()
        r.close()


def test_anyone_at_domain(mh: MailhouseProcess) -> None:
    o, t = raw_client(mh, "owner"), raw_client(mh, "third")
    try:
        assert ok(o.cmd('CREATE "Everyone"'))
        assert append(o, "Everyone")[-1].split()[1] == b"OK"
        assert ok(o.cmd('SETACL "Everyone" anyone@example.org lr'))
        st = t.cmd(f'STATUS "{OU}/Everyone" (MESSAGES)')
        assert st[0] == f'* STATUS "{OU}/Everyone" (MESSAGES 1)'.encode(), st
        sel = t.cmd(f'EXAMINE "{OU}/Everyone"')
        assert ok(sel) and b"1 EXISTS" in b"".join(sel)
    finally:
        o.close()
        t.close()


# ---------------------------------------------------------------------------- the rights matrix

# (label, the rights it needs): RFC 4314 §4's table. Commands of the selected state also need r
# (they run only after SELECT succeeded).
MATRIX: list[tuple[str, str]] = [
    ("LIST", "l"),
    ("SUBSCRIBE", "l"),
    ("STATUS", "r"),
    ("GETACL", "a"),
    ("LISTRIGHTS", "a"),
    ("SETACL", "a"),
    ("APPEND", "i"),
    ("CREATE", "k"),
    ("DELETE", "x"),
    ("SELECT", "r"),
    ("FETCH", "r"),
    ("SEARCH", "r"),
    ("STORE \\Seen", "rs"),
    ("STORE \\Flagged", "rw"),
    ("STORE $Label", "rw"),
    ("STORE \\Deleted", "rt"),
    ("implicit \\Seen", "rs"),
    ("COPY", "ri"),
    ("EXPUNGE", "re"),
    ("MOVE", "rtei"),  # RFC 6851 §3.3 / RFC 4314 §4: i on the target, t and e on the source
]


def _run_matrix(c: RawIMAP, folder: str) -> dict[str, bool]:
    """Run every MATRIX command as C on FOLDER (another user's); which succeeded."""
    f = q(folder)
    res: dict[str, bool] = {}
    res["LIST"] = any(folder.encode() in ln for ln in c.cmd(f'LIST "" {f}') if ln.startswith(b"* LIST"))
    res["SUBSCRIBE"] = ok(c.cmd(f"SUBSCRIBE {f}"))
    res["STATUS"] = ok(c.cmd(f"STATUS {f} (MESSAGES)"))
    res["GETACL"] = ok(c.cmd(f"GETACL {f}"))
    res["LISTRIGHTS"] = ok(c.cmd(f"LISTRIGHTS {f} third@example.org"))
    res["SETACL"] = ok(c.cmd(f"SETACL {f} third@example.org l"))
    res["APPEND"] = tagged(append(c, folder)).startswith(b"OK")
    res["CREATE"] = ok(c.cmd(f"CREATE {q(folder + '/new')}"))
    res["DELETE"] = ok(c.cmd(f"DELETE {q(folder + '/sub')}"))
    sel = c.cmd(f"SELECT {f}")
    res["SELECT"] = ok(sel)
    selected = [k for k, _ in MATRIX if k not in res]
    if not res["SELECT"]:
        return res | dict.fromkeys(selected, False)
    res["FETCH"] = ok(c.cmd("FETCH 1 (FLAGS)"))
    res["SEARCH"] = ok(c.cmd("SEARCH ALL"))
    res["STORE \\Seen"] = ok(c.cmd("STORE 1 +FLAGS (\\Seen)"))
    res["STORE \\Flagged"] = ok(c.cmd("STORE 1 +FLAGS (\\Flagged)"))
    res["STORE $Label"] = ok(c.cmd("STORE 1 +FLAGS ($Label)"))
    res["STORE \\Deleted"] = ok(c.cmd("STORE 1 +FLAGS (\\Deleted)"))
    c.cmd("FETCH 2 BODY[]")
    flags = b"".join(c.cmd("FETCH 2 (FLAGS)"))
    res["implicit \\Seen"] = b"\\Seen" in flags
    res["COPY"] = ok(c.cmd(f"COPY 2 {f}"))
    res["EXPUNGE"] = ok(c.cmd("EXPUNGE"))
    res["MOVE"] = ok(c.cmd(f"MOVE 1 {f}"))
    c.cmd("UNSELECT")
    return res


@pytest.mark.parametrize("removed", list("lrswipkxtea"))
def test_rights_matrix(mh: MailhouseProcess, removed: str) -> None:
    """RFC 4314 §4: with every right but REMOVED, exactly the commands needing it fail."""
    o, r = raw_client(mh, "owner"), raw_client(mh, "reader")
    name = f"M-{removed}"
    rights = "lrswipkxtea".replace(removed, "")
    try:
        assert ok(o.cmd(f'CREATE "{name}/sub"'))
        for _ in range(2):
            assert tagged(append(o, name)).startswith(b"OK")
        for box in (name, f"{name}/sub"):
            assert ok(o.cmd(f'SETACL "{box}" reader@example.org {rights}'))
        got = _run_matrix(r, f"{OU}/{name}")
        failed = {k for k, v in got.items() if not v}
        expected = {k for k, need in MATRIX if removed in need}
        assert failed == expected
    finally:
        o.close()
        r.close()


def test_without_l_a_mailbox_is_indistinguishable_from_a_missing_one(mh: MailhouseProcess) -> None:
    o, r = raw_client(mh, "owner"), raw_client(mh, "reader")
    try:
        assert ok(o.cmd('CREATE "Hidden"'))
        assert ok(o.cmd('SETACL "Hidden" reader@example.org i'))  # may post, may not look
        for cmd in ("SELECT {}", "STATUS {} (MESSAGES)", "GETACL {}", "DELETE {}", "SUBSCRIBE {}"):
            real = tagged(r.cmd(cmd.format(q(f"{OU}/Hidden"))))
            missing = tagged(r.cmd(cmd.format(q(f"{OU}/Nope"))))
            assert real == missing and b"[NONEXISTENT]" in real, (cmd, real, missing)
        assert tagged(append(r, f"{OU}/Hidden")).startswith(b"OK")  # i is enough for APPEND
    finally:
        o.close()
        r.close()


# ---------------------------------------------------------------------------- naming tricks


@pytest.fixture(scope="module")
def private(mh: MailhouseProcess) -> str:
    """owner's folder "Private" with one message, shared with nobody; "Open" readable by reader."""
    o = raw_client(mh, "owner")
    try:
        assert ok(o.cmd('CREATE "Private"'))
        assert tagged(append(o, "Private")).startswith(b"OK")
        assert ok(o.cmd('CREATE "Open"'))
        assert ok(o.cmd('SETACL "Open" reader@example.org lr'))
    finally:
        o.close()
    return "Private"


TRICKS = [
    f"{OU}/Private",
    f"{OU}/Open/../Private",
    f"Other Users/reader@example.org/../{OWNER}/Private",
    f"{OU}/./Private",
    f"/{OU}/Private",
    f"{OU}//Private",
    "~owner@example.org/Private",
    "~owner/Private",
    f"Other Users/{OWNER.upper()}/Private",
    f"Shared/{OWNER}/Private",
    f"Shared/{OWNER}",
    f"Other Users/Other Users/{OWNER}/Private",
    f"{OU}/Open/Private",
    "Other Users/reader@example.org/INBOX",
    "Other Users/owner@example.org@example.org/Private",
    "../owner@example.org/Private",
]


@pytest.mark.parametrize("name", TRICKS)
def test_naming_tricks_never_reach_a_mailbox_without_rights(
    mh: MailhouseProcess, private: str, name: str
) -> None:
    r = raw_client(mh, "reader")
    try:
        for cmd in (
            "SELECT {}",
            "EXAMINE {}",
            "STATUS {} (MESSAGES)",
            "DELETE {}",
            "GETACL {}",
            "MYRIGHTS {}",
        ):
            got = tagged(r.cmd(cmd.format(q(name))))
            assert got.startswith(b"NO") or got.startswith(b"BAD"), (cmd, got)
        foreign = name.startswith(("Other Users/", "Shared/"))
        if foreign:  # a personal-namespace spelling may name (and create) the reader's own folder
            assert not tagged(append(r, name)).startswith(b"OK")
            assert not ok(r.cmd(f"CREATE {q(name + '/x')}"))
        else:
            r.cmd(f"CREATE {q(name + '/x')}")
        listed = b"".join(r.cmd('LIST "" "*"'))
        assert f"{OU}/Private".encode() not in listed
    finally:
        r.close()
    o = raw_client(mh, "owner")  # the owner's folder is untouched
    try:
        assert o.cmd('LIST "" "Private/*"')[:-1] == []
        assert o.cmd('STATUS "Private" (MESSAGES)')[0] == b"* STATUS Private (MESSAGES 1)"
    finally:
        o.close()


def test_catenate_and_urlauth_urls_never_reach_another_users_mailbox(
    mh: MailhouseProcess, private: str
) -> None:
    r = raw_client(mh, "reader")
    try:
        urls = [
            f"imap://{OWNER}@mail.example.org/Private;uid=1",
            f"imap://reader@example.org@mail.example.org/{OU.replace(' ', '%20')}/Private;uid=1",
            "/Other%20Users/owner@example.org/Private;uid=1",
            "/Other%20Users/owner@example.org/Open/../Private;uid=1",
            "/~owner@example.org/Private;uid=1",
        ]
        for url in urls:
            r.n += 1
            tag = b"R%d" % r.n
            r.send(tag + f' APPEND INBOX CATENATE (URL "{url}")\r\n'.encode())
            got = tagged(r.until_tagged(tag))
            assert got.startswith(b"NO") or got.startswith(b"BAD"), (url, got)
        for url in urls[:2]:
            got = tagged(r.cmd(f'GENURLAUTH "{url};urlauth=anonymous" INTERNAL'))
            assert got.startswith(b"NO") or got.startswith(b"BAD"), (url, got)
            got = tagged(r.cmd(f'URLFETCH "{url};urlauth=anonymous:internal:{"0" * 32}"'))
            assert not re.search(rb"body", got)
    finally:
        r.close()


# ---------------------------------------------------------------------------- shared mailbox


def test_shared_mailbox_receives_mail_over_smtp(mh: MailhouseProcess) -> None:
    deliver(mh, "support", subject="help me")
    r = raw_client(mh, "reader")
    try:
        listed = r.cmd('LIST "" "Shared/*"')
        assert b'* LIST (\\HasNoChildren) "/" Shared/support@example.org' in listed, listed
        sel = r.cmd('SELECT "Shared/support@example.org"')
        assert ok(sel) and b"* 1 EXISTS" in sel, sel
        body = b"".join(r.cmd("FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]"))
        assert b"help me" in body
        assert b"[NOPERM]" in tagged(r.cmd("STORE 1 +FLAGS (\\Flagged)"))  # lrs: no w
        assert ok(r.cmd("STORE 1 +FLAGS (\\Seen)"))
    finally:
        r.close()
    # nobody logs in to a shared mailbox
    c = RawIMAP(mh.addr("imaps"))
    try:
        assert b" NO " in c.cmd(f'LOGIN support@example.org "{PASSWORD}"')[-1]
    finally:
        c.close()


IDLER = textwrap.dedent(
    """
    import imaplib, ssl, sys
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    c = imaplib.IMAP4_SSL(sys.argv[1], int(sys.argv[2]), ssl_context=ctx, timeout=30)
    c.login("reader@example.org", sys.argv[3])
    typ, data = c.select('"Other Users/owner@example.org/Live"', readonly=True)  # lr: READ-ONLY
    assert typ == "OK", data
    start = int(data[0])
    tag = c._new_tag()
    c.send(tag + b" IDLE\\r\\n")
    assert c.readline().startswith(b"+")
    print("idling", flush=True)
    while True:
        line = c.readline()
        if line.endswith(b"EXISTS\\r\\n") and int(line.split()[1]) > start:
            print(line.decode().strip(), flush=True)
            break
    c.send(b"DONE\\r\\n")
    """
)


def test_second_client_in_another_process_is_woken_by_a_change_in_a_shared_folder(
    mh: MailhouseProcess, tmp_path: Path
) -> None:
    o = raw_client(mh, "owner")
    try:
        assert ok(o.cmd('CREATE "Live"'))
        assert ok(o.cmd('SETACL "Live" reader@example.org lr'))
        host, port = mh.addr("imaps")
        script = tmp_path / "idler.py"
        script.write_text(IDLER)
        p = subprocess.Popen(
            [sys.executable, str(script), host, str(port), PASSWORD], stdout=subprocess.PIPE, text=True
        )
        try:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "idling"
            assert tagged(append(o, "Live")).startswith(b"OK")
            assert p.stdout.readline().strip() == "* 1 EXISTS"
            assert p.wait(timeout=30) == 0
        finally:
            if p.poll() is None:
                p.kill()
    finally:
        o.close()


def _flags(c: RawIMAP, n: int) -> set[bytes]:
    """Message N's flags as C's session shows them, after a NOOP took in others' changes."""
    c.cmd("NOOP")
    got = b"".join(ln for ln in c.cmd(f"FETCH {n} (FLAGS)") if ln.startswith(b"* "))
    m = re.search(rb"FLAGS \(([^)]*)\)", got)
    assert m, got
    return set(m.group(1).split()) - {b"\\Recent"}


def test_seen_is_per_user_on_shared_folders(mh: MailhouseProcess) -> None:
    o, r, t = raw_client(mh, "owner"), raw_client(mh, "reader"), raw_client(mh, "third")
    box = f'"{OU}/SeenBox"'
    try:
        assert ok(o.cmd('CREATE "SeenBox"'))
        for _ in range(3):
            assert tagged(append(o, "SeenBox")).startswith(b"OK")
        for who in ("reader", "third"):
            assert ok(o.cmd(f'SETACL "SeenBox" {who}@example.org lrswt'))
        assert ok(o.cmd('SELECT "SeenBox"'))
        assert ok(r.cmd(f"SELECT {box}"))
        assert ok(t.cmd(f"SELECT {box}"))
        # the reader marks 1 seen: only the reader sees it so
        assert b"\\Seen" in b"".join(r.cmd("STORE 1 +FLAGS (\\Seen)"))
        assert b"\\Seen" in _flags(r, 1)
        assert b"\\Seen" not in _flags(t, 1) and b"\\Seen" not in _flags(o, 1)
        # the owner marks 2 seen: the readers still see it unseen
        assert ok(o.cmd("STORE 2 +FLAGS (\\Seen)"))
        assert b"\\Seen" not in _flags(r, 2) and b"\\Seen" not in _flags(t, 2)
        # implicit \Seen of FETCH BODY[] is the reader's own
        r.cmd("FETCH 3 BODY[]")
        assert b"\\Seen" in _flags(r, 3) and b"\\Seen" not in _flags(t, 3) and b"\\Seen" not in _flags(o, 3)
        assert r.cmd("SEARCH UNSEEN")[0] == b"* SEARCH 2"
        assert t.cmd("SEARCH UNSEEN")[0] == b"* SEARCH 1 2 3"
        # a replacement by a reader keeps the owner's \Seen and sets only the reader's
        assert ok(r.cmd("STORE 2 FLAGS (\\Flagged \\Seen)"))
        assert _flags(o, 2) == {b"\\Seen", b"\\Flagged"}
        assert ok(r.cmd("STORE 2 FLAGS (\\Flagged)"))
        assert b"\\Seen" in _flags(o, 2) and b"\\Seen" not in _flags(r, 2)
        # kept in the store: a new session, and STATUS, count the reader's own state
        r2 = raw_client(mh, "reader")
        try:
            st = r2.cmd(f"STATUS {box} (UNSEEN)")
            assert st[0] == f'* STATUS "{OU}/SeenBox" (UNSEEN 1)'.encode(), st
            assert ok(r2.cmd(f"EXAMINE {box}"))
            assert r2.cmd("SEARCH SEEN")[0] == b"* SEARCH 1 3"
        finally:
            r2.close()
        assert t.cmd(f"STATUS {box} (UNSEEN)")[0] == f'* STATUS "{OU}/SeenBox" (UNSEEN 3)'.encode()
    finally:
        for c in (o, r, t):
            c.close()


def test_no_updates_once_the_read_right_is_gone(mh: MailhouseProcess) -> None:
    o, r = raw_client(mh, "owner"), raw_client(mh, "reader")
    try:
        assert ok(o.cmd('CREATE "Revoke"'))
        assert tagged(append(o, "Revoke")).startswith(b"OK")
        assert ok(o.cmd('SETACL "Revoke" reader@example.org lr'))
        assert b"* 1 EXISTS" in r.cmd(f'EXAMINE "{OU}/Revoke"')
        assert tagged(append(o, "Revoke")).startswith(b"OK")
        assert b"* 2 EXISTS" in r.cmd("NOOP")
        assert ok(o.cmd('SETACL "Revoke" reader@example.org -r'))
        assert tagged(append(o, "Revoke")).startswith(b"OK")
        got = r.cmd("NOOP")
        assert not any(b"EXISTS" in ln for ln in got), got
        assert b"[NOPERM]" in tagged(r.cmd("FETCH 1 (FLAGS)"))
    finally:
        o.close()
        r.close()


def test_copy_and_append_into_a_shared_folder_drop_flags_without_rights(mh: MailhouseProcess) -> None:
    o, r = raw_client(mh, "owner"), raw_client(mh, "reader")
    try:
        assert ok(o.cmd('CREATE "Drop"'))
        assert ok(o.cmd('SETACL "Drop" reader@example.org lri'))  # may insert, may set no flag
        assert ok(r.cmd('CREATE "Mine"'))
        assert tagged(append(r, "Mine", flags="\\Seen \\Flagged \\Deleted $X")).startswith(b"OK")
        assert tagged(append(r, f"{OU}/Drop", flags="\\Seen \\Flagged \\Deleted $X")).startswith(b"OK")
        assert ok(r.cmd('SELECT "Mine"'))
        assert ok(r.cmd(f'COPY 1 "{OU}/Drop"'))
        assert ok(r.cmd(f'MOVE 1 "{OU}/Drop"'))
        assert ok(o.cmd('SELECT "Drop"'))
        for n in (1, 2, 3):
            assert _flags(o, n) == set(), n
    finally:
        o.close()
        r.close()


def test_rename_of_another_users_folder_follows_rfc_4314(mh: MailhouseProcess) -> None:
    """RFC 4314 §4: RENAME needs x on the mailbox and k on the new name's parent; the mailbox
    stays its owner's (entries, messages and inferiors go with it); a rename out of the owner's
    folders, or without either right, is refused and changes nothing."""
    o, r = raw_client(mh, "owner"), raw_client(mh, "reader")
    try:
        assert ok(o.cmd('CREATE "Ren/Proj/Sub"'))
        assert ok(o.cmd('CREATE "Ren/Archive"'))
        assert tagged(append(o, "Ren/Proj")).startswith(b"OK")
        assert ok(o.cmd('SETACL "Ren" reader@example.org lr'))  # no k on Ren
        assert ok(o.cmd('SETACL "Ren/Archive" reader@example.org lrk'))
        assert ok(o.cmd('SETACL "Ren/Proj" reader@example.org lrw'))  # no x yet
        src, base = f"{OU}/Ren/Proj", f"{OU}/Ren"
        assert b"[NOPERM]" in tagged(r.cmd(f'RENAME "{src}" "{base}/Archive/Proj"'))  # needs x
        assert ok(o.cmd('SETACL "Ren/Proj" reader@example.org lrwx'))
        assert b"[NOPERM]" in tagged(r.cmd(f'RENAME "{src}" "{base}/Done"'))  # no k on Ren
        assert b"[CANNOT]" in tagged(r.cmd(f'RENAME "{src}" "Mine"'))  # out of the owner's folders
        assert b"[CANNOT]" in tagged(r.cmd(f'RENAME "{src}" "{OU.replace(OWNER, "third@example.org")}/X"'))
        assert ok(r.cmd(f'SUBSCRIBE "{src}"'))
        assert ok(r.cmd(f'RENAME "{src}" "{base}/Archive/Proj"'))
        names = {ln.rsplit(b" ", 1)[1] for ln in o.cmd('LIST "" "Ren/*"') if ln.startswith(b"* LIST")}
        assert names == {b"Ren/Archive", b"Ren/Archive/Proj", b"Ren/Archive/Proj/Sub"}
        assert b"lrwx" in o.cmd('GETACL "Ren/Archive/Proj"')[0]  # the entries stayed with it
        assert b"* 1 EXISTS" in o.cmd('SELECT "Ren/Archive/Proj"')
        assert r.cmd(f'LSUB "" "{base}/*"')[0] == f'* LSUB () "/" "{base}/Archive/Proj"'.encode()
    finally:
        o.close()
        r.close()
