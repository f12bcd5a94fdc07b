"""Store contract for Sieve scripts (store/sieve.py: RFC 5804 semantics) and once-only claims
(vacation, duplicate). Runs on both backends (the `store` fixture of test_contract)."""

from __future__ import annotations

import asyncio

import pytest

from mailhouse.store.api import SieveProblem, SieveScript, SieveScriptError, Store
from tests.store.test_contract import _account, store  # noqa: F401  (the fixture)

Q = {"max_scripts": 3, "max_size": 100}


async def _problem(coro: object) -> SieveProblem:
    with pytest.raises(SieveScriptError) as e:
        await coro  # type: ignore[misc]
    return e.value.problem


async def test_put_list_get_replace(store: Store) -> None:  # noqa: F811
    acc = await _account(store)
    assert await store.sieve_scripts(acc) == []
    await store.put_sieve_script(acc, "b", "keep;", now=1.0, **Q)
    await store.put_sieve_script(acc, "a", "discard; # é", now=1.0, **Q)
    assert await store.sieve_scripts(acc) == [SieveScript("a", False, 13), SieveScript("b", False, 5)]
    assert await store.get_sieve_script(acc, "a") == "discard; # é"
    await store.put_sieve_script(acc, "a", "stop;", now=2.0, **Q)
    assert await store.get_sieve_script(acc, "a") == "stop;"
    assert await _problem(store.get_sieve_script(acc, "zz")) is SieveProblem.NONEXISTENT
    other = await _account(store, "bob@example.org")
    assert await store.sieve_scripts(other) == []


async def test_quota(store: Store) -> None:  # noqa: F811
    acc = await _account(store)
    for n in "abc":
        await store.put_sieve_script(acc, n, "keep;", now=1.0, **Q)
    assert await _problem(store.put_sieve_script(acc, "d", "keep;", now=1.0, **Q)) is SieveProblem.MAXSCRIPTS
    assert await _problem(store.sieve_have_space(acc, "d", 1, 3, 100)) is SieveProblem.MAXSCRIPTS
    await store.sieve_have_space(acc, "a", 100, 3, 100)  # replacing adds no script
    await store.put_sieve_script(acc, "a", "x" * 100, now=1.0, **Q)
    assert await _problem(store.put_sieve_script(acc, "a", "x" * 101, now=1.0, **Q)) is SieveProblem.MAXSIZE
    assert await _problem(store.sieve_have_space(acc, "a", 101, 3, 100)) is SieveProblem.MAXSIZE


async def test_concurrent_puts_respect_max_scripts(store: Store) -> None:  # noqa: F811
    acc = await _account(store)
    res = await asyncio.gather(
        *(store.put_sieve_script(acc, f"s{i}", "keep;", now=1.0, **Q) for i in range(6)),
        return_exceptions=True,
    )
    assert sum(r is None for r in res) == 3
    assert len(await store.sieve_scripts(acc)) == 3


async def test_active_delete_rename(store: Store) -> None:  # noqa: F811
    acc = await _account(store)
    await store.put_sieve_script(acc, "a", "keep;", now=1.0, **Q)
    await store.put_sieve_script(acc, "b", "discard;", now=1.0, **Q)
    assert await store.active_sieve_script(acc) is None
    await store.set_active_sieve_script(acc, "a")
    await store.set_active_sieve_script(acc, "b")  # at most one active
    assert [s.active for s in await store.sieve_scripts(acc)] == [False, True]
    assert await store.active_sieve_script(acc) == ("b", "discard;")
    await store.put_sieve_script(acc, "b", "stop;", now=2.0, **Q)  # replacing keeps it active
    assert await store.active_sieve_script(acc) == ("b", "stop;")
    assert await _problem(store.set_active_sieve_script(acc, "zz")) is SieveProblem.NONEXISTENT
    assert await _problem(store.delete_sieve_script(acc, "b")) is SieveProblem.ACTIVE
    assert await _problem(store.delete_sieve_script(acc, "zz")) is SieveProblem.NONEXISTENT
    assert await _problem(store.rename_sieve_script(acc, "b", "a")) is SieveProblem.ALREADYEXISTS
    assert await _problem(store.rename_sieve_script(acc, "zz", "y")) is SieveProblem.NONEXISTENT
    await store.rename_sieve_script(acc, "b", "c")  # the active script stays active
    assert await store.active_sieve_script(acc) == ("c", "stop;")
    await store.set_active_sieve_script(acc, None)
    assert await store.active_sieve_script(acc) is None
    await store.delete_sieve_script(acc, "c")
    assert [s.name for s in await store.sieve_scripts(acc)] == ["a"]


async def test_claim_once_per_key_until_expiry(store: Store) -> None:  # noqa: F811
    res = await asyncio.gather(*(store.claim_once("vacation:1:x", 10.0, 20.0) for _ in range(5)))
    assert sorted(res) == [False, False, False, False, True]
    assert not await store.claim_once("vacation:1:x", 19.0, 29.0)
    assert await store.claim_once("vacation:1:y", 19.0, 29.0)
    assert await store.claim_once("vacation:1:x", 20.0, 30.0)  # expired: claimable again
