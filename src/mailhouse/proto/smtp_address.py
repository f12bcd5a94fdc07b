"""SMTP envelope address parsing and relay-trick detection (sans-IO, stdlib only).

Purpose
    Parse the ``Reverse-path`` / ``Forward-path`` of ``MAIL FROM`` and ``RCPT TO``
    exactly as RFC 5321 §4.1.2 defines it, and name every address form that has
    historically been used to turn a mail server into an open relay.

RFCs
    * RFC 5321 §4.1.2 (Path, Mailbox, Local-part, Domain, address-literal),
      §4.1.3 (address literals), §4.1.1.3 and Appendix C (source routes: accept,
      strip, report), §4.5.3.1 (size limits).
    * RFC 6531 §3.3 (SMTPUTF8: UTF-8 in local part and U-labels in domain).

Invariants
    * Input is ``bytes`` straight from the wire; nothing is decoded before the
      SMTPUTF8 decision: without SMTPUTF8 any octet >= 0x80 is a syntax error.
    * ``Address.domain`` is lower-cased in ASCII only (U-labels are kept as given)
      and never carries the trailing dot; ``trailing_dot`` records that it was there.
    * A source route is parsed and dropped (RFC 5321 §C: "SHOULD ... ignore the
      route"), but ``had_source_route`` / ``source_route`` keep it visible, because
      ``@ours:user@other`` is a relay trick.
    * ``relay_tricks`` only names what it sees; deciding whether the destination
      is local (and answering ``554 5.7.1``) is the server adapter's policy.

Why hand-written
    ``email.utils`` / ``email-validator`` parse RFC 5322 addresses (comments,
    display names, obsolete syntax) and normalise them away; an MTA needs the
    stricter RFC 5321 grammar *and* the raw oddities (quoting, routes, trailing
    dots, percent and bang forms) to stay visible for relay control.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

# RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the angle brackets.
MAX_PATH_OCTETS = 256
# RFC 5321 §4.5.3.1.2: a domain is at most 255 octets.
MAX_DOMAIN_OCTETS = 255
# RFC 1035 §2.3.4: a DNS label is at most 63 octets.
MAX_LABEL_OCTETS = 63
# RFC 5321 §4.5.3.1.1 says 64 octets for the local part; like Postfix we do not
# enforce it, because VERP/SRS/BATV addresses routinely exceed it.

# RFC 5322 §3.2.3 atext (used by RFC 5321 Atom).
_ATEXT = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")
_LETDIG = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
# RFC 5321 §4.1.3: dcontent = %d33-90 / %d94-126
_DCONTENT = frozenset(range(33, 91)) | frozenset(range(94, 127))
_LDH_TAG = _LETDIG | frozenset(b"-")


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed RFC 5321 mailbox (route removed)."""

    local_part: str  # unquoted: quotes removed, quoted-pairs resolved
    domain: str  # ASCII-lower-cased, no trailing dot; "[1.2.3.4]" for literals; "" for bare postmaster
    is_quoted: bool
    had_source_route: bool
    raw: bytes  # the path as received, without the angle brackets, route included
    trailing_dot: bool = False
    is_literal: bool = False
    source_route: tuple[str, ...] = ()

    @property
    def mailbox(self) -> str:
        """The mailbox re-serialised canonically (quoted only if it must be)."""
        if self.is_quoted and not _is_dot_string(self.local_part):
            local = '"' + self.local_part.replace("\\", "\\\\").replace('"', '\\"') + '"'
        else:
            local = self.local_part
        return f"{local}@{self.domain}" if self.domain else local


def _is_dot_string(s: str) -> bool:
    if not s:
        return False
    for atom in s.split("."):
        if not atom or any(not (ord(c) >= 0x80 or ord(c) in _ATEXT) for c in atom):
            return False
    return True


def _decode(raw: bytes, smtputf8: bool) -> str | None:
    if not smtputf8:
        if any(b >= 0x80 for b in raw):
            return None  # RFC 6531 §3.3: non-ASCII only with SMTPUTF8
        return raw.decode("ascii")
    try:
        return raw.decode("utf-8")  # RFC 6531 §3.3: UTF8-non-ascii must be valid UTF-8
    except UnicodeDecodeError:
        return None


def _parse_domain(s: str) -> tuple[str, bool] | None:
    """RFC 5321 §4.1.2 Domain (plus RFC 6531 U-labels); returns (domain, trailing_dot)."""
    trailing = s.endswith(".")
    if trailing:
        s = s[:-1]
    if not s or len(s.encode("utf-8")) > MAX_DOMAIN_OCTETS:  # RFC 5321 §4.5.3.1.2
        return None
    for label in s.split("."):
        raw = label.encode("utf-8")
        if not raw or len(raw) > MAX_LABEL_OCTETS:  # RFC 1035 §2.3.4
            return None
        # RFC 5321 §4.1.2: sub-domain = Let-dig [Ldh-str]; RFC 6531 adds U-labels.
        if raw[0] == ord("-") or raw[-1] == ord("-"):
            return None
        if any(not (b >= 0x80 or b in _LETDIG or b == ord("-")) for b in raw):
            return None
    # IDNA domains: keep as given, lower-case ASCII only.
    lowered = s.encode("utf-8").lower().decode("utf-8")
    return lowered, trailing


