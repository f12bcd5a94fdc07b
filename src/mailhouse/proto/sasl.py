"""Server-side SASL mechanisms as sans-IO state machines.

Implements RFC 4422 (SASL framework), RFC 4616 (PLAIN), the LOGIN mechanism
(draft-murchison-sasl-login-00), RFC 5802 / RFC 7677 (SCRAM-SHA-256) with
RFC 4013 SASLprep for SCRAM user names and passwords, and the cancel rule of
RFC 4954 §4 / RFC 9051 §6.2.2 / RFC 5034 §4 (a response of ``*`` aborts).

One module is shared by SMTP AUTH, IMAP AUTHENTICATE and POP3 AUTH: the
protocol adapter only frames lines.  The flow is::

    mech = PlainMechanism()                      # or LoginMechanism, ScramSha256Mechanism
    step = mech.start(decode_initial(arg))       # arg None when no initial response
    while isinstance(step, Challenge):
        send_continuation(base64(step.data))     # "334 ", "+ ", "+ "
        step = mech.respond(decode_line(read_line()))
    # PLAIN/LOGIN -> Credentials: the adapter checks the password against the store.
    # SCRAM       -> NeedsVerifier: the adapter calls mech.provide_verifier(...)
    #                and continues the loop; it ends in Authenticated or Rejected.

``decode_line`` raises :class:`SaslCancelled` for ``*`` and :class:`SaslError`
for anything malformed (bad base64, too long, grammar); the adapter answers
SMTP ``501 5.5.2`` / ``501 5.0.0`` (cancel), IMAP ``BAD``, POP3 ``-ERR``.

Invariants
----------
* No mechanism decides policy: PLAIN and LOGIN hand the credentials out;
  SCRAM verifies a proof against keys the adapter supplied from the store.
* A mechanism object is single-use; any call after it finished or failed
  raises :class:`SaslError`.
* Passwords never appear in ``repr()`` of events.
* Unknown SCRAM users get a deterministic fake salt (HMAC of the user name
  under a server secret) so the server-first message does not reveal whether
  the account exists (RFC 5802 §5.1).
* Decoded responses are capped at :data:`MAX_RESPONSE_OCTETS`.

Why hand-written: the Python SASL libraries (``pure-sasl``, ``python-scram``)
are client-oriented or unmaintained, do IO or policy themselves, and none fits
the sans-IO event style shared by our SMTP/IMAP/POP3 cores.  The crypto is
stdlib (``hashlib.pbkdf2_hmac``, ``hmac``), nothing is invented here.
"""

from __future__ import annotations

import abc
import base64
import binascii
import enum
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Final

__all__ = [
    "DEFAULT_SCRAM_ITERATIONS",
    "MAX_ENCODED_RESPONSE_OCTETS",
    "MAX_RESPONSE_OCTETS",
    "MIN_SCRAM_ITERATIONS",
    "SERVER_MECHANISMS",
    "Authenticated",
    "Challenge",
    "Credentials",
    "LoginMechanism",
    "Mechanism",
    "NeedsVerifier",
    "PlainMechanism",
    "Rejected",
    "SaslCancelled",
    "SaslError",
    "ScramSha256Client",
    "ScramSha256Mechanism",
    "ScramVerifier",
    "Step",
    "create_mechanism",
    "decode_initial",
    "decode_line",
    "encode_challenge",
    "new_scram_verifier",
    "normalize_password",
    "plain_initial",
    "saslprep",
    "scram_keys",
]

# Limits --------------------------------------------------------------------

