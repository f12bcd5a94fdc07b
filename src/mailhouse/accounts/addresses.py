"""Address and domain syntax for the directory (admin CLI, web admin).

Uses `email-validator` (syntax, no DNS) and IDNA 2008 via the `idna` codec it brings;
domains are stored lower-case in their A-label (xn--) form, local parts as given
(lower-cased: Mailhouse treats local parts case-insensitively, as Postfix and Dovecot do).
"""

from __future__ import annotations

import email_validator

MAX_ADDRESS = 254  # RFC 5321 §4.5.3.1.3 path ≤ 256 incl. <>


class AddressError(ValueError):
    pass


def normalize_domain(domain: str) -> str:
    d = domain.strip().rstrip(".").lower()
    if not d or len(d) > 253:
        raise AddressError(f"invalid domain {domain!r}")
    try:
        ascii_d = d.encode("idna").decode("ascii") if not d.isascii() else d
        email_validator.validate_email(f"x@{ascii_d}", check_deliverability=False, test_environment=True)
    except (UnicodeError, email_validator.EmailNotValidError) as e:
        raise AddressError(f"invalid domain {domain!r}: {e}") from None
    return ascii_d


def normalize_address(address: str) -> str:
    """Validate and normalise `local@domain`; raises AddressError with the reason."""
    if len(address) > MAX_ADDRESS or "@" not in address:
        raise AddressError(f"invalid address {address!r}: must be local@domain")
    local, _, domain = address.strip().rpartition("@")
    domain = normalize_domain(domain)
    try:
        email_validator.validate_email(
            f"{local}@{domain}", check_deliverability=False, allow_smtputf8=True, test_environment=True
        )
    except email_validator.EmailNotValidError as e:
        raise AddressError(f"invalid address {address!r}: {e}") from None
    return f"{local.lower()}@{domain}"


def split(address: str) -> tuple[str, str]:
    local, _, domain = address.rpartition("@")
    return local, domain.lower()
