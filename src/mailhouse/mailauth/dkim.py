"""DKIM signing and verification (RFC 6376; ed25519-sha256 per RFC 8463) on top of dkimpy.

Verification is dkimpy's (canonicalisation, hashing, tag parsing, key handling); signing is
done here with dkimpy's helpers and OpenSSL keys (see :func:`sign`), giving dkimpy's exact
bytes. This module chooses what to sign, orders the signatures and routes key look-ups
through *our* nameservers (`[dns] nameservers`) with dnspython — never the system resolver
when nameservers are set.

Signing policy:
- canonicalisation relaxed/relaxed (RFC 6376 §3.4.2, §3.4.4): survives header refolding and
  trailing-whitespace changes by relays, the common choice of Gmail, Microsoft and OpenDKIM;
- ``h=`` lists each field of :data:`SIGN_HEADERS` present in the message, once per instance,
  plus one extra ``from`` (RFC 6376 §5.4.2 / §8.15 "oversigning": a second From added in
  transit breaks the signature instead of being shown to the reader);
- one signature per key: rsa-sha256 (what every verifier understands, RFC 8301) and
  ed25519-sha256 (RFC 8463 §3); both verify independently because DKIM-Signature is never
  itself in ``h=``;
- DKIM-Signature fields are inserted at the top of the header block (RFC 6376 §5.6: "SHOULD
  be inserted before any other DKIM-Signature fields"; the usual place is the very top).

Streaming (issue 12 item 2): a spooled message (``store.spool.SpooledMessage``, the body possibly
on disk) is never loaded whole. `BodyCanon` applies the body canonicalisations (RFC 6376 §3.4.3,
§3.4.4) piecewise with dkimpy's exact output, and `body_hashes` computes every body hash a message
needs in one pass (§3.7, ``l=`` honoured); :meth:`DkimSigner.sign_spooled` signs with it, and
:func:`verify` gives dkimpy only the header section, checking ``bh=`` against those hashes.

Invariants: wire bytes in, wire bytes out; the message after :func:`sign` is the input with
only DKIM-Signature fields prepended, in the input's line ending. :func:`sign` costs well
under a millisecond (keys kept loaded in OpenSSL) and runs inline; :func:`verify` blocks on
DNS: call it from asyncio through ``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dkim as dkimpy
import dns.exception
import dns.rdatatype
import dns.resolver
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from mailhouse.mailauth.resolvers import resolver_on
from mailhouse.message.headers import split_header_block
from mailhouse.store.api import DkimKey
from mailhouse.store.crlf import to_crlf
from mailhouse.store.spool import SpooledMessage

log = logging.getLogger(__name__)

__all__ = [
    "SIGN_HEADERS",
    "OVERSIGN_HEADERS",
    "DkimResult",
    "DkimSigner",
    "sign",
    "verify",
    "unfinished",
    "make_resolver",
    "txt_lookup",
]

#: Fields signed when present (RFC 6376 §5.4.1 recommends the originator fields and those that
#: carry the content's meaning: subject, date, message-id, threading and MIME structure).
SIGN_HEADERS: tuple[str, ...] = (
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
)
#: Signed once more than they occur, so that adding one breaks the signature (RFC 6376 §8.15).
OVERSIGN_HEADERS: tuple[str, ...] = ("From",)

CANONICALIZATION = (b"relaxed", b"relaxed")  # RFC 6376 §3.4
DNS_TIMEOUT = 5.0  # seconds per key look-up; dkimpy's default too

_ALGORITHMS = {"rsa-sha256": b"rsa-sha256", "ed25519-sha256": b"ed25519-sha256"}
# RFC 8463 appendix A.3 shows the ed25519 signature above the RSA one; we keep that order.
_ORDER = {"ed25519-sha256": 0, "rsa-sha256": 1}


@dataclass(frozen=True, slots=True)
class DkimResult:
    """Outcome of one DKIM-Signature field (RFC 8601 §2.7.1 ``dkim=`` result)."""

    result: str  # "pass" | "fail" | "neutral" (unparseable) | "temperror" | "permerror"
    domain: str  # d=
    selector: str  # s=
    algorithm: str  # a=
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.result == "pass"


def _eol(raw: bytes) -> bytes:
    nl = raw.find(b"\n")
    return b"\n" if nl >= 0 and (nl == 0 or raw[nl - 1] != 0x0D) else b"\r\n"


def headers_to_sign(message: bytes) -> list[bytes]:
    """The ``h=`` list for MESSAGE: each present signable field per instance, plus oversigning."""
    fields, _, _ = split_header_block(message)
    present = [n.lower() for n, _ in fields]
    out: list[bytes] = []
    for name in SIGN_HEADERS:
        lname = name.lower().encode()
        out += [lname] * present.count(lname)
    for name in OVERSIGN_HEADERS:
        out.append(name.lower().encode())  # RFC 6376 §5.4.2: one more than present
    return out


# Signing is done here rather than by ``dkimpy.DKIM.sign``, which per key re-parses the
# message, re-canonicalises and re-hashes the body, re-parses the PEM key and does RSA in
# pure Python (~6 ms per 2048-bit signature). We parse and canonicalise once per message
# (both signatures use relaxed/relaxed and sha256, so one body hash serves both, RFC 6376
# §3.7), keep the private keys loaded in `cryptography` (OpenSSL), and build each field with
# dkimpy's own helpers (`fold`, `hash_headers`, the b= stripping regex) in dkimpy's tag order,
# so the output is byte-for-byte what ``dkimpy.DKIM.sign`` makes (a test holds us to it).
_CANON = dkimpy.CanonicalizationPolicy.from_c_value(b"/".join(CANONICALIZATION))
_FIELD = b"DKIM-Signature"
_MAX_CACHED_KEYS = 1000


def _load_key(key: DkimKey) -> Callable[[bytes], bytes]:
    """SHA-256 digest → signature with KEY, the key loaded into OpenSSL (ValueError if unusable)."""
    fn: Callable[[bytes], bytes]
    try:
        if key.algorithm == "rsa-sha256":
            rsa_key = serialization.load_pem_private_key(bytes(key.private_key), password=None)
            if not isinstance(rsa_key, rsa.RSAPrivateKey):
                raise ValueError("not an RSA private key")
            rsa_pk: rsa.RSAPrivateKey = rsa_key

            def rsa_sign(digest: bytes) -> bytes:
                # RFC 6376 §3.3.1 / RFC 8017 §8.2.1: RSASSA-PKCS1-v1_5 over the SHA-256 digest
                return rsa_pk.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))

            fn = rsa_sign
        else:
            # RFC 8463 §4: the private key is the base64 32-byte seed; §3: PureEdDSA over the
            # SHA-256 digest of the canonicalised header fields
            ed_pk = ed25519.Ed25519PrivateKey.from_private_bytes(
                base64.b64decode(key.private_key, validate=True)
            )
            fn = ed_pk.sign
    except (ValueError, TypeError, binascii.Error, UnsupportedAlgorithm) as e:
        raise ValueError(f"DKIM key {key.selector} ({key.algorithm}) is unusable: {e}") from e
    return fn


# RFC 6376 §3.4.4 relaxed body: WSP at line ends removed, other WSP runs made one SP. A lone
# SP is already canonical, so only runs of 2+ or runs holding a tab need rewriting (dkimpy's
# pattern rewrites every single space, which costs most of the time on ordinary text).
_TRAILING_WSP = re.compile(rb"[\t ]+\r\n")
_WSP_RUN = re.compile(rb" [\t ]+|\t[\t ]*")


def canonical_body(body: bytes) -> bytes:
    """Relaxed body canonicalisation (RFC 6376 §3.4.4) of a CRLF BODY; same bytes as dkimpy's."""
    if b"\t" in body or b"  " in body or b" \r\n" in body:  # else already canonical WSP
        body = _WSP_RUN.sub(b" ", _TRAILING_WSP.sub(b"\r\n", body))
    canonical: bytes = dkimpy.canonicalization.correct_empty_body(
        dkimpy.canonicalization.strip_trailing_lines(body)
    )
    return canonical