#: Largest decoded client response we accept.  PLAIN needs at most
#: 3 x 255 octets (RFC 4616 §2), SCRAM client-final is ~200 octets; 12 KiB
#: leaves room for Kerberos-sized tokens should GSSAPI arrive, while keeping
#: a hostile client from making us buffer megabytes before authentication.
MAX_RESPONSE_OCTETS: Final = 12 * 1024
#: The same limit in base64 form (4 octets per 3), used by line readers.
MAX_ENCODED_RESPONSE_OCTETS: Final = 4 * ((MAX_RESPONSE_OCTETS + 2) // 3)
#: RFC 7677 §4: the iteration count SHOULD be at least 4096.
MIN_SCRAM_ITERATIONS: Final = 4096
#: What we store for new passwords; PBKDF2 runs once per login, argon2id
#: carries the real offline-attack resistance.
DEFAULT_SCRAM_ITERATIONS: Final = 10_000
#: Octets of random salt in new SCRAM verifiers (128 bits, as in the RFC 7677 §3 example).
SCRAM_SALT_OCTETS: Final = 16
#: Octets of server nonce entropy (RFC 5802 §5.1: "sufficiently random").
SCRAM_NONCE_OCTETS: Final = 18
#: Largest iteration count a client helper will run (bounds CPU on a hostile server).
MAX_SCRAM_ITERATIONS: Final = 1_000_000

#: Mechanisms offered by servers, strongest first.
SERVER_MECHANISMS: Final = ("SCRAM-SHA-256", "PLAIN", "LOGIN")


class SaslError(Exception):
    """A malformed or out-of-order SASL exchange (protocol syntax, not a wrong password)."""


class SaslCancelled(SaslError):
    """The client answered ``*`` (RFC 4954 §4, RFC 9051 §6.2.2, RFC 5034 §4)."""


# Steps (events) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send ``data`` base64-encoded as a continuation; feed the reply to ``respond``."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Credentials:
    """PLAIN/LOGIN finished: check ``password`` for ``authcid`` against the store.

    ``authzid`` is ``""`` when the client did not ask to act as someone else
    (RFC 4616 §2); whether a non-empty authzid is allowed is policy.
    ``password`` stays bytes (wire data): the verifier decodes it.
    """

    authzid: str
    authcid: str
    password: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class NeedsVerifier:
    """SCRAM needs the stored keys for ``authcid``: call ``provide_verifier``."""

    authzid: str
    authcid: str


@dataclass(frozen=True, slots=True)
class Authenticated:
    """SCRAM proof verified and server signature acknowledged."""

    authzid: str
    authcid: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """Authentication failed (wrong proof or unknown user): answer with a failure reply."""

    authcid: str
    reason: str


Step = Challenge | Credentials | NeedsVerifier | Authenticated | Rejected


@dataclass(frozen=True, slots=True)
class ScramVerifier:
    """What the store keeps per user for SCRAM-SHA-256 (RFC 5802 §3)."""

    salt: bytes
    iterations: int
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)


# Line codec ----------------------------------------------------------------

_CANCEL: Final = b"*"


def _b64decode(data: bytes) -> bytes:
    if len(data) > MAX_ENCODED_RESPONSE_OCTETS:
        raise SaslError("response too long")
    try:
        # RFC 4648 §3.3: reject characters outside the alphabet.
        out = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise SaslError("bad base64") from None
    if len(out) > MAX_RESPONSE_OCTETS:
        raise SaslError("response too long")
    return out


def decode_line(line: bytes) -> bytes:
    """Decode one continuation line (CRLF optional) sent after a challenge.

    ``*`` raises :class:`SaslCancelled`; an empty line is an empty response.
    """
    line = line.rstrip(b"\r\n")
    if line == _CANCEL:  # RFC 4954 §4, RFC 9051 §6.2.2, RFC 5034 §4: "*" cancels
        raise SaslCancelled("authentication cancelled")
    return _b64decode(line)


def decode_initial(arg: bytes | None) -> bytes | None:
    """Decode the optional initial response of AUTH/AUTHENTICATE.

    ``None`` means no initial response; ``=`` means an empty one
    (RFC 4954 §4, RFC 4959 §3, RFC 5034 §4).
    """
    if arg is None:
        return None
    if arg == b"=":
        return b""
    return _b64decode(arg)


def encode_challenge(data: bytes) -> bytes:
    """Base64 of a challenge; empty challenges are empty (RFC 4422 §5)."""
    return base64.b64encode(data)


# SASLprep (RFC 4013) ---------------------------------------------------------