def _parse_literal(s: str) -> str | None:
    """RFC 5321 §4.1.3 address-literal; returns the normalised "[...]" form."""
    inner = s[1:-1]
    if inner[:5].lower() == "ipv6:":
        try:
            return "[IPv6:" + str(ipaddress.IPv6Address(inner[5:])) + "]"
        except ValueError:
            return None
    if ":" in inner:
        # RFC 5321 §4.1.3: General-address-literal = Standardized-tag ":" 1*dcontent
        tag, _, content = inner.partition(":")
        if not tag or any(ord(c) not in _LDH_TAG for c in tag) or tag[-1] == "-":
            return None
        if not content or any(ord(c) not in _DCONTENT for c in content):
            return None
        return "[" + inner + "]"
    try:
        return "[" + str(ipaddress.IPv4Address(inner)) + "]"
    except ValueError:
        return None


def _parse_local(s: str) -> tuple[str, bool, int] | None:
    """Parse Local-part at the start of *s*; returns (unquoted, is_quoted, end index)."""
    if s.startswith('"'):
        # RFC 5321 §4.1.2: Quoted-string = DQUOTE *QcontentSMTP DQUOTE
        out: list[str] = []
        i = 1
        while i < len(s):
            c = s[i]
            if c == "\\":
                # quoted-pairSMTP = %d92 %d32-126
                if i + 1 >= len(s) or not (32 <= ord(s[i + 1]) <= 126):
                    return None
                out.append(s[i + 1])
                i += 2
                continue
            if c == '"':
                return "".join(out), True, i + 1
            # qtextSMTP = %d32-33 / %d35-91 / %d93-126, RFC 6531: UTF8-non-ascii
            if not (32 <= ord(c) <= 126 or ord(c) >= 0x80):
                return None
            out.append(c)
            i += 1
        return None
    end = s.rfind("@")
    if end <= 0:
        return None
    local = s[:end]
    if not _is_dot_string(local):  # RFC 5321 §4.1.2: Dot-string = Atom *("." Atom)
        return None
    return local, False, end


def parse_path(raw: bytes, *, smtputf8: bool) -> Address | None:
    """Parse an RFC 5321 §4.1.2 Path; *raw* may carry its angle brackets or not.

    Returns ``None`` on any syntax error.  The null path ``<>`` is not an address
    and returns ``None`` too; callers handle it first.  A domain-less
    ``postmaster`` is accepted (RFC 5321 §4.1.1.3) with ``domain == ""``.
    """
    if len(raw) > MAX_PATH_OCTETS:  # RFC 5321 §4.5.3.1.3
        return None
    inner = raw[1:-1] if raw.startswith(b"<") and raw.endswith(b">") and len(raw) >= 2 else raw
    if b"<" in inner[:1] or not inner:
        return None
    text = _decode(inner, smtputf8)
    if text is None or any(ord(c) < 32 or ord(c) == 127 for c in text):
        return None
    route: tuple[str, ...] = ()
    rest = text
    if rest.startswith("@"):
        # RFC 5321 §4.1.2: A-d-l = At-domain *( "," At-domain ); §C: strip the route
        colon = rest.find(":")
        if colon < 0:
            return None
        hops = []
        for hop in rest[:colon].split(","):
            if not hop.startswith("@"):
                return None
            dom = _parse_domain(hop[1:])
            if dom is None or dom[1]:
                return None
            hops.append(dom[0])
        route = tuple(hops)
        rest = rest[colon + 1 :]
    if rest.lower() == "postmaster" and not route:
        # RFC 5321 §4.1.1.3: "<Postmaster>" without a domain must be accepted
        return Address(rest, "", False, False, inner)
    parsed_local = _parse_local(rest)
    if parsed_local is None:
        return None
    local, quoted, end = parsed_local
    if rest[end : end + 1] != "@":
        return None
    dom_text = rest[end + 1 :]
    if dom_text.startswith("[") and dom_text.endswith("]"):
        literal = _parse_literal(dom_text)
        if literal is None:
            return None
        return Address(local, literal, quoted, bool(route), inner, False, True, route)
    dom = _parse_domain(dom_text)
    if dom is None:
        return None
    return Address(local, dom[0], quoted, bool(route), inner, dom[1], False, route)


def relay_tricks(addr: Address) -> str | None:
    """Name the relay trick *addr* uses, or ``None`` for a plain ``user@domain``.

    The adapter answers ``554 5.7.1`` when this returns a name and the
    destination is not a local domain (never an open relay, DESIGN.md).
    """
    if addr.had_source_route:
        return "source-route"  # RFC 5321 §C: @ours:user@other
    if addr.is_quoted and any(c in addr.local_part for c in "@%!"):
        return "quoted-local-part"  # "user@other"@ours
    if "%" in addr.local_part:
        return "percent-hack"  # user%other@ours (RFC 1123 §5.2.16 legacy)
    if "!" in addr.local_part:
        return "bang-path"  # other!user@ours (UUCP)
    if addr.trailing_dot:
        return "trailing-dot"  # user@ours.
    if addr.is_literal:
        return "address-literal"  # user@[1.2.3.4]
    return None
