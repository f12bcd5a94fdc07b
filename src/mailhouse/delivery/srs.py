"""Sender Rewriting Scheme for mail forwarded to outside addresses (issue 15 item 6).

An alias that sends mail on to another domain keeps the original envelope sender, so SPF fails
at the destination (RFC 7208 §1.1.3, RFC 7960 §3.2.3) and a bounce could not come back through
us. SRS rewrites the envelope sender into an address of our own SRS domain that encodes the
original one, signed and dated, so the next hop checks SPF against *our* domain and a bounce to
it can be verified and sent back to the original sender. This is the de-facto scheme of Shevek's
Mail::SRS (the "Guarded" variant; also libsrs2, postsrsd), not an RFC:

    SRS0=HHHH=TT=orig.domain=orig-local@srs.domain            first forwarder
    SRS1=HHHH=first.fwd==HHHH=TT=orig.domain=orig-local@srs.domain   a later forwarder

- HHHH: the first ``HASH_LENGTH`` characters of base64(HMAC-SHA1(secret, data)), data being the
  other fields concatenated and lower-cased; compared case-insensitively, since mail systems
  may fold the case of a local part (Mail::SRS does the same).
- TT: the day number (Unix time / 86400) modulo 1024 in two base32 characters (RFC 4648 §6
  alphabet); an address older than ``max_age`` days (or dated in the future) is refused.
- SRS1: a sender that is already another forwarder's SRS0 address is not wrapped again; the
  first forwarder's host and the SRS0 remainder are kept under our own hash, so a bounce goes
  straight back to the first forwarder (an SRS1 sender keeps its first forwarder the same way).
- The null sender is never rewritten (bounces have no one to bounce to), nor an address that is
  already an SRS address of our own domain.

The secret is 32 random bytes kept in the store (``Store.shared_secret``, name ``srs-<generation>``):
made by the first node that needs it and the same on every node of the store. Rotation: raising
``[srs] secret_generation`` makes a new secret for new addresses while the previous generation's
still verifies addresses made before (they expire after ``max_age`` days anyway).

Why our own module: PyPI's ``pysrs`` was last released in 2018 and is untyped; ``srslib``
(0.1.5, 2024) is one untyped module (no ``py.typed``, so ``mypy --strict`` needs stubs) whose
clock can only be swapped through a private attribute. The scheme itself is ~100 lines of
stdlib (hmac, base64) and is written here from the Mail::SRS description, not copied.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailhouse.store.api import Store

HASH_LENGTH = 4  # Mail::SRS / postsrsd default: 24 bits of HMAC, enough against forgery by guessing
TS_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648 §6 base32
TS_MODULUS = len(TS_ALPHABET) ** 2  # two characters: 1024 days
DAY = 86400
DEFAULT_MAX_AGE = 21  # days a bounce may take to come back (Mail::SRS MaxAge)
SEPARATORS = "=+-"  # Mail::SRS accepts these after SRS0/SRS1; we write "="
SECRET_NAME = "srs-{}"  # Store.shared_secret name, by generation


class SrsRefusal(enum.Enum):
    MALFORMED = "malformed SRS address"
    FORGED = "SRS hash does not verify"
    EXPIRED = "SRS timestamp expired"


class SrsError(ValueError):
    def __init__(self, kind: SrsRefusal, address: str) -> None:
        super().__init__(f"{kind.value}: {address}")
        self.kind = kind


@dataclass(frozen=True, slots=True)
class SrsCodec:
    """Rewrites and reverses addresses of one SRS DOMAIN; KEYS[0] signs, all of them verify."""

    domain: str
    keys: Sequence[bytes]
    max_age: int = DEFAULT_MAX_AGE
    clock: Callable[[], float] = time.time

    def _hash(self, data: str, secret: bytes) -> str:
        mac = hmac.new(secret, data.lower().encode("utf-8", "surrogateescape"), hashlib.sha1).digest()
        return base64.b64encode(mac).decode("ascii")[:HASH_LENGTH]

    def _verify(self, given: str, data: str, address: str) -> None:
        given = given.lower()  # Mail::SRS: case-insensitive compare, case may be folded in transit
        if len(given) != HASH_LENGTH or not any(
            hmac.compare_digest(given, self._hash(data, s).lower()) for s in self.keys
        ):
            raise SrsError(SrsRefusal.FORGED, address)

    def _today(self) -> int:
        return int(self.clock() // DAY)

    def timestamp(self) -> str:
        day = self._today() % TS_MODULUS
        return TS_ALPHABET[day >> 5] + TS_ALPHABET[day & 31]

    def _check_age(self, ts: str, address: str) -> None:
        ts = ts.upper()
        if len(ts) != 2 or any(c not in TS_ALPHABET for c in ts):
            raise SrsError(SrsRefusal.MALFORMED, address)
        day = TS_ALPHABET.index(ts[0]) << 5 | TS_ALPHABET.index(ts[1])
        if (self._today() - day) % TS_MODULUS > self.max_age:  # also refuses a date in the future
            raise SrsError(SrsRefusal.EXPIRED, address)

    def is_ours(self, address: str) -> bool:
        """Whether ADDRESS looks like an SRS address of our domain (not yet verified)."""
        local, _, domain = address.rpartition("@")
        return domain.lower().rstrip(".") == self.domain and _kind(local) is not None

    def forward(self, sender: str) -> str:
        """The envelope sender to use when forwarding mail from SENDER to another domain."""
        local, at, domain = sender.rpartition("@")
        if not sender or not at or not local or self.is_ours(sender):
            return sender  # the null sender, a bare local part, or already ours: unchanged
        kind = _kind(local)
        if kind == "SRS0" and local[5:].count("=") >= 3:
            return self._srs1(domain, local[4:])  # another forwarder's SRS0: its host, then the rest
        if kind == "SRS1":  # SRS1=HHHH=first.fwd==rest: keep the first forwarder, sign anew
            first, sep, rest = local[5:].partition("=")[2].partition("=")
            if first and sep and rest:
                return self._srs1(first, rest)
        ts = self.timestamp()
        h = self._hash(ts + domain + local, self.keys[0])
        return f"SRS0={h}={ts}={domain}={local}@{self.domain}"

    def _srs1(self, first: str, rest: str) -> str:
        """SRS1 of FIRST (the first forwarder's host) and REST (its SRS0 after "SRS0", separator included)."""
        h = self._hash(first + rest, self.keys[0])
        return f"SRS1={h}={first}={rest}@{self.domain}"

    def reverse(self, address: str) -> str:
        """The address a bounce to our SRS ADDRESS goes to; SrsError when forged, expired or malformed."""
        local, _, _ = address.rpartition("@")
        kind = _kind(local)
        if kind == "SRS0":
            parts = local[5:].split("=", 3)
            if len(parts) != 4 or not all(parts):
                raise SrsError(SrsRefusal.MALFORMED, address)
            h, ts, domain, orig = parts
            self._verify(h, ts + domain + orig, address)
            self._check_age(ts, address)
            return f"{orig}@{domain}"
        if kind == "SRS1":
            h, _, tail = local[5:].partition("=")
            first, sep, rest = tail.partition("=")  # rest keeps the SRS0 separator: "=HHHH=TT=…"
            if not (h and first and sep and len(rest) > 1):
                raise SrsError(SrsRefusal.MALFORMED, address)
            self._verify(h, first + rest, address)
            return f"SRS0{rest}@{first}"  # the first forwarder checks its own hash and age
        raise SrsError(SrsRefusal.MALFORMED, address)


def _kind(local: str) -> str | None:
    """ "SRS0" or "SRS1" when LOCAL starts so (any case) followed by a separator, else None."""
    if len(local) > 5 and local[:4].upper() in ("SRS0", "SRS1") and local[4] in SEPARATORS:
        return local[:4].upper()
    return None


async def load_codec(store: Store, domain: str, max_age: int, generation: int) -> SrsCodec:
    """The node's codec: the secret of GENERATION signs (made once, shared through the store), the
    one before it still verifies (rotation, see the module docstring)."""
    names = [SECRET_NAME.format(g) for g in (generation, generation - 1) if g >= 1]
    keys = [bytes.fromhex(await store.shared_secret(n, secrets.token_hex(32))) for n in names]
    return SrsCodec(domain.lower().rstrip("."), keys, max_age)