def saslprep(text: str, *, allow_unassigned: bool = True) -> str:
    """RFC 4013 SASLprep (stringprep profile) using the stdlib tables.

    ``allow_unassigned`` is True for queries, False for stored strings
    (RFC 3454 §7).
    """
    mapped: list[str] = []
    for ch in text:
        if stringprep.in_table_c12(ch):  # RFC 4013 §2.1: non-ASCII space -> SPACE
            mapped.append(" ")
        elif stringprep.in_table_b1(ch):  # RFC 4013 §2.1: commonly mapped to nothing
            continue
        else:
            mapped.append(ch)
    out = unicodedata.normalize("NFKC", "".join(mapped))  # RFC 4013 §2.2
    for ch in out:
        if (  # RFC 4013 §2.3: prohibited output
            stringprep.in_table_c12(ch)
            or stringprep.in_table_c21_c22(ch)
            or stringprep.in_table_c3(ch)
            or stringprep.in_table_c4(ch)
            or stringprep.in_table_c5(ch)
            or stringprep.in_table_c6(ch)
            or stringprep.in_table_c7(ch)
            or stringprep.in_table_c8(ch)
            or stringprep.in_table_c9(ch)
        ):
            raise SaslError("prohibited character")
        if not allow_unassigned and stringprep.in_table_a1(ch):  # RFC 4013 §2.5
            raise SaslError("unassigned code point")
    if any(stringprep.in_table_d1(ch) for ch in out):  # RFC 4013 §2.4 / RFC 3454 §6
        if any(stringprep.in_table_d2(ch) for ch in out):
            raise SaslError("mixed bidirectional text")
        if not (stringprep.in_table_d1(out[0]) and stringprep.in_table_d1(out[-1])):
            raise SaslError("bad bidirectional text")
    return out


def normalize_password(password: str | bytes) -> bytes:
    """Normalize(str) of RFC 5802 §2.2: SASLprep, falling back to raw UTF-8.

    The fallback keeps passwords that SASLprep rejects (control characters)
    usable; client and server both use this function so they agree.
    Bytes are taken as already normalised.
    """
    if isinstance(password, bytes):
        return password
    try:
        return saslprep(password).encode("utf-8")
    except SaslError:
        return password.encode("utf-8")


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError(f"{what} is not UTF-8") from None


# Mechanism base ------------------------------------------------------------


