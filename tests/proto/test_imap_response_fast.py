"""Issue 13 §2: the memoised and fast-path encodings of proto/imap/response.py give the octets
the general encoder gives (FETCH formatting of whole mailboxes takes the fast paths)."""

from __future__ import annotations

import pytest

from mailhouse.proto.imap import response
from mailhouse.proto.imap.response import Atom, Raw, encode_value


@pytest.mark.parametrize(
    ("flags", "recent", "rev2"),
    [
        (frozenset(), False, False),
        (frozenset(), True, False),
        (frozenset({"\\Seen", "$Work", "\\Flagged"}), False, False),
        (frozenset({"\\Seen"}), True, True),  # rev2: \Recent never sent
        (frozenset({"$Label1", "\\Answered"}), True, False),
    ],
)
def test_flag_list_matches_the_general_encoder(flags: frozenset[str], recent: bool, rev2: bool) -> None:
    names = sorted(flags) + (["\\Recent"] if recent else [])
    expected = encode_value(response.flags(names, rev2=rev2))
    got = response.flag_list(flags, recent=recent, rev2=rev2)
    assert isinstance(got, Raw) and got.value == expected
    assert response.flag_list(flags, recent=recent, rev2=rev2) is got  # memoised


def test_fetch_fast_paths_match_encode_value() -> None:
    items: list[tuple[str, response.Value]] = [
        ("UID", 42),
        ("FLAGS", [Atom("\\Seen")]),
        ("RFC822.SIZE", 0),
        ("ENVELOPE", Raw(b'(NIL "s" NIL NIL NIL NIL NIL NIL NIL NIL)')),
        ("BODY[]", b"x" * 2000),
        ("INTERNALDATE", "01-Jan-2024 00:00:00 +0000"),
    ]
    general = b"* 7 FETCH (" + b" ".join(k.encode() + b" " + encode_value(v) for k, v in items) + b")\r\n"
    assert response.fetch(7, items) == general
    with pytest.raises(TypeError):
        response.fetch(1, [("UID", True)])  # bool is not an IMAP number, fast path or not
    with pytest.raises(ValueError):
        response.fetch(1, [("UID", -1)])
