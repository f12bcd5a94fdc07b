"""web/contacts.py: To/Cc/Bcc entries split for group expansion."""

from __future__ import annotations

from mailhouse.web.contacts import split_entries


def test_split_entries_keeps_quoted_and_bracketed_commas() -> None:
    assert split_entries('"Doe, Jane" <jane@example.org>; Looking Glass, <a,b@example.org>,, ') == [
        '"Doe, Jane" <jane@example.org>',
        "Looking Glass",
        "<a,b@example.org>",
    ]
    assert split_entries("  ") == []