class BodyCanon:
    """RFC 6376 §3.4.3 (simple) / §3.4.4 (relaxed) body canonicalisation applied piecewise.

    ``feed`` any split of a CRLF body, then ``end``: SINK receives exactly the octets
    ``dkimpy``'s ``canonicalize_body`` returns for the whole body (a test holds us to it), in
    pieces; memory stays bounded by the input piece (runs of empty lines are counted, not kept).
    """

    __slots__ = ("_relaxed", "_sink", "_carry", "_pending", "_emitted")

    def __init__(self, relaxed: bool, sink: Callable[[bytes], object]) -> None:
        self._relaxed = relaxed
        self._sink = sink
        self._carry = b""  # held back: a trailing CR (CRLF or not?) and, relaxed, a trailing SP
        self._pending = 0  # CRLFs withheld: they end the body unless content follows (§3.4.3)
        self._emitted = False

    def _flush_pending(self) -> None:
        n = self._pending
        while n:
            k = min(n, 32768)
            self._sink(b"\r\n" * k)
            n -= k
        self._pending = 0

    def feed(self, data: bytes) -> None:
        s = self._carry + data if self._carry else data
        self._carry = b""
        if self._relaxed:
            if b"\t" in s or b"  " in s or b" \r\n" in s:
                # §3.4.4: WSP before CRLF removed, other WSP runs made one SP
                s = _WSP_RUN.sub(b" ", _TRAILING_WSP.sub(b"\r\n", s))
            if s.endswith(b"\r"):
                k = 2 if s.endswith(b" \r") else 1
                self._carry = s[-k:]
            elif s.endswith(b" "):
                self._carry = b" "
        elif s.endswith(b"\r"):
            self._carry = b"\r"
        end = len(s) - len(self._carry)
        n = 0
        while s.endswith(b"\r\n", 0, end):  # §3.4.3: empty lines at the end are ignored
            end -= 2
            n += 1
        if end > 0:
            self._flush_pending()
            self._sink(s[:end] if end < len(s) else s)
            self._emitted = True
            self._pending = n
        else:
            self._pending += n

    def end(self) -> None:
        if self._carry:
            # content without a final CRLF: dkimpy keeps it as is and adds the CRLF
            self._flush_pending()
            self._sink(self._carry + b"\r\n")
        elif self._emitted:
            self._sink(b"\r\n")  # §3.4.3: the body ends with exactly one CRLF
        elif not self._relaxed:
            self._sink(b"\r\n")  # §3.4.3: an empty body is one CRLF (simple)
        # §3.4.4 (relaxed): an empty body stays empty
        self._carry = b""
        self._pending = 0


