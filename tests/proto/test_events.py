"""proto/events.py: one NEED_DATA sentinel for every sans-IO core, and proto/ stays self-contained."""

from __future__ import annotations

import ast
from pathlib import Path

from mailhouse.proto import events, imap, pop3, smtp, smtp_client
from mailhouse.proto.imap import receiver

PROTO = Path(events.__file__).parent


def test_one_sentinel_for_every_core() -> None:
    assert smtp.NEED_DATA is smtp_client.NEED_DATA is pop3.NEED_DATA is imap.NEED_DATA is events.NEED_DATA
    assert receiver.NEED_DATA is events.NEED_DATA
    assert smtp.NeedData is smtp_client.NeedData is pop3.NeedData is events.NeedData
    assert list(events.NeedData) == [events.NEED_DATA]


def test_every_core_returns_the_shared_sentinel() -> None:
    assert imap.IMAPServerProtocol().next_event() is events.NEED_DATA
    assert pop3.POP3ServerProtocol().next_event() is events.NEED_DATA
    assert smtp.SMTPServerProtocol(max_message_size=1000).next_event() is events.NEED_DATA
    assert smtp_client.SMTPClientProtocol().next_event() is events.NEED_DATA


def test_proto_imports_nothing_of_ours_outside_proto() -> None:
    """DESIGN.md layer map: proto/ is stdlib only and imports nothing of ours but proto."""
    for path in PROTO.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name == "mailhouse" or name.startswith("mailhouse."):
                    assert name.startswith("mailhouse.proto"), (path, name)
