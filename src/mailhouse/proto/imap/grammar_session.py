"""IMAP grammar: connection and authentication commands.

CAPABILITY, NOOP, LOGOUT, STARTTLS, IDLE, CHECK, CLOSE, UNSELECT, NAMESPACE, UNAUTHENTICATE
(argument-less: RFC 9051 §6.1, §6.2.1, §6.3.10, §6.3.13, §6.4.2; RFC 3501 §6.4.1; RFC 8437),
AUTHENTICATE (RFC 9051 §6.2.2, SASL-IR RFC 4959 §3), LOGIN (RFC 9051 §6.2.3), ENABLE
(RFC 5161 §3.1), ID (RFC 2971 §3.1) and COMPRESS (RFC 4978 §3).

The ``parse_*`` functions follow the conventions of :mod:`~mailhouse.proto.imap.grammar`
(signature, pure syntax, refusals).

No recursion: every parenthesised construct here has a fixed grammar depth.
"""

from __future__ import annotations

import re

from mailhouse.proto.imap.commands import (
    Authenticate,
    Compress,
    Enable,
    Id,
    Login,
    NoArgs,
)
from mailhouse.proto.imap.reader import Reader

# RFC 2971 §3.3: a client MUST NOT send more than 30 field-value pairs.
MAX_ID_PARAMS = 30
# RFC 4959 §3: initial-response = base64 / "="
_INITIAL_RESPONSE = re.compile(rb"[A-Za-z0-9+/]+=*|=")


def parse_noargs(r: Reader, uid: bool) -> NoArgs:
    return NoArgs()


def parse_authenticate(r: Reader, uid: bool) -> Authenticate:
    r.sp()
    mech = r.atom().upper()
    ir: bytes | None = None
    if not r.eol():
        r.sp()  # RFC 4959 §3: initial-response = base64 / "="
        tok = r.match(_INITIAL_RESPONSE)
        if tok is None:
            r.error("Invalid initial response")
        ir = tok
    return Authenticate(mech, ir)


def parse_login(r: Reader, uid: bool) -> Login:
    r.sp()
    user = r.astring()
    r.sp()
    return Login(user, r.astring())


def parse_enable(r: Reader, uid: bool) -> Enable:
    caps: list[str] = []
    while not r.eol():  # RFC 5161 §4: enable = "ENABLE" 1*(SP capability)
        r.sp()
        caps.append(r.atom().upper())
    if not caps:
        r.error("ENABLE needs a capability")
    return Enable(tuple(caps))


def parse_id(r: Reader, uid: bool) -> Id:
    r.sp()
    if r.try_take_ci(b"NIL"):  # RFC 2971 §4: id_params_list ::= "(" ... ")" / nil
        return Id(None)
    r.expect(b"(")
    params: list[tuple[bytes, bytes | None]] = []
    while not r.try_take(b")"):
        if params:
            r.sp()
        if len(params) >= MAX_ID_PARAMS:  # RFC 2971 §3.3
            r.error("Too many ID parameters")
        key = r.string()
        r.sp()
        params.append((key, r.nstring()))
    return Id(tuple(params))


def parse_compress(r: Reader, uid: bool) -> Compress:
    r.sp()
    return Compress(r.atom().upper())