class _Limited:
    """A hash fed at most LIMIT octets (the ``l=`` tag, RFC 6376 §3.5); None: unlimited."""

    __slots__ = ("h", "left")

    def __init__(self, h: Any, limit: int | None) -> None:
        self.h = h
        self.left = limit

    def update(self, data: bytes) -> None:
        if self.left is None:
            self.h.update(data)
        elif self.left > 0:
            piece = data[: self.left]
            self.left -= len(piece)
            self.h.update(piece)


#: (body canonicalisation, hash name as dkimpy's a= key, l= or None) of one body hash.
BodyHashSpec = tuple[bytes, bytes, int | None]


def body_hashes(chunks: Iterable[bytes], specs: Iterable[BodyHashSpec]) -> dict[BodyHashSpec, bytes]:
    """The body hashes (raw digests) SPECS name, all in one pass over the body CHUNKS (RFC 6376 §3.7).

    Blocking when CHUNKS reads a file: run it in a thread for a big message.
    """
    wanted = set(specs)
    hashers: dict[BodyHashSpec, _Limited] = {
        spec: _Limited(dkimpy.HASH_ALGORITHMS[spec[1]](), spec[2]) for spec in wanted
    }
    canons: list[BodyCanon] = []
    for kind in {spec[0] for spec in wanted}:
        targets = [hz for spec, hz in hashers.items() if spec[0] == kind]

        def sink(data: bytes, targets: list[_Limited] = targets) -> None:
            for t in targets:
                t.update(data)

        canons.append(BodyCanon(kind == b"relaxed", sink))
    if canons:
        for chunk in chunks:
            for c in canons:
                c.feed(chunk)
        for c in canons:
            c.end()
    return {spec: hz.h.digest() for spec, hz in hashers.items()}


