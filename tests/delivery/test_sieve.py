"""Sieve at local delivery (delivery/sieve.py + delivery/local.py) on a real SQLite store and the
real accept path and queue (not started: queued entries stay in the store to be looked at).

The Sieve language is the sieve service's (another package); here a runner that answers fixed
actions stands in for it, so these tests pin what delivery does with each action."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from mailhouse import config, services
from mailhouse.delivery.local import Folder
from mailhouse.delivery.sieve import (
    Action,
    Discard,
    Envelope,
    FileInto,
    Keep,
    Redirect,
    Reject,
    RunResult,
    Scripts,
    SieveFilter,
    Vacation,
    vacation_refusal,
)
from mailhouse.queue.ids import new_queue_id
from mailhouse.store.api import Account

MESSAGE = (
    b"From: Carol <carol@remote.test>\r\nTo: bob@example.org\r\nSubject: report 7\r\n"
    b"Message-ID: <m1@remote.test>\r\n\r\nHello.\r\n"
)


class FixedRunner:
    """Answers the actions set for the account (the Sieve language stands behind this interface)."""

    def __init__(self) -> None:
        self.result = RunResult()
        self.calls: list[Envelope] = []
        self.scripts: list[Scripts] = []
        self.seen: list[bool] = []

    def set(self, *actions: Action, head: bytes | None = None, error: str = "") -> None:
        self.result = RunResult(tuple(actions), head, error)

    def run(
        self,
        scripts: Scripts,
        message: bytes,
        envelope: Envelope,
        mailboxes: frozenset[str],
        seen_before: bool,
    ) -> RunResult:
        assert scripts.user is not None
        self.calls.append(envelope)
        self.scripts.append(scripts)
        self.seen.append(seen_before)
        return self.result


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[services.Services]:
    cfg = config.from_dict(
        {
            "hostname": "mail.example.org",
            "data_dir": str(tmp_path),
            "dns": {"nameservers": ["127.0.0.1:9"]},
            "sieve": {"redirects_per_day": 2, "max_redirects": 2},
        }
    )
    s = await services.build(cfg)
    await s.store.add_domain("example.org")
    for a in ("alice", "bob"):
        acc = await s.store.add_account(f"{a}@example.org", "x")
        await s.store.put_sieve_script(acc.id, "main", "# stands for the script", 16, 65536, 0.0)
        await s.store.set_active_sieve_script(acc.id, "main")
    yield s
    await s.outbound.pool.close()
    await s.store.close()


@pytest.fixture
def runner(svc: services.Services) -> FixedRunner:
    r = FixedRunner()
    f = SieveFilter(svc.store, svc.cfg.sieve, r, svc.cfg.hostname)
    f.outbox = svc.outbound.enqueue
    svc.delivery.sieve = f
    return r


async def _acc(svc: services.Services, name: str = "bob") -> Account:
    acc = await svc.store.get_account(f"{name}@example.org")
    assert acc is not None
    return acc


async def _folder(svc: services.Services, acc: Account, name: str) -> list[tuple[bytes, frozenset[str]]]:
    mb = await svc.store.get_mailbox(acc.id, name)
    if mb is None:
        return []
    return [(await svc.store.blobs.get(m.blob_key), m.flags) for m in await svc.store.list_messages(mb.id)]


async def test_fileinto_create_with_flags_and_no_implicit_keep(
    svc: services.Services, runner: FixedRunner
) -> None:
    bob = await _acc(svc)
    runner.set(FileInto("Reports", frozenset({"\\Flagged"}), create=True))
    r = await svc.envelope.accept(MESSAGE, "carol@remote.test", [bob], [], queue_id=new_queue_id())
    assert r.code == 250
    [(data, flags)] = await _folder(svc, bob, "Reports")
    assert data.endswith(MESSAGE) and flags == {"\\Flagged"}
    assert await _folder(svc, bob, "INBOX") == []
    assert runner.calls[0].sender == "carol@remote.test" and runner.calls[0].recipient == "bob@example.org"


async def test_fileinto_missing_mailbox_without_create_keeps_in_inbox(
    svc: services.Services, runner: FixedRunner
) -> None:
    bob = await _acc(svc)
    runner.set(FileInto("Nowhere"), Keep(frozenset({"\\Seen"})))
    await svc.envelope.accept(MESSAGE, "carol@remote.test", [bob], [], queue_id=new_queue_id())
    [(_, flags)] = await _folder(svc, bob, "INBOX")  # both land in INBOX, once
    assert flags == {"\\Seen"}
    assert await svc.store.get_mailbox(bob.id, "Nowhere") is None


async def test_reject_before_250_when_every_recipient_rejects(
    svc: services.Services, runner: FixedRunner
) -> None:
    bob = await _acc(svc)
    runner.set(Reject("I do not want this"))
    r = await svc.envelope.accept(MESSAGE, "carol@remote.test", [bob], [], queue_id=new_queue_id())
    assert (r.code, r.enhanced) == (550, "5.7.1") and "I do not want this" in r.text
    assert await _folder(svc, bob, "INBOX") == []
    assert await svc.store.list() == []


async def test_reject_of_one_of_two_recipients_bounces(svc: services.Services, runner: FixedRunner) -> None:
    bob, alice = await _acc(svc), await _acc(svc, "alice")
    runner.set(Reject("no thanks"))
    await svc.store.set_active_sieve_script(alice.id, None)  # alice has no active script
    r = await svc.envelope.accept(MESSAGE, "carol@remote.test", [bob, alice], [], queue_id=new_queue_id())
    assert r.code == 250
    assert len(await _folder(svc, alice, "INBOX")) == 1 and await _folder(svc, bob, "INBOX") == []
    [dsn] = await svc.store.list()
    assert dsn.sender == "" and [x.address for x in dsn.recipients] == ["carol@remote.test"]
    assert b"no thanks" in await svc.store.blobs.get(dsn.blob_key)
    assert len(runner.calls) == 1  # alice's delivery never ran the runner


async def test_discard(svc: services.Services, runner: FixedRunner) -> None:
    bob = await _acc(svc)
    runner.set(Discard())
    assert (
        await svc.envelope.accept(MESSAGE, "carol@remote.test", [bob], [], queue_id=new_queue_id())
    ).code == 250
    assert await _folder(svc, bob, "INBOX") == []


async def test_redirect_is_queued_with_loop_marker_and_limits(
    svc: services.Services, runner: FixedRunner
) -> None:
    bob = await _acc(svc)
    runner.set(Redirect("dave@elsewhere.test"))
    await svc.envelope.accept(MESSAGE, "carol@remote.test", [bob], [], queue_id=new_queue_id())
    [e] = await svc.store.list()
    assert e.sender == "carol@remote.test" and [x.address for x in e.recipients] == ["dave@elsewhere.test"]
    data = await svc.store.blobs.get(e.blob_key)
    assert data.startswith(b"X-Loop: bob@example.org\r\nDelivered-To: bob@example.org\r\n")
    assert await _folder(svc, bob, "INBOX") == []  # redirect cancels the implicit keep
    # the same message coming back through bob: a loop, not sent again
    await svc.envelope.accept(data, "carol@remote.test", [bob], [], queue_id=new_queue_id())
    assert len(await svc.store.list()) == 1
    # redirects_per_day = 2: the third of the day is not sent
    for _ in range(2):
        await svc.envelope.accept(MESSAGE, "carol@remote.test", [bob], [], queue_id=new_queue_id())
    assert len(await svc.store.list()) == 2


async def test_too_many_redirects_keeps_and_notifies_once(
    svc: services.Services, runner: FixedRunner
) -> None:
    bob = await _acc(svc)
    runner.set(Redirect("a@x.test"), Redirect("b@x.test"), Redirect("c@x.test"))  # max_redirects = 2
    for _ in range(2):
        await svc.envelope.accept(MESSAGE, "carol@remote.test", [bob], [], queue_id=new_queue_id())
    inbox = await _folder(svc, bob, "INBOX")
    assert sum(d.endswith(MESSAGE) for d, _ in inbox) == 2  # never lost
    notices = [d for d, _ in inbox if b"Subject: Your mail filter failed" in d]
    assert len(notices) == 1 and b"too many redirect actions" in notices[0]
    assert await svc.store.list() == []


async def test_runtime_error_files_into_inbox(svc: services.Services, runner: FixedRunner) -> None:
    bob = await _acc(svc)
    runner.set(error="line 3: regex too expensive")
    await svc.envelope.accept(MESSAGE, "carol@remote.test", [bob], [], queue_id=new_queue_id())
    inbox = await _folder(svc, bob, "INBOX")
    assert any(d.endswith(MESSAGE) for d, _ in inbox)
    assert any(
        b"line 3: regex too expensive" in d and b"From: Mail Delivery <postmaster@" in d for d, _ in inbox
    )


async def test_vacation_once_per_sender(svc: services.Services, runner: FixedRunner) -> None:
    bob = await _acc(svc)
    runner.set(Vacation("I am away until Monday.", subject="", seconds=86400 * 7))
    for _ in range(2):
        await svc.envelope.accept(MESSAGE, "carol@remote.test", [bob], [], queue_id=new_queue_id())
    assert len(await _folder(svc, bob, "INBOX")) == 2  # vacation keeps the message
    [e] = await svc.store.list()
    assert e.sender == "" and [x.address for x in e.recipients] == ["carol@remote.test"]
    reply = await svc.store.blobs.get(e.blob_key)
    for field in (
        b"From: bob@example.org\r\n",
        b"To: carol@remote.test\r\n",
        b"Subject: Auto: report 7\r\n",
        b"Auto-Submitted: auto-replied",
        b"In-Reply-To: <m1@remote.test>\r\n",
        b"References: <m1@remote.test>\r\n",
    ):
        assert field in reply
    assert reply.endswith(b"\r\n\r\nI am away until Monday.\r\n")
    other = MESSAGE.replace(b"carol@", b"erin@")
    await svc.envelope.accept(other, "erin@remote.test", [bob], [], queue_id=new_queue_id())
    assert len(await svc.store.list()) == 2  # another sender gets one


def test_vacation_never_to_lists_bulk_auto_or_self() -> None:
    own = ["bob@example.org"]
    head = b"To: bob@example.org\r\nSubject: x\r\n"
    assert vacation_refusal(head, "carol@remote.test", own) == ""
    assert vacation_refusal(head, "", own) == "null sender"
    assert vacation_refusal(head, "MAILER-DAEMON@remote.test", own) == "automated sender"
    assert vacation_refusal(head, "list-request@remote.test", own) == "automated sender"
    assert vacation_refusal(head, "bob@example.org", own) == "own address"
    assert vacation_refusal(b"Auto-Submitted: auto-generated\r\n" + head, "c@r.test", own) == "auto-submitted"
    assert vacation_refusal(b"Auto-Submitted: no\r\n" + head, "c@r.test", own) == ""
    assert vacation_refusal(b"Precedence: bulk\r\n" + head, "c@r.test", own) == "bulk precedence"
    assert vacation_refusal(b"List-Id: <l.example>\r\n" + head, "c@r.test", own) == "mailing list"
    assert vacation_refusal(b"To: someone@else.test\r\n", "c@r.test", own) == "not addressed to the user"


async def test_editheader_changes_are_filed(svc: services.Services, runner: FixedRunner) -> None:
    bob = await _acc(svc)
    runner.set(head=b"From: Carol <carol@remote.test>\r\nX-Filtered: yes\r\nSubject: report 7\r\n\r\n")
    await svc.envelope.accept(MESSAGE, "carol@remote.test", [bob], [], queue_id=new_queue_id())
    [(data, _)] = await _folder(svc, bob, "INBOX")
    assert (
        b"X-Filtered: yes\r\n" in data and b"Message-ID" not in data and data.endswith(b"\r\n\r\nHello.\r\n")
    )


async def test_no_active_script_does_not_run(svc: services.Services, runner: FixedRunner) -> None:
    bob = await _acc(svc)
    await svc.store.set_active_sieve_script(bob.id, None)
    await svc.envelope.accept(MESSAGE, "carol@remote.test", [bob], [], queue_id=new_queue_id())
    assert runner.calls == [] and len(await _folder(svc, bob, "INBOX")) == 1


async def test_includes_are_loaded_when_a_script_includes(
    svc: services.Services, runner: FixedRunner, tmp_path: Path
) -> None:
    bob = await _acc(svc)
    gdir = tmp_path / "global"
    gdir.mkdir()
    (gdir / "spam.sieve").write_text('if header :contains "x-spam-flag" "yes" { discard; }\n')
    svc.delivery.sieve = f = SieveFilter(
        svc.store, replace(svc.cfg.sieve, global_dir=gdir), runner, svc.cfg.hostname
    )
    f.outbox = svc.outbound.enqueue
    await svc.envelope.accept(MESSAGE, "carol@remote.test", [bob], [], queue_id=new_queue_id())
    assert runner.scripts[-1].personal == {} and runner.scripts[-1].globals == {}  # no include: not read
    await svc.store.put_sieve_script(bob.id, "lib", "keep;", 16, 65536, 0.0)
    await svc.store.put_sieve_script(
        bob.id, "main", 'require "include";\ninclude :global "spam";', 16, 65536, 0.0
    )
    await svc.envelope.accept(MESSAGE, "carol@remote.test", [bob], [], queue_id=new_queue_id())
    got = runner.scripts[-1]
    assert got.user == ("main", 'require "include";\ninclude :global "spam";')
    assert set(got.personal) == {"lib", "main"} and got.personal["lib"] == "keep;"
    assert got.globals == {"spam": 'if header :contains "x-spam-flag" "yes" { discard; }\n'}


async def test_duplicate_is_remembered_per_account_when_a_script_asks(
    svc: services.Services, runner: FixedRunner
) -> None:
    bob, alice = await _acc(svc), await _acc(svc, "alice")
    for _ in range(2):  # the script does not use duplicate: nothing remembered
        await svc.envelope.accept(MESSAGE, "carol@remote.test", [bob], [], queue_id=new_queue_id())
    assert runner.seen == [False, False]
    for acc in (bob, alice):
        await svc.store.put_sieve_script(
            acc.id, "main", 'require "duplicate"; if duplicate { discard; }', 16, 65536, 0.0
        )
    for acc in (bob, bob, alice):  # RFC 7352 §3: the Message-ID seen before, per account
        await svc.envelope.accept(MESSAGE, "carol@remote.test", [acc], [], queue_id=new_queue_id())
    assert runner.seen[2:] == [False, True, False]


async def test_quarantined_message_is_filtered_with_junk_as_its_keep(
    svc: services.Services, runner: FixedRunner
) -> None:
    bob = await _acc(svc)
    runner.set(Keep(frozenset({"$Junk"})))
    await svc.envelope.accept(
        MESSAGE, "carol@remote.test", [bob], [], queue_id=new_queue_id(), folder=Folder.JUNK
    )
    assert await _folder(svc, bob, "INBOX") == [] and [f for _, f in await _folder(svc, bob, "Junk")] == [
        {"$Junk"}
    ]
    runner.set(FileInto("Suspicious", create=True))  # the script may still file it elsewhere
    await svc.envelope.accept(
        MESSAGE, "carol@remote.test", [bob], [], queue_id=new_queue_id(), folder=Folder.JUNK
    )
    assert len(await _folder(svc, bob, "Suspicious")) == 1


async def test_a_delivery_run_twice_redirects_once(svc: services.Services, runner: FixedRunner) -> None:
    bob = await _acc(svc)
    runner.set(Redirect("dave@elsewhere.test"))
    qid = new_queue_id()
    for _ in range(2):  # the queue retrying a local delivery after a crash uses the same queue id
        await svc.delivery.deliver(MESSAGE, "carol@remote.test", [bob], qid)
    assert len(await svc.store.list()) == 1
