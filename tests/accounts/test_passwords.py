"""accounts/passwords.py: the dummy hash that keeps unknown-user logins as slow as known ones."""

from __future__ import annotations

from argon2 import extract_parameters

from mailhouse.accounts import passwords


def test_dummy_hash_has_the_hashers_parameters() -> None:
    # a login for an unknown user verifies against _DUMMY_HASH: with other parameters (memory,
    # time, lanes) than real hashes it would take a different time and tell users apart
    real = extract_parameters(passwords.hash_password("secret"))
    assert extract_parameters(passwords._DUMMY_HASH) == real


def test_unknown_user_never_verifies() -> None:
    assert passwords.verify_password(None, "mailhouse-dummy-password") is False
    h = passwords.hash_password("right")
    assert passwords.verify_password(h, "right") and not passwords.verify_password(h, "wrong")
