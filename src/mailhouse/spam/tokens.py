"""Tokeniser for the per-user Bayes classifier (spam/bayes.py).

What becomes a token (SpamBayes / SpamAssassin practice, simplified):
- the decoded (RFC 2047) Subject, From and To headers, words prefixed with the header name
  (``subject:cheap``), plus the sender's domain (``from-domain:example.net``);
- the words of the text parts (text/plain, and text/html with tags removed), decoded from their
  transfer encoding and charset (RFC 2045 §6, RFC 2046 §4.1.2), case-folded (str.casefold);
- the host of every URL, and its parent domains (``url:www.spam.example``, ``url:spam.example``).

Invariants (bounded work per message whatever its size):
- at most `MAX_BYTES` octets of a message are ever parsed (callers read no more, see
  `read_bounded`), at most `MAX_TEXT` characters of decoded text are scanned, at most `MAX_TOKENS`
  distinct tokens are returned;
- words shorter than 3 or longer than 40 characters are skipped (SpamBayes' "skip" tokens are
  not worth a row each);
- a token is stored as a 63-bit BLAKE2b hash (`token_hash`): fits a signed BIGINT, and no
  message text is kept in the store.
"""

from __future__ import annotations

import email.policy
import hashlib
import re
from email.errors import HeaderParseError
from email.header import decode_header
from email.message import Message
from email.parser import BytesParser

MAX_BYTES = 256 * 1024  # octets of a message parsed: spam that matters shows itself early
MAX_TEXT = 200_000  # decoded characters scanned over all text parts
MAX_TOKENS = 3000  # distinct tokens per message (the store batch of one training)
MAX_PARTS = 50  # MIME parts looked at (a message of thousands of parts is no slower)
MIN_WORD, MAX_WORD = 3, 40

_WORD = re.compile(r"[^\W_][\w'$€£.-]*[\w$€£]|[^\W_]", re.UNICODE)
_URL = re.compile(r"(?i)\b(?:https?|ftp)://([a-z0-9.-]{1,253})")
_TAG = re.compile(r"<[^>]{0,2000}>")
_HREF = re.compile(r"(?i)href\s*=\s*[\"']?(?:https?|ftp)://([a-z0-9.-]{1,253})")
_HEADERS = ("subject", "from", "to")


def token_hash(token: str) -> int:
    """The 63-bit hash a token is stored as (positive, fits PostgreSQL BIGINT and SQLite INTEGER)."""
    d = hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(d, "big") >> 1


def _words(text: str, prefix: str, out: dict[str, None]) -> None:
    # case-folded once, then findall (strings, no match objects): the tokeniser's hot loop
    for w in _WORD.findall(text.casefold()):
        w = prefix + w.strip(".-'")
        if w in out or not MIN_WORD <= len(w) - len(prefix) <= MAX_WORD:
            continue
        out[w] = None
        if len(out) >= MAX_TOKENS:
            return


def _hosts(host: str, out: dict[str, None]) -> None:
    labels = host.casefold().strip(".").split(".")
    # the host and each parent with at least two labels: "url:a.b.example", "url:b.example"
    for i in range(max(len(labels) - 1, 1)):
        out.setdefault("url:" + ".".join(labels[i:]), None)


def _text_of(part: Message) -> str:
    """A text part's content: transfer encoding undone (RFC 2045 §6), then its charset (RFC 2046
    §4.1.2) with replacement characters — what ``email.policy.default``'s get_content() gives."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    try:
        return payload.decode(part.get_content_charset() or "ascii", "replace")
    except (LookupError, ValueError):  # unknown charset, or a name no codec lookup takes (NUL)
        return payload.decode("latin-1")


def _header_text(text: str) -> str:
    """A raw header value (as compat32 keeps it: 8-bit octets as surrogates) as text: raw UTF-8
    decoded (RFC 6532 §3.2), RFC 2047 encoded words decoded."""
    if not text.isascii():
        text = text.encode("ascii", "surrogateescape").decode("utf-8", "replace")
    if "=?" not in text:
        return text
    try:
        chunks = decode_header(text)
    except HeaderParseError:
        return text
    out = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
        elif charset is None:  # the text between encoded words, as decode_header re-encoded it
            out.append(chunk.decode("raw-unicode-escape"))
        else:
            try:
                out.append(chunk.decode(charset, "replace"))
            except (LookupError, ValueError):  # unknown charset, or a name no codec lookup takes
                out.append(chunk.decode("latin-1"))
    return "".join(out)


#: compat32 leaves header values as strings: ~10x cheaper than email.policy.default's header
#: objects, which the tokeniser does not need (a profile of the filtering benchmark, issue 14 §7).
_PARSER = BytesParser(policy=email.policy.compat32)


def tokenize(raw: bytes) -> list[str]:
    """The distinct tokens of a message (at most MAX_TOKENS), in order of first appearance."""
    msg = _PARSER.parsebytes(raw[:MAX_BYTES])
    out: dict[str, None] = {}
    for name in _HEADERS:
        for value in [v for n, v in msg.raw_items() if n.lower() == name]:
            text = _header_text(value)
            _words(text, f"{name}:", out)
            if name == "from":
                for m in re.finditer(r"@([A-Za-z0-9.-]+)", text):
                    out.setdefault("from-domain:" + m.group(1).casefold(), None)
    budget = MAX_TEXT
    for n, part in enumerate(msg.walk()):
        if n >= MAX_PARTS or budget <= 0 or len(out) >= MAX_TOKENS:
            break
        if part.get_content_maintype() != "text" or part.get_content_disposition() == "attachment":
            continue
        text = _text_of(part)[:budget]
        budget -= len(text)
        if part.get_content_subtype() == "html":
            for m in _HREF.finditer(text):
                _hosts(m.group(1), out)
            text = _TAG.sub(" ", text)
        for m in _URL.finditer(text):
            _hosts(m.group(1), out)
        _words(text, "", out)
    return list(out)[:MAX_TOKENS]


def message_key(raw: bytes) -> str:
    """The stable key a training is remembered by: the Message-ID if there is one (the same in
    every copy of the message in the account), else a digest of the bounded octets."""
    msg = BytesParser(policy=email.policy.compat32).parsebytes(raw[:MAX_BYTES], headersonly=True)
    mid = (msg.get("Message-ID") or "").strip()
    src = ("mid:" + mid).encode("utf-8", "surrogateescape") if mid else raw[:MAX_BYTES]
    return hashlib.sha256(src).hexdigest()[:40]