def _parse(message: bytes) -> tuple[list[list[bytes]], bytes]:
    """(header fields, CRLF body) as ``dkimpy.rfc822_parse`` gives them.

    A message whose every line ends in CRLF (what SMTP hands us) is split at the first empty
    line without re-joining the body line by line; anything else takes dkimpy's path.
    """
    crlf = message.count(b"\r\n")
    if crlf == message.count(b"\n") == message.count(b"\r"):
        end = 0 if message.startswith(b"\r\n") else message.find(b"\r\n\r\n") + 2
        if end >= 2 or message.startswith(b"\r\n"):
            headers, _ = dkimpy.rfc822_parse(message[:end])
            return headers, message[end + 2 :]
    parsed: tuple[list[list[bytes]], bytes] = dkimpy.rfc822_parse(message)
    return parsed


class DkimSigner:
    """Signs with DKIM keys kept loaded in OpenSSL; one per node (the MSA's, built in `services.build`).

    CLOCK gives the ``t=`` timestamp (seconds since the epoch; injectable for tests). At most
    `_MAX_CACHED_KEYS` loaded keys are kept.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._keys: dict[tuple[str, bytes], Callable[[bytes], bytes]] = {}

    def _signer(self, key: DkimKey) -> Callable[[bytes], bytes]:
        """SHA-256 digest → signature with KEY (loaded once per signer; ValueError if unusable)."""
        cache_key = (key.algorithm, bytes(key.private_key))
        fn = self._keys.get(cache_key)
        if fn is None:
            fn = _load_key(key)
            if len(self._keys) >= _MAX_CACHED_KEYS:
                self._keys.clear()
            self._keys[cache_key] = fn
        return fn

    def sign(
        self, message: bytes, domain: str, keys: Sequence[DkimKey], *, now: float | None = None
    ) -> bytes:
        """Return MESSAGE with one DKIM-Signature per key (d=DOMAIN) prepended.

        Raises ValueError when the message has no From (RFC 6376 §5.4: From MUST be signed) or a
        key is unusable; keys of an unknown algorithm are skipped with a warning.
        """
        usable, include = self._prepare(message, domain, keys)
        if not usable:
            return message
        try:
            headers, body = _parse(message)
        except dkimpy.DKIMException as e:
            raise ValueError(f"DKIM signing for {domain} failed: {e}") from e
        # RFC 6376 §3.4.4 + §3.7: one body hash for all keys (same canonicalisation and hash)
        bh = hashlib.sha256(canonical_body(body)).digest()
        return self._fields(headers, bh, domain, usable, include, _eol(message), now) + message

    def sign_spooled(
        self, message: SpooledMessage, domain: str, keys: Sequence[DkimKey], *, now: float | None = None
    ) -> bytes:
        """The DKIM-Signature fields for MESSAGE (to prepend), its body hashed piece by piece.

        Same fields as `sign` (a test holds us to it); memory stays bounded by the header section
        and one piece of body. Blocking (reads the spool file): run it in a thread for a big message.
        """
        usable, include = self._prepare(message.head, domain, keys)
        if not usable:
            return b""
        try:
            headers, _ = _parse(message.head)
        except dkimpy.DKIMException as e:
            raise ValueError(f"DKIM signing for {domain} failed: {e}") from e
        spec: BodyHashSpec = (b"relaxed", b"rsa-sha256", None)  # RFC 6376 §3.4.4 + §3.7, as `sign`
        bh = body_hashes(message.body_chunks(), [spec])[spec]
        return self._fields(headers, bh, domain, usable, include, b"\r\n", now)

    def _prepare(
        self, head: bytes, domain: str, keys: Sequence[DkimKey]
    ) -> tuple[list[DkimKey], tuple[bytes, ...]]:
        fields, _, _ = split_header_block(head)
        if not any(n.lower() == b"from" for n, _ in fields):
            raise ValueError("message has no From: field; DKIM requires signing it (RFC 6376 §5.4)")
        include = tuple(headers_to_sign(head))
        usable = []
        for key in sorted(keys, key=lambda k: _ORDER.get(k.algorithm, 9)):
            if key.algorithm not in _ALGORITHMS:
                log.warning(
                    "DKIM key %s._domainkey.%s: unknown algorithm %r, skipped",
                    key.selector,
                    domain,
                    key.algorithm,
                )
                continue
            usable.append(key)
        return usable, include

    def _fields(
        self,
        headers: list[list[bytes]],
        body_hash: bytes,
        domain: str,
        usable: list[DkimKey],
        include: tuple[bytes, ...],
        eol: bytes,
        now: float | None,
    ) -> bytes:
        # RFC 6376 §3.4.2, once for every key, and only for the fields h= names (what
        # dkimpy.select_headers picks from is then the same, minus fields it would skip anyway)
        wanted = set(include)
        cheaders = _CANON.canonicalize_headers([h for h in headers if h[0].lower() in wanted])
        bh = base64.b64encode(body_hash)
        d = domain.lower().encode("idna")
        t = str(int(self._clock() if now is None else now)).encode("ascii")  # RFC 6376 §3.5 t=
        sigs: list[bytes] = []
        for key in usable:
            signer = self._signer(key)
            tags = [
                (b"v", b"1"),
                (b"a", _ALGORITHMS[key.algorithm]),
                (b"c", _CANON.to_c_value()),
                (b"d", d),
                (b"i", b"@" + d),
                (b"q", b"dns/txt"),
                (b"s", key.selector.encode("ascii")),
                (b"t", t),
                (b"h", b" : ".join(include)),
                (b"bh", bh),
                (b"b", b"0" * 60),  # placeholder, as dkimpy: forces b= onto its own folded line
            ]
            value = dkimpy.fold(b"; ".join(b"=".join(x) for x in tags), namelen=len(_FIELD), linesep=b"\r\n")
            value = dkimpy.RE_BTAG.sub(b"\\1", value)  # RFC 6376 §3.7: b= empty while hashing
            h = hashlib.sha256()
            dkimpy.hash_headers(h, _CANON, cheaders, include, (_FIELD, b" " + value), dict(tags))
            tags[-1] = (b"b", base64.b64encode(signer(h.digest())))
            sigs.append(
                _FIELD
                + b": "
                + dkimpy.fold(b"; ".join(b"=".join(x) for x in tags) + eol, namelen=len(_FIELD), linesep=eol)
            )
        return b"".join(sigs)


def sign(message: bytes, domain: str, keys: Sequence[DkimKey], *, now: float | None = None) -> bytes:
    """`DkimSigner.sign` with a one-off signer (keys loaded for this call only): for tools and tests."""
    return DkimSigner().sign(message, domain, keys, now=now)


# ------------------------------------------------------------------------------ verification


def make_resolver(
    nameservers: Sequence[tuple[str, int]] | None, timeout: float = DNS_TIMEOUT
) -> dns.resolver.Resolver:
    """A dnspython resolver on NAMESERVERS (``[(ip, port)]``); the system's only when none given."""
    return resolver_on(dns.resolver.Resolver, nameservers, timeout)


