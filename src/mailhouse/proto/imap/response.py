"""Serialise IMAP server responses to bytes.

RFCs: RFC 9051 §7 (responses), §4.3 (strings: quoted vs literal), §9 (formal syntax);
RFC 3501 §7 (IMAP4rev1: RECENT, \\Recent); RFC 3516 §4.2 (literal8 ``~{n}`` for BINARY);
RFC 6855 §3 (UTF-8 in quoted strings and mailbox names after ENABLE UTF8=ACCEPT);
RFC 4731 §3.1 (ESEARCH); RFC 7162 §3.2.10 (VANISHED).

Invariants:

* Every function returns complete lines ending in CRLF (``fetch`` may embed literals).
* A client string is sent quoted only when that is safe: no CR, LF or NUL, no 8-bit octet
  unless ``utf8`` (RFC 9051 §4.3 / RFC 3501 §9 quoted is 7-bit), at most
  :data:`MAX_QUOTED` octets; otherwise as a literal. Octets containing NUL can only be sent
  as literal8 (:class:`Binary`), since a literal is ``*CHAR8``.
* Free text (resp-text) never carries CR/LF: they are replaced, so a value can never inject
  a response line.
* rev2 (RFC 9051) has no RECENT response and no ``\\Recent`` flag: ``rev2=True`` drops them.

Hand-written: imaplib/imapclient are clients and do not produce server responses.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mailhouse.proto.imap import mutf7
from mailhouse.proto.imap.sequence import SequenceSet

# Longer strings go as literals: keeps lines short and avoids escaping cost on big values.
MAX_QUOTED = 1024
FLAG_LIST_CACHE = 4096  # memoised flag-list encodings and FETCH item names (a bound on memory)

_ATOM_SAFE = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')  # RFC 9051 §9 ATOM-CHAR
_ASTRING_SAFE = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')  # ASTRING-CHAR (adds "]")
_TAG_SAFE = re.compile(r'[^\x00-\x20\x7f-\U0010ffff(){%*"\\+]+')
_STATUSES = frozenset(("OK", "NO", "BAD", "PREAUTH", "BYE"))


@dataclass(frozen=True, slots=True)
class Atom:
    """Sent verbatim (flags, keywords, NIL-free atoms like ``\\Seen`` or ``EXISTS``)."""

    value: str


@dataclass(frozen=True, slots=True)
class Raw:
    """Pre-encoded bytes, sent verbatim (trusted, e.g. a cached BODYSTRUCTURE)."""

    value: bytes


@dataclass(frozen=True, slots=True)
class Binary:
    """Octets for BINARY[] (RFC 3516 §4.2): literal8 ``~{n}`` when they contain NUL."""

    value: bytes


@dataclass(frozen=True, slots=True)
class MailboxName:
    """A mailbox name: modified UTF-7 (RFC 3501 §5.1.3) or UTF-8 when ``utf8`` is on."""

    value: str


@dataclass(frozen=True, slots=True)
class AString:
    """A string sent as an atom when possible (astring, RFC 9051 §9)."""

    value: str | bytes


Value = (
    None
    | int
    | str
    | bytes
    | Atom
    | Raw
    | Binary
    | MailboxName
    | AString
    | list["Value"]
    | tuple["Value", ...]
)


def _text(text: str) -> str:
    """resp-text: no CR/LF/NUL (they would end or corrupt the response line)."""
    return text.replace("\r", " ").replace("\n", " ").replace("\0", " ")


def string(data: str | bytes, *, utf8: bool = False) -> bytes:
    """``string`` (RFC 9051 §4.3): quoted when safe, else literal."""
    b = data.encode("utf-8") if isinstance(data, str) else data
    if (
        len(b) <= MAX_QUOTED
        and b"\r" not in b
        and b"\n" not in b
        and b"\0" not in b
        and (utf8 or b.isascii())
    ):
        return b'"' + b.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(b) + b


def astring(data: str | bytes, *, utf8: bool = False) -> bytes:
    """``astring``: atom when it is one (and not NIL), else :func:`string`."""
    b = data.encode("utf-8") if isinstance(data, str) else data
    if _ASTRING_SAFE.fullmatch(b) and b.upper() != b"NIL":
        return b
    return string(b, utf8=utf8)


def nstring(data: str | bytes | None, *, utf8: bool = False) -> bytes:
    return b"NIL" if data is None else string(data, utf8=utf8)


def mailbox(name: str, *, utf8: bool = False) -> bytes:
    """A mailbox name as astring: UTF-8 (RFC 6855 §3) or modified UTF-7 (RFC 3501 §5.1.3)."""
    raw = name.encode("utf-8") if utf8 else mutf7.encode(name)
    return astring(raw, utf8=utf8)


def encode_value(v: Value, *, utf8: bool = False) -> bytes:
    """Encode a value: None → NIL, int → number, str/bytes → string, list/tuple → parenthesised."""
    if v is None:
        return b"NIL"
    if isinstance(v, bool):
        raise TypeError("bool is not an IMAP value")
    if isinstance(v, int):
        if v < 0:
            raise ValueError("IMAP numbers are unsigned")
        return str(v).encode("ascii")
    if isinstance(v, str | bytes):
        return string(v, utf8=utf8)
    if isinstance(v, Atom):
        b = v.value.encode("ascii")
        if not b or b"\r" in b or b"\n" in b or b" " in b:
            raise ValueError(f"not an atom: {v.value!r}")
        return b
    if isinstance(v, Raw):
        return v.value
    if isinstance(v, Binary):
        if b"\0" in v.value:
            return b"~{%d}\r\n" % len(v.value) + v.value  # RFC 3516 §4.2: literal8
        return string(v.value, utf8=utf8)
    if isinstance(v, MailboxName):
        return mailbox(v.value, utf8=utf8)
    if isinstance(v, AString):
        return astring(v.value, utf8=utf8)
    return b"(" + b" ".join(encode_value(x, utf8=utf8) for x in v) + b")"


def _check_tag(tag: str) -> str:
    if not _TAG_SAFE.fullmatch(tag):
        raise ValueError(f"invalid tag {tag!r}")
    return tag


def _status_line(prefix: str, status: str, text: str, code: str | None) -> bytes:
    if status not in _STATUSES:
        raise ValueError(f"unknown status {status!r}")
    c = f"[{_text(code)}] " if code else ""
    return f"{prefix} {status} {c}{_text(text)}\r\n".encode()


def tagged(tag: str, status: str, text: str, code: str | None = None) -> bytes:
    """``tag OK [code] text`` (RFC 9051 §7.1)."""
    return _status_line(_check_tag(tag), status, text, code)


def untagged_status(status: str, text: str, code: str | None = None) -> bytes:
    """``* OK|NO|BAD|PREAUTH|BYE [code] text`` (RFC 9051 §7.1)."""
    return _status_line("*", status, text, code)


def untagged(head: str, *values: Value, utf8: bool = False) -> bytes:
    """``* head value value...``: ``head`` is verbatim (``"12 EXISTS"``, ``"LIST"``),
    values are encoded with :func:`encode_value`."""
    parts = [b"* " + _text(head).encode("utf-8")]
    parts.extend(encode_value(v, utf8=utf8) for v in values)
    return b" ".join(parts) + b"\r\n"


def continuation(text: str = "Ready") -> bytes:
    """``+ text`` (RFC 9051 §7.5)."""
    return f"+ {_text(text)}\r\n".encode()


def continuation_data(data: bytes) -> bytes:
    """``+ base64`` for a SASL challenge (RFC 9051 §6.2.2); ``data`` already base64."""
    if b"\r" in data or b"\n" in data:
        raise ValueError("CR/LF in continuation data")
    return b"+ " + data + b"\r\n"


def flags(items: Iterable[str], *, rev2: bool = False) -> list[Value]:
    """A flag list; ``\\Recent`` dropped for rev2 (RFC 9051 Appendix E)."""
    return [Atom(f) for f in items if not (rev2 and f.upper() == "\\RECENT")]


def flag_list(flag_set: frozenset[str], *, recent: bool = False, rev2: bool = False) -> Raw:
    """``(\\Seen $Work)``, pre-encoded: :func:`flags` of the sorted set (``\\Recent`` appended
    when ``recent``), the same octets :func:`encode_value` makes of it. Mailboxes share few
    distinct flag sets, so the encodings are memoised (FETCH FLAGS of a whole mailbox)."""
    return _flag_list(flag_set, recent, rev2)


@functools.lru_cache(maxsize=FLAG_LIST_CACHE)
def _flag_list(flag_set: frozenset[str], recent: bool, rev2: bool) -> Raw:
    names = sorted(flag_set)
    if recent:
        names.append("\\Recent")
    return Raw(encode_value(flags(names, rev2=rev2)) if names else b"()")


def exists(n: int) -> bytes:
    return b"* %d EXISTS\r\n" % n


def recent(n: int, *, rev2: bool = False) -> bytes:
    """``* n RECENT`` for rev1; empty for rev2, which removed it (RFC 9051 Appendix E)."""
    return b"" if rev2 else b"* %d RECENT\r\n" % n


def expunge(n: int) -> bytes:
    return b"* %d EXPUNGE\r\n" % n


def vanished(uids: SequenceSet, *, earlier: bool = False) -> bytes:
    """``* VANISHED [(EARLIER)] uid-set`` (RFC 7162 §3.2.10)."""
    return f"* VANISHED {'(EARLIER) ' if earlier else ''}{uids}\r\n".encode("ascii")


def capability(caps: Iterable[str]) -> bytes:
    return ("* CAPABILITY " + " ".join(caps) + "\r\n").encode("ascii")


def enabled(caps: Iterable[str]) -> bytes:
    """``* ENABLED caps`` (RFC 5161 §3.2)."""
    return ("* ENABLED " + " ".join(caps)).rstrip().encode("ascii") + b"\r\n"


def list_response(
    attributes: Iterable[str],
    delimiter: str | None,
    name: str,
    *,
    utf8: bool = False,
    extended: Sequence[tuple[str, Value]] = (),
    kind: str = "LIST",
) -> bytes:
    """``* LIST (\\attrs) "/" name [(ext-items)]`` (RFC 9051 §7.3.1, RFC 5258 §3.4)."""
    out = b"* " + kind.encode("ascii") + b" " + encode_value([Atom(a) for a in attributes])
    out += b" " + encode_value(delimiter) + b" " + mailbox(name, utf8=utf8)
    if extended:
        items: list[Value] = []
        for k, v in extended:
            items.extend((AString(k), v))
        out += b" " + encode_value(items, utf8=utf8)
    return out + b"\r\n"


def status(name: str, items: Sequence[tuple[str, Value]], *, utf8: bool = False, rev2: bool = False) -> bytes:
    """``* STATUS name (MESSAGES n ...)`` (RFC 9051 §7.3.4); RECENT dropped for rev2."""
    vals: list[Value] = []
    for k, v in items:
        if rev2 and k.upper() == "RECENT":
            continue
        vals.extend((Atom(k), v))
    return b"* STATUS " + mailbox(name, utf8=utf8) + b" " + encode_value(vals) + b"\r\n"


def search(numbers: Iterable[int], *, modseq: int | None = None) -> bytes:
    """IMAP4rev1 ``* SEARCH n n`` (RFC 3501 §7.2.5), ``(MODSEQ n)`` from RFC 7162 §3.1.5."""
    out = b"* SEARCH" + b"".join(b" %d" % n for n in numbers)
    if modseq is not None:
        out += b" (MODSEQ %d)" % modseq
    return out + b"\r\n"


def esearch(tag: str | None, uid: bool, items: Sequence[tuple[str, int | SequenceSet]]) -> bytes:
    """``* ESEARCH (TAG "t") [UID] MIN 1 ALL 1:3`` (RFC 4731 §3.1, RFC 9051 §7.3.4)."""
    out = b"* ESEARCH"
    if tag is not None:
        out += b" (TAG " + string(_check_tag(tag)) + b")"
    if uid:
        out += b" UID"
    for k, v in items:
        out += f" {k} {v}".encode("ascii")
    return out + b"\r\n"


def fetch(seq: int, items: Sequence[tuple[str, Value]], *, utf8: bool = False) -> bytes:
    """``* seq FETCH (NAME value ...)`` (RFC 9051 §7.5.2), items in the given order.

    Names are verbatim (``BODY[HEADER.FIELDS (SUBJECT)]<0>``); values are encoded with
    :func:`encode_value` (pass :class:`Binary` for BINARY[] data, :class:`Raw` for
    pre-built ENVELOPE/BODYSTRUCTURE, a list of :class:`Atom` for FLAGS)."""
    parts = []
    for name, v in items:
        head = _ITEM_NAMES.get(name)
        if head is None:
            head = name.encode("ascii") + b" "
            if len(_ITEM_NAMES) < FLAG_LIST_CACHE:
                _ITEM_NAMES[name] = head
        # the common kinds first (FETCH of a whole mailbox formats many messages)
        if isinstance(v, Raw):
            parts.append(head + v.value)
        elif type(v) is int and v >= 0:  # not bool (an int subclass): encode_value refuses it
            parts.append(head + b"%d" % v)
        else:
            parts.append(head + encode_value(v, utf8=utf8))
    return b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n"


_ITEM_NAMES: dict[str, bytes] = {}  # FETCH item name -> its encoding and the space after it


_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def internaldate(dt: datetime.datetime) -> str:
    """date-time ``dd-Mon-yyyy hh:mm:ss +zzzz`` (RFC 9051 §9); naive means UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.UTC)
    off = dt.utcoffset() or datetime.timedelta(0)
    minutes = int(off.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (
        f"{dt.day:2d}-{_MONTHS[dt.month - 1]}-{dt.year:04d} {dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} "
        f"{sign}{minutes // 60:02d}{minutes % 60:02d}"
    )
