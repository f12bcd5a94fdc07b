"""message/objectid.py: RFC 8474 MAILBOXID / THREADID derivation and the objectid syntax."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailhouse.message.objectid import is_objectid, mailboxid, threadid
from mailhouse.message.parse import parse_message
from mailhouse.store.api import emailid_for_blob


def _tid(headers: bytes, eid: str = "Mabc") -> str:
    return threadid(parse_message(headers + b"\r\nbody\r\n"), eid)


def test_thread_root_from_references_in_reply_to_or_own_id() -> None:
    root = _tid(b"Message-ID: <root@x>\r\n")
    assert _tid(b"Message-ID: <a@x>\r\nIn-Reply-To: <root@x>\r\n") == root
    assert _tid(b"Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\nReferences: <root@x>\r\n <a@x>\r\n") == root
    assert _tid(b"Message-ID: < root@x >\r\n") == root  # white space inside <> is not significant
    assert _tid(b"Message-ID: <other@x>\r\n") != root
    assert _tid(b"Subject: none\r\n", "Mk1") == "Tk1" != _tid(b"Subject: none\r\n", "Mk2")
    assert is_objectid(root) and len(root) == 25


def test_mailboxid_and_emailid_are_objectids() -> None:
    assert mailboxid(7, 1700000000) == "F7-1700000000" and is_objectid(mailboxid(7, 1700000000))
    assert emailid_for_blob("019a0b1c2d3e4f5a6b7c8d9e0f1a") == "M019a0b1c2d3e4f5a6b7c8d9e0f1a"
    odd = emailid_for_blob("s3/bucket key+1")
    assert is_objectid(odd) and odd == emailid_for_blob("s3/bucket key+1")
    assert not is_objectid("") and not is_objectid("a b") and not is_objectid("x" * 256)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.text(max_size=300))
def test_never_raises_and_always_an_objectid(headers: bytes, key: str) -> None:
    assert is_objectid(threadid(parse_message(headers), emailid_for_blob(key)))
    assert is_objectid(emailid_for_blob(key))