def txt_lookup(resolver: dns.resolver.Resolver) -> Callable[..., bytes | None]:
    """A dkimpy ``dnsfunc``: NAME (bytes) → the key record's TXT strings joined, or None."""

    def dnsfunc(name: bytes, timeout: float = DNS_TIMEOUT) -> bytes | None:
        try:
            qname = name.decode("ascii")
        except UnicodeDecodeError:
            return None
        try:
            answer = resolver.resolve(qname, dns.rdatatype.TXT, lifetime=timeout, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as e:
            raise dkimpy.DnsTimeoutError(f"{qname}: {e}") from e
        records = [b"".join(r.strings) for r in answer]  # RFC 6376 §3.6.2.2: strings concatenate
        for rec in records:
            if rec.lstrip().startswith(b"v=DKIM1"):
                return rec
        return records[0] if records else None

    return dnsfunc


def _signature_tags(value: bytes) -> dict[bytes, bytes]:
    try:
        return dict(dkimpy.util.parse_tag_value(value))
    except Exception:
        return {}


def _signatures(head: bytes) -> list[tuple[bytes, dict[bytes, bytes], str, str, str]]:
    """Each DKIM-Signature of a header section (or whole message), top to bottom: (value, tags, d, s, a)."""
    fields, _, _ = split_header_block(head)
    out = []
    for n, value in fields:
        if n.lower() != b"dkim-signature":
            continue
        tags = _signature_tags(value)
        d = tags.get(b"d", b"").decode("ascii", "replace")
        s = tags.get(b"s", b"").decode("ascii", "replace")
        a = tags.get(b"a", b"").decode("ascii", "replace")
        out.append((value, tags, d, s, a))
    return out


def unfinished(message: bytes | SpooledMessage, why: str) -> list[DkimResult]:
    """The results of a verification that ran out of DNS time: temperror per signature
    (RFC 8601 §2.7.1; unparseable ones neutral, as :func:`verify` says)."""
    return [
        DkimResult("temperror" if tags else "neutral", d, s, a, why)
        for _, tags, d, s, a in _signatures(message if isinstance(message, bytes) else message.head)
    ]


class _SpooledDKIM(dkimpy.DKIM):  # type: ignore[misc]
    """dkimpy's verifier over the header section only, checking ``bh=`` against body hashes
    computed beforehand in one streaming pass (`body_hashes`): dkimpy never sees the body."""

    def __init__(self, head: bytes, hashes: dict[BodyHashSpec, bytes], timeout: int) -> None:
        super().__init__(head, timeout=timeout)
        self._hashes = hashes

    def verify_sig_process(
        self, sig: dict[bytes, bytes], include_headers: list[bytes], sig_header: Any, dnsfunc: Any
    ) -> bool:
        spec = _spec(sig)
        if b"bh" in sig and spec is not None:
            try:
                expected = base64.b64decode(re.sub(rb"\s+", b"", sig[b"bh"]))
            except (TypeError, binascii.Error) as e:
                raise dkimpy.MessageFormatError(str(e)) from e
            got = self._hashes.get(spec)
            if got != expected:  # RFC 6376 §6.1.3 step 5: the body hash must match
                raise dkimpy.ValidationError(
                    f"body hash mismatch (got {base64.b64encode(got or b'')!r}, expected {sig[b'bh']!r})"
                )
            sig = {k: v for k, v in sig.items() if k != b"bh"}  # checked: dkimpy hashes headers only
        result: bool = super().verify_sig_process(sig, include_headers, sig_header, dnsfunc)
        return result


def _spec(tags: dict[bytes, bytes]) -> BodyHashSpec | None:
    """The body hash a signature's tags ask for (None: malformed; dkimpy reports it)."""
    c = tags.get(b"c", b"simple/simple").split(b"/")
    body = c[1] if len(c) == 2 else b"simple"  # RFC 6376 §3.5 c=: the body defaults to simple
    a = tags.get(b"a", b"")
    length = tags.get(b"l")
    if body not in (b"simple", b"relaxed") or a not in dkimpy.HASH_ALGORITHMS:
        return None
    if length is not None and not length.isdigit():
        return None
    return body, a, int(length) if length is not None else None


def verify(
    message: bytes | SpooledMessage,
    dns_nameservers: Sequence[tuple[str, int]] | None = None,
    *,
    dnsfunc: Callable[..., bytes | None] | None = None,
    timeout: float = DNS_TIMEOUT,
    deadline: float | None = None,
) -> list[DkimResult]:
    """Verify every DKIM-Signature of MESSAGE; one result per signature, top to bottom.

    Keys are fetched with DNSFUNC, else through DNS_NAMESERVERS (``[(ip, port)]``) — the system
    resolver only when that list is empty. No signature → empty list (RFC 8601 ``dkim=none``).
    DEADLINE (``time.monotonic()``) bounds all key look-ups together (the message's DNS budget):
    a look-up gets at most the time left, and none is tried after it (temperror).
    The body is read once, in pieces, for all body hashes (RFC 6376 §3.7): a spooled message is
    never loaded whole; dkimpy checks the header section and the signatures.
    """
    if dnsfunc is None:
        dnsfunc = txt_lookup(make_resolver(dns_nameservers, timeout))
    if isinstance(message, bytes):
        message = SpooledMessage.from_bytes(to_crlf(message))  # as it is stored (store.crlf)
    sigs = _signatures(message.head)
    if not sigs:
        return []
    specs = [sp for sp in (_spec(t) for _, t, _, _, _ in sigs if t) if sp is not None]
    hashes = body_hashes(message.body_chunks(), specs)
    results: list[DkimResult] = []
    for idx, (_value, tags, d, s, a) in enumerate(sigs):
        if not tags:
            results.append(DkimResult("neutral", d, s, a, "unparseable DKIM-Signature"))  # RFC 8601 §2.7.1
            continue
        seen: dict[str, str] = {}

        def tracking(name: bytes, timeout: float = DNS_TIMEOUT, seen: dict[str, str] = seen) -> bytes | None:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    seen["temperror"] = "DNS budget exhausted"
                    raise dkimpy.DnsTimeoutError(seen["temperror"])
                timeout = min(timeout, left)
            try:
                rec = dnsfunc(name, timeout=timeout)
            except dkimpy.DnsTimeoutError as e:
                seen["temperror"] = str(e)  # dkimpy swallows this; RFC 8601 wants temperror
                raise
            if rec is None:
                seen["permerror"] = f"no key record at {name.decode('ascii', 'replace')}"  # RFC 6376 §6.1.2
            return rec

        v = _SpooledDKIM(message.head, hashes, int(timeout))
        try:
            ok = v.verify(idx=idx, dnsfunc=tracking)
        except dkimpy.ValidationError as e:
            # RFC 6376 §6.1.3: a body hash mismatch is a failed signature; RFC 8601 §2.7.1
            # keeps permerror for signatures that cannot be evaluated (bad tags, expired)
            res = "fail" if str(e).startswith("body hash mismatch") else "permerror"
            results.append(DkimResult(res, d, s, a, str(e)))
            continue
        except dkimpy.DKIMException as e:
            results.append(DkimResult("permerror", d, s, a, str(e)))
            continue
        if ok:
            results.append(DkimResult("pass", d, s, a))
        elif "temperror" in seen:
            results.append(DkimResult("temperror", d, s, a, seen["temperror"]))
        elif "permerror" in seen:
            results.append(DkimResult("permerror", d, s, a, seen["permerror"]))
        else:
            results.append(DkimResult("fail", d, s, a, "signature did not verify"))  # RFC 6376 §6.1.3
    return results
