"""Sieve at local delivery (delivery/sieve.py + delivery/local.py) with the real Sieve language, a
real SQLite store, the real accept path and the queue (not started: queued entries stay in the
store to be looked at)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from mailhouse import config, services
from mailhouse.delivery.local import Folder
from mailhouse.delivery.sieve import SieveFilter, SieveRunner, sieve_limits
from mailhouse.queue.ids import new_queue_id
from mailhouse.store.api import Account

MESSAGE = (
    b"From: Carol <carol@remote.test>\r\nTo: bob@example.org\r\nSubject: report 7\r\n"
    b"Message-ID: <m1@remote.test>\r\n\r\nHello.\r\n"
)


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
        await s.store.add_account(f"{a}@example.org", "x")
    yield s
    await s.outbound.pool.close()
    await s.store.close()


async def _acc(svc: services.Services, name: str = "bob") -> Account:
    acc = await svc.store.get_account(f"{name}@example.org")
    assert acc is not None
    return acc


async def _script(svc: services.Services, acc: Account, text: str, name: str = "main") -> None:
    await svc.store.put_sieve_script(acc.id, name, text, 16, 65536, 0.0)
    await svc.store.set_active_sieve_script(acc.id, name)


async def _send(svc: services.Services, acc: Account, msg: bytes = MESSAGE, **kw: object) -> int:
    r = await svc.envelope.accept(msg, "carol@remote.test", [acc], [], queue_id=new_queue_id(), **kw)  # type: ignore[arg-type]
    return r.code


async def _folder(svc: services.Services, acc: Account, name: str) -> list[tuple[bytes, frozenset[str]]]:
    mb = await svc.store.get_mailbox(acc.id, name)
    if mb is None:
        return []
    return [(await svc.store.blobs.get(m.blob_key), m.flags) for m in await svc.store.list_messages(mb.id)]


async def test_fileinto_create_with_flags_and_no_implicit_keep(svc: services.Services) -> None:
    bob = await _acc(svc)
    await _script(
        svc,
        bob,
        'require ["fileinto", "mailbox", "imap4flags"];\nfileinto :create :flags "\\\\Flagged" "Reports";',
    )
    assert await _send(svc, bob) == 250
    [(data, flags)] = await _folder(svc, bob, "Reports")
    assert data.endswith(MESSAGE) and flags == {"\\Flagged"}
    assert await _folder(svc, bob, "INBOX") == []


async def test_fileinto_missing_mailbox_without_create_keeps_in_inbox(svc: services.Services) -> None:
    bob = await _acc(svc)
    await _script(
        svc, bob, 'require ["fileinto", "imap4flags"];\nfileinto "Nowhere";\nkeep :flags "\\\\Seen";'
    )
    await _send(svc, bob)
    [(_, flags)] = await _folder(svc, bob, "INBOX")  # both land in INBOX, once, with the flags
    assert flags == {"\\Seen"}
    assert await svc.store.get_mailbox(bob.id, "Nowhere") is None


async def test_reject_before_250_when_every_recipient_rejects(svc: services.Services) -> None:
    bob = await _acc(svc)
    await _script(svc, bob, 'require "reject";\nreject "I do not want this";')
    r = await svc.envelope.accept(MESSAGE, "carol@remote.test", [bob], [], queue_id=new_queue_id())
    assert (r.code, r.enhanced) == (550, "5.7.1") and "I do not want this" in r.text
    assert await _folder(svc, bob, "INBOX") == []
    assert await svc.store.list() == []


async def test_reject_of_one_of_two_recipients_bounces(svc: services.Services) -> None:
    bob, alice = await _acc(svc), await _acc(svc, "alice")
    await _script(svc, bob, 'require "reject";\nreject "no thanks";')
    r = await svc.envelope.accept(MESSAGE, "carol@remote.test", [bob, alice], [], queue_id=new_queue_id())
    assert r.code == 250
    assert len(await _folder(svc, alice, "INBOX")) == 1 and await _folder(svc, bob, "INBOX") == []
    [dsn] = await svc.store.list()
    assert dsn.sender == "" and [x.address for x in dsn.recipients] == ["carol@remote.test"]
    assert b"no thanks" in await svc.store.blobs.get(dsn.blob_key)


async def test_discard(svc: services.Services) -> None:
    bob = await _acc(svc)
    await _script(svc, bob, "discard;")
    assert await _send(svc, bob) == 250
    assert await _folder(svc, bob, "INBOX") == []


async def test_redirect_is_queued_with_loop_marker_and_limits(svc: services.Services) -> None:
    bob = await _acc(svc)
    await _script(svc, bob, 'redirect "dave@elsewhere.test";')
    await _send(svc, bob)
    [e] = await svc.store.list()
    # RFC 5228 §4.2: the original envelope sender, SRS-rewritten (on by default: delivery/srs.py)
    assert e.sender.startswith("SRS0=") and e.sender.endswith("=remote.test=carol@mail.example.org")
    assert [x.address for x in e.recipients] == ["dave@elsewhere.test"]
    data = await svc.store.blobs.get(e.blob_key)
    assert data.startswith(b"X-Loop: bob@example.org\r\nDelivered-To: bob@example.org\r\n")
    assert await _folder(svc, bob, "INBOX") == []  # redirect cancels the implicit keep
    await _send(svc, bob, data)  # the same message coming back through bob: a loop, not sent again
    assert len(await svc.store.list()) == 1
    for _ in range(2):  # redirects_per_day = 2: the third of the day is not sent
        await _send(svc, bob)
    assert len(await svc.store.list()) == 2


async def test_a_delivery_run_twice_redirects_once(svc: services.Services) -> None:
    bob = await _acc(svc)
    await _script(svc, bob, 'redirect "dave@elsewhere.test";')
    qid = new_queue_id()
    for _ in range(2):  # the queue retrying a local delivery after a crash uses the same queue id
        await svc.delivery.deliver(MESSAGE, "carol@remote.test", [bob], qid)
    assert len(await svc.store.list()) == 1


async def test_too_many_redirects_keeps_and_notifies_once(svc: services.Services) -> None:
    bob = await _acc(svc)
    await _script(svc, bob, 'redirect "a@x.test";\nredirect "b@x.test";\nredirect "c@x.test";')  # max 2
    for _ in range(2):
        await _send(svc, bob)
    inbox = await _folder(svc, bob, "INBOX")
    assert sum(d.endswith(MESSAGE) for d, _ in inbox) == 2  # never lost
    notices = [d for d, _ in inbox if b"Subject: Your mail filter failed" in d]
    assert len(notices) == 1 and b"too many redirects" in notices[0]
    assert await svc.store.list() == []


async def test_runtime_error_files_into_inbox(svc: services.Services) -> None:
    bob = await _acc(svc)
    await _script(svc, bob, 'require "include";\ninclude "missing";')
    await _send(svc, bob)
    inbox = await _folder(svc, bob, "INBOX")
    assert any(d.endswith(MESSAGE) for d, _ in inbox)
    assert any(b"line 2" in d and b"not found" in d and b"postmaster@" in d for d, _ in inbox)


async def test_vacation_once_per_sender(svc: services.Services) -> None:
    bob = await _acc(svc)
    await _script(svc, bob, 'require "vacation";\nvacation :days 7 "I am away until Monday.";')
    for _ in range(2):
        await _send(svc, bob)
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
    listmail = b"List-Id: <news.remote.test>\r\n" + MESSAGE.replace(b"carol@", b"frank@")
    await svc.envelope.accept(listmail, "frank@remote.test", [bob], [], queue_id=new_queue_id())
    assert len(await svc.store.list()) == 2  # never to a list (RFC 5230 §4.6)


async def test_editheader_changes_are_filed(svc: services.Services) -> None:
    bob = await _acc(svc)
    await _script(
        svc, bob, 'require "editheader";\naddheader "X-Filtered" "yes";\ndeleteheader "Message-ID";'
    )
    await _send(svc, bob)
    [(data, _)] = await _folder(svc, bob, "INBOX")
    assert (
        b"\r\nX-Filtered: yes\r\n" in data
        and b"Message-ID" not in data
        and data.endswith(b"\r\n\r\nHello.\r\n")
    )


async def test_no_active_script_files_as_before(svc: services.Services) -> None:
    bob = await _acc(svc)
    await _script(svc, bob, "discard;")
    await svc.store.set_active_sieve_script(bob.id, None)
    await _send(svc, bob)
    assert len(await _folder(svc, bob, "INBOX")) == 1


async def test_includes_global_and_personal(svc: services.Services, tmp_path: Path) -> None:
    bob = await _acc(svc)
    gdir = tmp_path / "global"
    gdir.mkdir()
    (gdir / "spam.sieve").write_text('require ["fileinto", "mailbox"];\nfileinto :create "FromGlobal";\n')
    f = SieveFilter(
        svc.store,
        replace(svc.cfg.sieve, global_dir=gdir),
        SieveRunner(sieve_limits(svc.cfg.sieve)),
        "mail.example.org",
    )
    f.outbox = svc.outbound.enqueue
    svc.delivery.sieve = f
    await svc.store.put_sieve_script(
        bob.id, "lib", 'require ["fileinto", "mailbox"];\nfileinto :create "FromLib";', 16, 65536, 0.0
    )
    await _script(svc, bob, 'require "include";\ninclude :global "spam";\ninclude :personal "lib";')
    await _send(svc, bob)
    assert len(await _folder(svc, bob, "FromGlobal")) == 1 and len(await _folder(svc, bob, "FromLib")) == 1


async def test_duplicate_is_remembered_per_account(svc: services.Services) -> None:
    bob, alice = await _acc(svc), await _acc(svc, "alice")
    for acc in (bob, alice):
        await _script(
            svc,
            acc,
            'require ["duplicate", "fileinto", "mailbox"];\nif duplicate { fileinto :create "Dups"; }',
        )
    for acc in (bob, bob, alice):  # RFC 7352 §3: the Message-ID seen before, per account
        await _send(svc, acc)
    assert len(await _folder(svc, bob, "INBOX")) == 1 and len(await _folder(svc, bob, "Dups")) == 1
    assert len(await _folder(svc, alice, "INBOX")) == 1


async def test_spamtest_reads_the_spam_score(svc: services.Services) -> None:
    bob = await _acc(svc)
    await _script(
        svc,
        bob,
        'require ["spamtest", "relational", "comparator-i;ascii-numeric", "fileinto", "mailbox"];\n'
        'if spamtest :value "ge" :comparator "i;ascii-numeric" "5" { fileinto :create "Spammy"; }',
    )
    await _send(svc, bob, b"X-Spam-Score: 7.2\r\n" + MESSAGE)
    await _send(svc, bob, b"X-Spam-Score: 0.5\r\n" + MESSAGE)
    assert len(await _folder(svc, bob, "Spammy")) == 1 and len(await _folder(svc, bob, "INBOX")) == 1


async def test_quarantined_message_is_filtered_with_junk_as_its_keep(svc: services.Services) -> None:
    bob = await _acc(svc)
    await _script(svc, bob, 'require "imap4flags";\nkeep :flags "$Junk";')
    await _send(svc, bob, folder=Folder.JUNK)
    assert await _folder(svc, bob, "INBOX") == [] and [f for _, f in await _folder(svc, bob, "Junk")] == [
        {"$Junk"}
    ]
    await _script(svc, bob, 'require ["fileinto", "mailbox"];\nfileinto :create "Suspicious";')
    await _send(svc, bob, folder=Folder.JUNK)
    assert len(await _folder(svc, bob, "Suspicious")) == 1


NOTIFY = (
    'require ["enotify", "variables"];\n'
    'notify :from "Bob B <bob@example.org>" :importance "1" :message "Mail from carol"\n'
    '  "mailto:dave@elsewhere.test,erin@elsewhere.test?cc=frank@elsewhere.test&bcc=gil@elsewhere.test'
    '&keywords=alert&from=evil@x.test&auto-submitted=no&received=forged&body=See%20INBOX.";\n'
)


async def test_notify_sends_a_mailto_notification(svc: services.Services) -> None:
    bob = await _acc(svc)
    await _script(svc, bob, NOTIFY)
    await _send(svc, bob)
    assert len(await _folder(svc, bob, "INBOX")) == 1  # notify keeps the message
    [e] = await svc.store.list()
    assert e.sender == ""  # RFC 5436 §2.7: null envelope sender
    assert sorted(x.address for x in e.recipients) == [
        "dave@elsewhere.test",
        "erin@elsewhere.test",
        "frank@elsewhere.test",
        "gil@elsewhere.test",
    ]
    note = await svc.store.blobs.get(e.blob_key)
    for line in (
        b"From: Bob B <bob@example.org>\r\n",
        b"To: dave@elsewhere.test, erin@elsewhere.test\r\n",
        b"Cc: frank@elsewhere.test\r\n",
        b"Subject: Mail from carol\r\n",
        b"Auto-Submitted: auto-notified\r\n",
        b"X-Priority: 1 (Highest)\r\n",
        b"Keywords: alert\r\n",
    ):
        assert line in note
    head = note.split(b"\r\n\r\n")[0].lower()
    # RFC 5436 §2.2: unsafe URI header fields are ignored; Bcc is not written
    assert b"evil@" not in head and b"forged" not in head and b"gil@" not in head
    assert head.count(b"auto-submitted") == 1
    assert note.endswith(b"\r\n\r\nSee INBOX.\r\n")


async def test_notify_defaults_and_foreign_from(svc: services.Services) -> None:
    bob = await _acc(svc)
    await _script(
        svc, bob, 'require "enotify";\nnotify :from "boss@elsewhere.test" "mailto:dave@elsewhere.test";'
    )
    await _send(svc, bob)
    [e] = await svc.store.list()
    note = await svc.store.blobs.get(e.blob_key)
    assert b"From: bob@example.org\r\n" in note  # a :from that is not the user's is not used
    assert b"Subject: Carol <carol@remote.test> [report 7]\r\n" in note  # RFC 5435 §3.6 default
    assert b"X-Priority: 3 (Normal)\r\n" in note and b"report 7" in note.split(b"\r\n\r\n", 1)[1]


async def test_no_notification_about_auto_submitted_mail(svc: services.Services) -> None:
    bob = await _acc(svc)
    await _script(svc, bob, 'require "enotify";\nnotify "mailto:dave@elsewhere.test";')
    await _send(svc, bob, b"Auto-Submitted: auto-notified\r\n" + MESSAGE)
    assert await svc.store.list() == []  # RFC 5436 §2.7
    assert len(await _folder(svc, bob, "INBOX")) == 1
    await _send(svc, bob, b"Auto-Submitted: no\r\n" + MESSAGE)
    assert len(await svc.store.list()) == 1


async def test_notifications_count_against_the_redirect_limits(svc: services.Services) -> None:
    bob = await _acc(svc)
    script = 'require "enotify";\n' + "".join(f'notify "mailto:n{i}@elsewhere.test";\n' for i in range(3))
    await _script(svc, bob, script)
    await _send(svc, bob)  # max_redirects = 2 per message
    assert len(await svc.store.list()) == 2
    await _send(svc, bob)  # redirects_per_day = 2: none more today
    assert len(await svc.store.list()) == 2
    qid = new_queue_id()
    await _script(svc, await _acc(svc, "alice"), 'require "enotify";\nnotify "mailto:dave@elsewhere.test";')
    alice = await _acc(svc, "alice")
    for _ in range(2):  # a delivery run twice notifies once
        await svc.delivery.deliver(MESSAGE, "carol@remote.test", [alice], qid)
    assert len(await svc.store.list()) == 3


async def test_scripts_are_evaluated_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Body tests and regexes may spend the whole CPU budget: never on the node's loop thread; the
    store questions (mailboxexists, duplicate) are still answered, on the loop."""
    import threading

    from mailhouse.delivery import sieve as dsieve
    from mailhouse.sieve import SimpleContext
    from mailhouse.sieve import evaluate as real_evaluate

    threads: list[threading.Thread] = []

    async def spy(*args: object, **kwargs: object) -> object:
        threads.append(threading.current_thread())
        return await real_evaluate(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dsieve, "evaluate", spy)
    script = 'require ["fileinto", "mailbox"];\nif mailboxexists "Lists" { fileinto "Lists"; }\n'
    ctx = SimpleContext(b"Subject: x\r\n\r\nbody\r\n", mailboxes={"INBOX", "Lists"})
    run = await SieveRunner(sieve_limits(config.SieveConfig())).run(
        dsieve.Scripts(user=("main", script)), ctx.message, ctx
    )
    assert threads and threads[0] is not threading.main_thread()
    assert run.result is not None and [type(a).__name__ for a in run.result.actions] == ["FileInto"]
