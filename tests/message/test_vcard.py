"""message/vcard.py: vCard 4.0 (RFC 6350) writer and bounded reader."""

from __future__ import annotations

import pytest

from mailhouse.message import vcard
from mailhouse.message.vcard import Card, VCardError


def test_round_trip_with_escapes_folding_and_utf8() -> None:
    cards = [
        Card(
            "urn:uuid:1",
            "Zoë, the; \\ Müller",
            ["zoe@example.com", "z@example.org"],
            "two\nlines",
            ["Team", "A,B"],
        ),
        Card("u2", ("Ünïcødé " * 30).strip(), ["long@example.org"]),
    ]
    data = vcard.write(cards)
    assert data.startswith(b"BEGIN:VCARD\r\nVERSION:4.0\r\n")  # RFC 6350 §6.7.9
    assert all(len(line) <= 75 for line in data.split(b"\r\n"))  # §3.2 (octets)
    for line in data.split(b"\r\n"):
        line.decode()  # never a UTF-8 sequence split by folding
    assert b"FN:Zo\xc3\xab\\, the\\; \\\\ M" in data and b"NOTE:two\\nlines" in data
    back = vcard.read(data)
    assert [(c.uid, c.name, c.emails, c.notes, c.groups) for c in back] == [
        (c.uid, c.name, c.emails, c.notes, c.groups) for c in cards
    ]


def test_reads_version_3_and_n_when_fn_is_missing() -> None:
    data = (
        b'\xef\xbb\xbfBEGIN:VCARD\nVERSION:3.0\nN:Doe;Jane;;Dr.;\nitem1.EMAIL;TYPE=INTERNET,"x:y":jane@example.org\n'
        b"TEL:+1 555\nCATEGORIES:Friends,Work\nEND:VCARD\n"
    )
    (c,) = vcard.read(data)
    assert (c.name, c.emails, c.groups) == ("Dr. Jane Doe", ["jane@example.org"], ["Friends", "Work"])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"FN:x\r\n", "line 1: FN outside"),
        (b"BEGIN:VCARD\r\nVERSION:2.1\r\nEND:VCARD\r\n", "line 2: vCard version '2.1' is not supported"),
        (b"BEGIN:VCARD\r\nFN:x\r\nEND:VCARD\r\n", "line 1: the card has no VERSION"),
        (b"BEGIN:VCARD\r\nVERSION:4.0\r\nFN:x\r\n", "line 1: the card has no END:VCARD"),
        (b"BEGIN:VCARD\r\nVERSION:4.0\r\nno colon here\r\nEND:VCARD\r\n", "line 3: not a vCard content line"),
        (b"BEGIN:VCARD\r\nVERSION:4.0\r\nFN:\xff\r\nEND:VCARD\r\n", "not UTF-8"),
        (b"BEGIN:VCARD\r\nVERSION:4.0\r\nBEGIN:VCARD\r\n", "line 3: BEGIN:VCARD inside a card"),
        (
            b"BEGIN:VCARD\r\nVERSION:4.0\r\nNOTE;ENCODING=QUOTED-PRINTABLE:x\r\nEND:VCARD\r\n",
            "quoted-printable",
        ),
    ],
)
def test_bad_files_name_the_line(data: bytes, message: str) -> None:
    with pytest.raises(VCardError, match=message):
        vcard.read(data)


def test_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(VCardError, match="larger than"):
        vcard.read(b" " * (vcard.MAX_BYTES + 1))
    monkeypatch.setattr(vcard, "MAX_CARDS", 2)
    with pytest.raises(VCardError, match="more than 2 cards"):
        vcard.read(vcard.write([Card(name=str(i), emails=["a@b.example"]) for i in range(3)]))
    with pytest.raises(VCardError, match="line 3: longer than"):
        vcard.read(b"BEGIN:VCARD\r\nVERSION:4.0\r\nNOTE:" + b"x" * 9000 + b"\r\n " + b"y" * 2000 + b"\r\n")
