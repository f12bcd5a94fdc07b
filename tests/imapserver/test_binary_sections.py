"""BINARY[part], BINARY[part]<off.len>, BINARY.SIZE[part] and empty parts, Dovecot as the oracle.

RFC 3516 §4.2-4.3: BINARY returns the part with its Content-Transfer-Encoding removed, a partial
``<off.len>`` is a range of the DECODED octets and BINARY.SIZE is the decoded size. Decoding
quoted-printable follows RFC 2045 §6.7 (trailing white space deleted, ``=`` before the line end —
white space between them included — is a soft line break). Each message is APPENDed to a
Mailhouse and to Dovecot 2.3 (the peer fixture) and every item is compared over real sockets,
for small messages and for big ones (``fetch_stream.STREAM_MIN`` and more), whose BINARY octets
are decoded chunk by chunk as they stream.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

import pytest

from mailhouse.imapserver.fetch_stream import STREAM_MIN
from tests.imapserver.imap_wire import RawIMAP as WireIMAP
from tests.imapserver.imap_wire import fetch_items
from tests.imapserver.server_helpers import raw_client
from tests.mailhouse_proc import MailhouseProcess

USER = "ivan"
DC_USER, DC_PASS = "binary@example.test", "binary-pw"

# quoted-printable lines exercising RFC 2045 §6.7: padding after text, "=" then blanks (a soft
# break), "=XX" in both cases, blank lines, a soft break at the end. (An "=" that starts no escape
# is answered NO [PARSE] by Dovecot; we keep it as written, RFC 2045 §6.7 note (2): see the last test)
QP_BODY = (
    b"first line with padding   \r\n"
    b"joined=\r\n"
    b"\r\n"
    b"tab\t=\r\n"
    b"after tab\r\n"
    b"blanks\t \t= \r\n"
    b"=41=42=4a=4b\r\n"
    b"soft = \t\r\n"
    b"continued\r\n"
    b"caf=C3=A9 =3D equals\r\n"
    b"trailing  \r\n"
    b"end=\r\n"
    b"\r\n"
    b"last_line\r\n"
)
B64_BODY = base64.encodebytes(bytes(range(256)) * 3).replace(b"\n", b"\r\n") + b"\r\n"

SMALL_QP = (
    b"From: a@example.test\r\nSubject: qp\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\npreamble\r\n'
    b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    + QP_BODY
    + b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + B64_BODY
    + b"--b1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    + b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n\r\n"
    + b"--b1--\r\nepilogue\r\n"
)
SINGLE_QP = (
    b"From: a@example.test\r\nSubject: single\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    + QP_BODY
)
EMPTY_BODY = b"From: a@example.test\r\nSubject: empty\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\n"


def _big() -> bytes:
    """A message over STREAM_MIN: its FETCH streams from the blob (fetch_stream.py)."""
    qp = QP_BODY * (STREAM_MIN // len(QP_BODY) // 2 + 1)
    long_line = b"x" * 70_000 + b"   \r\n" + b"y" * 80_000 + b"= \r\nz\r\n"  # lines over the carry
    b64 = base64.encodebytes(secrets.token_bytes(STREAM_MIN // 2)).replace(b"\n", b"\r\n")
    return (
        b"From: a@example.test\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b2"\r\n\r\n'
        b"--b2\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + qp
        + b"--b2\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + long_line
        + b"--b2\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + b64
        + b"--b2\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + b"--b2--\r\n"
    )


RANGES = [(0, 10), (10, 10), (15, 10), (20, 10), (40, 100), (1, 1_000_000)]


def _items(parts: int) -> list[str]:
    out = []
    for p in range(1, parts + 1):
        out += [f"BINARY.SIZE[{p}]", f"BINARY.PEEK[{p}]", f"BODY.PEEK[{p}]"]
        out += [f"BINARY.PEEK[{p}]<{o}.{n}>" for o, n in RANGES]
    return out


@pytest.fixture(scope="module")
def pair(imap_server: MailhouseProcess, dovecot_factory: Any) -> Any:
    dc = dovecot_factory(users={DC_USER: DC_PASS}, pop3_port=0)
    theirs = WireIMAP(dc.host, dc.imap_port)
    theirs.cmd(f'LOGIN "{DC_USER}" "{DC_PASS}"')
    ours = raw_client(imap_server, USER)
    box = f"bin-{secrets.token_hex(4)}"
    assert b" OK " in ours.cmd(f"CREATE {box}")[-1]
    theirs.cmd(f"CREATE {box}")
    yield box, ours, theirs
    ours.close()
    theirs.sock.close()


def _append_both(pair: Any, msg: bytes) -> tuple[Any, Any]:
    box, ours, theirs = pair
    ours.send(b"AP APPEND %s {%d+}\r\n" % (box.encode(), len(msg)) + msg + b"\r\n")
    assert b"AP OK" in ours.until_tagged(b"AP")[-1]
    theirs.append(box, msg)
    ours.cmd(f"SELECT {box}")
    theirs.cmd(f"SELECT {box}")
    return ours, theirs


def _compare(pair: Any, msg: bytes, parts: int) -> dict[str, Any]:
    ours, theirs = _append_both(pair, msg)
    mine = fetch_items(ours.cmd("FETCH * (" + " ".join(_items(parts)) + ")")[:-1])
    ref = fetch_items(theirs.cmd("FETCH * (" + " ".join(_items(parts)) + ")")[0])
    (m,) = mine.values()
    (r,) = ref.values()
    assert sorted(m) == sorted(r)
    # BINARY.SIZE is compared with the length of Dovecot's BINARY[part]: RFC 3516 §4.3 makes it
    # the decoded size, and Dovecot 2.3's own BINARY.SIZE disagrees with its BINARY octets on
    # some parts (e.g. 760 for a base64 part it decodes to 768 octets, 2**64 - 165 for a QP one)
    for k in [k for k in r if k.startswith("BINARY.SIZE[")]:
        assert m[k] == len(r[k.replace(".SIZE", "")]), k
        del r[k]
    diff = {k: (m[k], r[k]) for k in r if m[k] != r[k]}
    assert not diff, "\n".join(
        f"{k}: ours {str(a)[:300]} != Dovecot's {str(b)[:300]}" for k, (a, b) in diff.items()
    )
    return m


def test_quoted_printable_and_base64_parts_match_dovecot(pair: Any) -> None:
    m = _compare(pair, SMALL_QP, 4)
    assert m["BINARY.SIZE[3]"] == m["BINARY.SIZE[4]"] == 0  # empty parts
    assert m["BINARY[2]"] == bytes(range(256)) * 3
    assert m["BINARY[1]"].startswith(b"first line with padding\r\njoined\r\ntab\tafter tab\r\n")


def test_single_part_and_empty_body_match_dovecot(pair: Any) -> None:
    m = _compare(pair, SINGLE_QP, 1)
    assert m["BINARY.SIZE[1]"] == len(m["BINARY[1]"])
    m = _compare(pair, EMPTY_BODY, 1)
    assert m["BINARY.SIZE[1]"] == 0 and m["BINARY[1]"] == b"" and m["BODY[1]"] == b""


def test_big_message_streams_decoded_octets_like_dovecot(pair: Any) -> None:
    big = _big()
    assert len(big) >= STREAM_MIN
    _compare(pair, big, 4)


def test_invalid_escape_is_kept_as_written(pair: Any) -> None:
    """RFC 2045 §6.7 note (2): a robust decoder keeps an "=" that starts no escape (Dovecot
    refuses the FETCH with NO [PARSE] instead; the RFC leaves room, ours loses nothing)."""
    msg = SINGLE_QP.replace(b"last_line", b"not an escape =ZZ and =4")
    box, ours, _theirs = pair
    ours.send(b"AP APPEND %s {%d+}\r\n" % (box.encode(), len(msg)) + msg + b"\r\n")
    assert b"AP OK" in ours.until_tagged(b"AP")[-1]
    ours.cmd(f"SELECT {box}")
    (m,) = fetch_items(ours.cmd("FETCH * (BINARY.PEEK[1] BINARY.SIZE[1])")[:-1]).values()
    assert m["BINARY[1]"].endswith(b"end\r\nnot an escape =ZZ and =4\r\n")
    assert m["BINARY.SIZE[1]"] == len(m["BINARY[1]"])


BINARY_PART = b"\0 -\xe4\n\r\n\n\xff\r"  # NUL, bare LF, CR alone, 8-bit octets


def _binary_msg(kind: str) -> tuple[bytes, int, bytes]:
    """(message, part number, the part's octets) for APPEND ~{n}."""
    if kind == "single":
        msg = (
            b"From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: binary\r\n\r\n" + BINARY_PART
        )
        return msg, 1, BINARY_PART
    want = BINARY_PART * (STREAM_MIN // len(BINARY_PART) + 1 if kind == "big" else 40)
    msg = (
        b'From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b3"\r\n\r\n'
        b"--b3\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        b"--b3\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        + want
        + b"\r\n--b3--\r\n"
    )
    return msg, 2, want


@pytest.mark.parametrize("kind", ["single", "multipart", "big"])
def test_append_literal8_keeps_binary_octets(pair: Any, kind: str) -> None:
    """RFC 3516 §4.4: APPEND ~{n} of a binary part; BINARY gives back exactly those octets (like
    Dovecot), and BODY never carries NUL in a plain literal (RFC 9051 §4.3): the part is kept
    base64-encoded, as Dovecot does. "big" is parsed off the event loop and FETCHed streaming."""
    box, ours, theirs = pair
    msg, part, want = _binary_msg(kind)
    ours.send(b"AP APPEND %s ~{%d+}\r\n" % (box.encode(), len(msg)) + msg + b"\r\n")
    assert b"AP OK" in ours.until_tagged(b"AP")[-1]
    theirs.sock.sendall(b"AP APPEND %s ~{%d+}\r\n" % (box.encode(), len(msg)) + msg + b"\r\n")
    theirs.cmd("NOOP")
    ours.cmd(f"SELECT {box}")
    theirs.cmd(f"SELECT {box}")
    items = f"FETCH * (BINARY.PEEK[{part}] BINARY.SIZE[{part}] BODY.PEEK[{part}] BINARY.PEEK[{part}]<3.5>)"
    (m,) = fetch_items(ours.cmd(items)[:-1]).values()
    (r,) = fetch_items(theirs.cmd(items)[0]).values()
    assert m[f"BINARY[{part}]"] == r[f"BINARY[{part}]"] == want
    assert m[f"BINARY.SIZE[{part}]"] == len(want)
    assert m[f"BINARY[{part}]<3>"] == r[f"BINARY[{part}]<3>"] == want[3:8]
    assert b"\0" not in m[f"BODY[{part}]"]
    assert base64.b64decode(m[f"BODY[{part}]"], validate=False) == want


def test_append_empty_literal8_is_refused_and_session_goes_on(pair: Any) -> None:
    """APPEND ~{0} (synchronising and LITERAL+): NO (an empty message is no message; Dovecot:
    "Can't save a zero byte message"), with the framing intact — the next command runs."""
    box, ours, _theirs = pair
    ours.send(b"E1 APPEND %s ~{0}\r\n" % box.encode())
    assert ours.line().startswith(b"+ ")
    ours.send(b"\r\n")
    assert ours.until_tagged(b"E1")[-1].startswith(b"E1 NO ")
    ours.send(b"E2 APPEND %s (\\Seen) ~{0+}\r\n\r\nE3 NOOP\r\n" % box.encode())
    assert ours.until_tagged(b"E2")[-1].startswith(b"E2 NO ")
    assert ours.until_tagged(b"E3")[-1].startswith(b"E3 OK")