class _Phase(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    DONE = "done"


class Mechanism(abc.ABC):
    """Common interface: ``start`` once, then ``respond`` per client response."""

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        self._phase = _Phase.NEW

    @property
    def done(self) -> bool:
        """True once the mechanism returned a terminal step or failed."""
        return self._phase is _Phase.DONE

    def start(self, initial: bytes | None) -> Step:
        """Begin the exchange with the decoded initial response (``None`` if absent)."""
        if self._phase is not _Phase.NEW:
            raise SaslError("mechanism already started")
        self._phase = _Phase.RUNNING
        return self._guard(self._start, initial)

    def respond(self, data: bytes) -> Step:
        """Feed one decoded client response."""
        if self._phase is not _Phase.RUNNING:
            raise SaslError("no exchange in progress")
        return self._guard(self._respond, data)

    def _guard(self, fn: Callable[[bytes | None], Step], data: bytes | None) -> Step:
        if data is not None and len(data) > MAX_RESPONSE_OCTETS:
            self._phase = _Phase.DONE
            raise SaslError("response too long")
        try:
            step = fn(data)
        except SaslError:
            self._phase = _Phase.DONE
            raise
        if isinstance(step, Credentials | Authenticated | Rejected):
            self._phase = _Phase.DONE
        return step

    @abc.abstractmethod
    def _start(self, initial: bytes | None) -> Step: ...

    @abc.abstractmethod
    def _respond(self, data: bytes | None) -> Step: ...


# PLAIN -----------------------------------------------------------------------


class PlainMechanism(Mechanism):
    """RFC 4616 PLAIN: ``[authzid] NUL authcid NUL passwd`` in one response."""

    name: ClassVar[str] = "PLAIN"

    def _start(self, initial: bytes | None) -> Step:
        if initial is None:
            return Challenge(b"")  # RFC 4422 §5: empty challenge asks for the response
        return self._parse(initial)

    def _respond(self, data: bytes | None) -> Step:
        assert data is not None
        return self._parse(data)

    @staticmethod
    def _parse(message: bytes) -> Credentials:
        parts = message.split(b"\x00")
        if len(parts) != 3:  # RFC 4616 §2: exactly two NUL separators
            raise SaslError("malformed PLAIN message")
        authzid, authcid, passwd = parts
        if not authcid or not passwd:  # RFC 4616 §2: authcid and passwd are 1*SAFE
            raise SaslError("empty user name or password")
        return Credentials(_utf8(authzid, "authzid"), _utf8(authcid, "user name"), passwd)


def plain_initial(authzid: str, user: str, password: str | bytes) -> bytes:
    """Client side: the PLAIN message (not yet base64) for AUTH's initial response."""
    pw = password.encode("utf-8") if isinstance(password, str) else password
    return authzid.encode("utf-8") + b"\x00" + user.encode("utf-8") + b"\x00" + pw


# LOGIN -----------------------------------------------------------------------


class LoginMechanism(Mechanism):
    """LOGIN (draft-murchison-sasl-login-00): user name, then password.

    An initial response, if present, is the user name (as sent by
    ``AUTH LOGIN <b64user>`` clients).  Obsolete but still used by Outlook
    and many devices; offer it only over TLS.
    """

    name: ClassVar[str] = "LOGIN"
    USER_PROMPT: ClassVar[bytes] = b"Username:"  # draft-murchison-sasl-login §2.1
    PASS_PROMPT: ClassVar[bytes] = b"Password:"

    def __init__(self) -> None:
        super().__init__()
        self._user: str | None = None

    def _start(self, initial: bytes | None) -> Step:
        if initial is None or initial == b"":
            return Challenge(self.USER_PROMPT)
        return self._take_user(initial)

    def _take_user(self, data: bytes) -> Step:
        if not data:
            raise SaslError("empty user name")
        self._user = _utf8(data, "user name")
        return Challenge(self.PASS_PROMPT)

    def _respond(self, data: bytes | None) -> Step:
        assert data is not None
        if self._user is None:
            return self._take_user(data)
        if not data:
            raise SaslError("empty password")
        return Credentials("", self._user, data)


# SCRAM-SHA-256 ---------------------------------------------------------------

_GS2_NO_CB: Final = b"n"  # RFC 5802 §7: client does not support channel binding
_GS2_NO_CB_SERVER: Final = b"y"  # client supports it, thinks the server does not
_GS2_CB: Final = b"p"  # channel binding requested (SCRAM-SHA-256-PLUS only)


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _salted_password(password: str | bytes, salt: bytes, iterations: int) -> bytes:
    # RFC 5802 §3: SaltedPassword := Hi(Normalize(password), salt, i); Hi is PBKDF2 (RFC 2898)
    return hashlib.pbkdf2_hmac("sha256", normalize_password(password), salt, iterations)


def scram_keys(password: str | bytes, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """Return ``(StoredKey, ServerKey)`` for the store (RFC 5802 §3).

    The store keeps these next to the argon2id hash; neither lets an attacker
    log in directly (StoredKey is a hash of ClientKey).
    """
    if iterations < 1:
        raise ValueError("iterations must be positive")
    salted = _salted_password(password, salt, iterations)
    client_key = _hmac(salted, b"Client Key")  # RFC 5802 §3
    stored_key = _h(client_key)
    server_key = _hmac(salted, b"Server Key")
    return stored_key, server_key


def new_scram_verifier(password: str | bytes, iterations: int = DEFAULT_SCRAM_ITERATIONS) -> ScramVerifier:
    """Fresh random salt and keys for a new or changed password."""
    salt = secrets.token_bytes(SCRAM_SALT_OCTETS)
    stored, server = scram_keys(password, salt, iterations)
    return ScramVerifier(salt, iterations, stored, server)


def _decode_saslname(value: bytes) -> str:
    # RFC 5802 §5.1: saslname; "=2C" is ",", "=3D" is "=", any other "=" is an error
    text = _utf8(value, "user name")
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "=":
            esc = text[i + 1 : i + 3]
            if esc == "2C":
                out.append(",")
            elif esc == "3D":
                out.append("=")
            else:
                raise SaslError("bad saslname escape")
            i += 3
        elif ch == ",":
            raise SaslError("unescaped comma in saslname")
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _encode_saslname(name: str) -> bytes:
    return name.replace("=", "=3D").replace(",", "=2C").encode("utf-8")


def _valid_nonce(nonce: bytes) -> bool:
    # RFC 5802 §7: printable = %x21-2B / %x2D-7E (no comma)
    return bool(nonce) and all(0x21 <= b <= 0x7E and b != 0x2C for b in nonce)


def _attrs(message: bytes) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for part in message.split(b","):
        if len(part) < 2 or part[1:2] != b"=":  # RFC 5802 §7: attr-val = ALPHA "=" value
            raise SaslError("malformed SCRAM attribute")
        out.append((part[:1], part[2:]))
    return out


class _ScramPhase(enum.Enum):
    CLIENT_FIRST = "client-first"
    NEED_VERIFIER = "need-verifier"
    CLIENT_FINAL = "client-final"
    FINAL_ACK = "final-ack"


class ScramSha256Mechanism(Mechanism):
    """RFC 5802 / RFC 7677 SCRAM-SHA-256, server side, without channel binding.

    ``fake_secret`` should be a per-server secret so fake salts for unknown
    users are stable across connections (RFC 5802 §5.1); ``nonce`` may be
    injected for tests.  We do not advertise ``-PLUS``; a client that sends
    ``p=`` is refused, ``y`` is accepted (RFC 5802 §6).
    After a valid proof, the server-final message is sent as a challenge and
    the client's empty response completes the exchange (RFC 4422 §5, as SMTP
    and POP3 have no "additional data with success").
    """

    name: ClassVar[str] = "SCRAM-SHA-256"

    def __init__(
        self,
        *,
        fake_secret: bytes | None = None,
        nonce: Callable[[], str] | None = None,
        channel_binding_advertised: bool = False,
    ) -> None:
        super().__init__()
        self._fake_secret = fake_secret if fake_secret is not None else secrets.token_bytes(32)
        self._nonce_factory = nonce or (lambda: secrets.token_urlsafe(SCRAM_NONCE_OCTETS))
        self._cb_advertised = channel_binding_advertised
        self._scram_phase = _ScramPhase.CLIENT_FIRST
        self._gs2_header = b""
        self._client_first_bare = b""
        self._client_nonce = b""
        self._authzid = ""
        self._authcid = ""
        self._server_first = b""
        self._nonce = b""
        self._verifier: ScramVerifier | None = None
        self._known_user = False

    # -- exchange ----------------------------------------------------------

    def _start(self, initial: bytes | None) -> Step:
        if initial is None or initial == b"":
            return Challenge(b"")  # RFC 4422 §5: ask for client-first
        return self._client_first(initial)

    def _respond(self, data: bytes | None) -> Step:
        assert data is not None
        phase = self._scram_phase
        if phase is _ScramPhase.CLIENT_FIRST:
            return self._client_first(data)
        if phase is _ScramPhase.CLIENT_FINAL:
            return self._client_final(data)
        if phase is _ScramPhase.FINAL_ACK:
            if data:  # RFC 4422 §5: the response to the last challenge is empty
                raise SaslError("unexpected data after server-final")
            return Authenticated(self._authzid, self._authcid)
        raise SaslError("waiting for provide_verifier")

    def _client_first(self, msg: bytes) -> Step:
        # RFC 5802 §7: client-first-message = gs2-header client-first-message-bare
        parts = msg.split(b",", 2)
        if len(parts) != 3:
            raise SaslError("malformed client-first-message")
        cbind, authz, bare = parts
        if cbind == _GS2_NO_CB:
            pass
        elif cbind == _GS2_NO_CB_SERVER:
            if self._cb_advertised:  # RFC 5802 §6: downgrade attack, fail
                raise SaslError("channel binding downgrade")
        elif cbind.startswith(_GS2_CB + b"="):
            raise SaslError("channel binding not supported")  # we only offer non-PLUS
        else:
            raise SaslError("bad gs2-cbind-flag")
        if authz:
            if not authz.startswith(b"a="):  # RFC 5802 §7: gs2-authzid = "a=" saslname
                raise SaslError("bad gs2 authzid")
            self._authzid = _decode_saslname(authz[2:])
        attrs = _attrs(bare)
        if attrs[0][0] == b"m":  # RFC 5802 §7: reserved-mext, MUST fail
            raise SaslError("unsupported mandatory extension")
        if len(attrs) < 2 or attrs[0][0] != b"n" or attrs[1][0] != b"r":
            raise SaslError("malformed client-first-message-bare")
        user = _decode_saslname(attrs[0][1])
        if not user:
            raise SaslError("empty user name")
        self._authcid = saslprep(user)  # RFC 5802 §5.1: SASLprep the user name
        if not _valid_nonce(attrs[1][1]):
            raise SaslError("bad client nonce")
        self._client_nonce = attrs[1][1]
        self._gs2_header = cbind + b"," + authz + b","
        self._client_first_bare = bare
        self._scram_phase = _ScramPhase.NEED_VERIFIER
        return NeedsVerifier(self._authzid, self._authcid)

    def provide_verifier(self, verifier: ScramVerifier | None) -> Step:
        """Supply the stored keys for the user, or ``None`` if there is no such user.

        Returns the server-first challenge either way, so unknown users are
        indistinguishable until the proof fails.
        """
        if self._phase is not _Phase.RUNNING or self._scram_phase is not _ScramPhase.NEED_VERIFIER:
            raise SaslError("provide_verifier out of order")
        if verifier is None:
            salt = _hmac(self._fake_secret, self._authcid.encode("utf-8"))[:SCRAM_SALT_OCTETS]
            verifier = ScramVerifier(salt, DEFAULT_SCRAM_ITERATIONS, secrets.token_bytes(32), b"")
            self._known_user = False
        else:
            self._known_user = True
        self._verifier = verifier
        server_nonce = self._nonce_factory().encode("ascii")
        if not _valid_nonce(server_nonce):
            raise SaslError("bad server nonce")
        self._nonce = self._client_nonce + server_nonce
        # RFC 5802 §7: server-first-message = nonce "," salt "," iteration-count
        self._server_first = (
            b"r="
            + self._nonce
            + b",s="
            + base64.b64encode(verifier.salt)
            + b",i="
            + str(verifier.iterations).encode()
        )
        self._scram_phase = _ScramPhase.CLIENT_FINAL
        return Challenge(self._server_first)

    def _client_final(self, msg: bytes) -> Step:
        # RFC 5802 §7: client-final-message = channel-binding "," nonce ["," extensions] "," proof
        head, sep, proof_attr = msg.rpartition(b",p=")
        if not sep:
            raise SaslError("missing proof")
        attrs = _attrs(head)
        if len(attrs) < 2 or attrs[0][0] != b"c" or attrs[1][0] != b"r":
            raise SaslError("malformed client-final-message")
        try:
            cbind = base64.b64decode(attrs[0][1], validate=True)
            proof = base64.b64decode(proof_attr, validate=True)
        except (binascii.Error, ValueError):
            raise SaslError("bad base64 in client-final-message") from None
        if cbind != self._gs2_header:  # RFC 5802 §5.1: c= must repeat the gs2 header
            raise SaslError("channel binding mismatch")
        if not hmac.compare_digest(attrs[1][1], self._nonce):  # RFC 5802 §5.1: nonce must match
            raise SaslError("nonce mismatch")
        verifier = self._verifier
        assert verifier is not None
        auth_message = self._client_first_bare + b"," + self._server_first + b"," + head  # RFC 5802 §3
        client_signature = _hmac(verifier.stored_key, auth_message)
        if len(proof) != len(client_signature):
            return Rejected(self._authcid, "invalid proof")
        client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
        # RFC 5802 §3: verify H(ClientProof XOR ClientSignature) == StoredKey, in constant time
        if not hmac.compare_digest(_h(client_key), verifier.stored_key) or not self._known_user:
            return Rejected(self._authcid, "invalid proof")
        server_signature = _hmac(verifier.server_key, auth_message)
        self._scram_phase = _ScramPhase.FINAL_ACK
        return Challenge(b"v=" + base64.b64encode(server_signature))  # RFC 5802 §7: server-final


# Client helper (tests, smtpclient) -----------------------------------------


class ScramSha256Client:
    """Client side of SCRAM-SHA-256 (for tests and the outbound SMTP client).

    Usage: ``first()`` -> send; ``final(server_first)`` -> send;
    ``verify(server_final)`` raises :class:`SaslError` on a bad server signature.
    """

    def __init__(
        self, username: str, password: str | bytes, *, authzid: str = "", nonce: str | None = None
    ) -> None:
        self._user = saslprep(username)
        self._password = password
        self._authzid = authzid
        self._nonce = (nonce or secrets.token_urlsafe(SCRAM_NONCE_OCTETS)).encode("ascii")
        if not _valid_nonce(self._nonce):
            raise ValueError("bad nonce")
        self._gs2 = b"n," + (b"a=" + _encode_saslname(authzid) if authzid else b"") + b","
        self._first_bare = b"n=" + _encode_saslname(self._user) + b",r=" + self._nonce
        self._server_signature: bytes | None = None

    def first(self) -> bytes:
        """The client-first-message."""
        return self._gs2 + self._first_bare

    def final(self, server_first: bytes) -> bytes:
        """The client-final-message for the server-first-message."""
        attrs = dict(_attrs(server_first))
        nonce, salt_b64, iters = attrs.get(b"r"), attrs.get(b"s"), attrs.get(b"i")
        if nonce is None or salt_b64 is None or iters is None or b"m" in attrs:
            raise SaslError("malformed server-first-message")
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise SaslError("server nonce does not extend ours")
        if not iters.isdigit() or not MIN_SCRAM_ITERATIONS <= int(iters) <= MAX_SCRAM_ITERATIONS:
            raise SaslError("unacceptable iteration count")  # RFC 7677 §4
        try:
            salt = base64.b64decode(salt_b64, validate=True)
        except (binascii.Error, ValueError):
            raise SaslError("bad salt") from None
        salted = _salted_password(self._password, salt, int(iters))
        client_key = _hmac(salted, b"Client Key")
        stored_key = _h(client_key)
        without_proof = b"c=" + base64.b64encode(self._gs2) + b",r=" + nonce
        auth_message = self._first_bare + b"," + server_first + b"," + without_proof
        signature = _hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return without_proof + b",p=" + base64.b64encode(proof)

    def verify(self, server_final: bytes) -> None:
        """Check the server-final-message (mutual authentication, RFC 5802 §3)."""
        if self._server_signature is None:
            raise SaslError("final() not called")
        if server_final.startswith(b"e="):
            raise SaslError("server error: " + server_final[2:].decode("ascii", "replace"))
        expected = b"v=" + base64.b64encode(self._server_signature)
        if not hmac.compare_digest(server_final, expected):
            raise SaslError("bad server signature")


def create_mechanism(name: str, *, scram_fake_secret: bytes | None = None) -> Mechanism | None:
    """A fresh server mechanism for an AUTH argument, or ``None`` if unsupported."""
    upper = name.upper()  # RFC 4422 §3.1: mechanism names are case-insensitive on the wire
    if upper == PlainMechanism.name:
        return PlainMechanism()
    if upper == LoginMechanism.name:
        return LoginMechanism()
    if upper == ScramSha256Mechanism.name:
        return ScramSha256Mechanism(fake_secret=scram_fake_secret)
    return None
