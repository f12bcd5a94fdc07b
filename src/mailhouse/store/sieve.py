"""Sieve script rules (RFC 5804 semantics over the store), written once over both backends, and
the once-only claims of delivery (vacation replies, RFC 5230 §4.1; redirects; failure notices).

Invariants:
- Script names are unique per account; at most one script per account is active (a partial
  unique index in both backends backs the rule up).
- Quotas (``max_scripts``, ``max_size``) are checked in the same transaction as the write, so two
  concurrent PUTSCRIPTs cannot both slip under ``max_scripts``.
- Replacing a script keeps its active flag (RFC 5804 §2.6: PUTSCRIPT on the active script
  changes what runs); renaming the active script keeps it active (§2.11.1).
- The active script cannot be deleted (§2.10: ``NO (ACTIVE)``).
- ``claim_once`` is serialised on its key (``lock_limit``): of concurrent callers exactly one
  sees no unexpired mark and sets it, on every worker and node.
"""

from __future__ import annotations

from mailhouse.store.api import SieveProblem, SieveScript, SieveScriptError
from mailhouse.store.backend import Tx


async def scripts(tx: Tx, account_id: int) -> list[SieveScript]:
    return [SieveScript(n, a, size) for n, a, size in await tx.sieve_script_rows(account_id)]


async def get_script(tx: Tx, account_id: int, name: str) -> str:
    content = await tx.sieve_script_content(account_id, name)
    if content is None:
        raise SieveScriptError(SieveProblem.NONEXISTENT, name)  # RFC 5804 §2.9
    return content


async def have_space(tx: Tx, account_id: int, name: str, size: int, max_scripts: int, max_size: int) -> None:
    if size > max_size:
        raise SieveScriptError(SieveProblem.MAXSIZE, name)  # RFC 5804 §1.3 QUOTA/MAXSIZE
    rows = await tx.sieve_script_rows(account_id)
    # RFC 5804 §1.3 QUOTA/MAXSCRIPTS: replacing an existing script adds none
    if all(n != name for n, _a, _s in rows) and len(rows) >= max_scripts:
        raise SieveScriptError(SieveProblem.MAXSCRIPTS, name)


async def put_script(
    tx: Tx, account_id: int, name: str, content: str, max_scripts: int, max_size: int, now: float
) -> None:
    size = len(content.encode("utf-8"))
    await tx.lock_limit(f"sieve:{account_id}")  # the count and the insert in one critical section
    await have_space(tx, account_id, name, size, max_scripts, max_size)
    await tx.upsert_sieve_script(account_id, name, content, size, now)


async def set_active(tx: Tx, account_id: int, name: str | None) -> None:
    # RFC 5804 §2.8: SETACTIVE "" deactivates; a name that does not exist is NO (NONEXISTENT)
    if name is not None and await tx.sieve_script_content(account_id, name) is None:
        raise SieveScriptError(SieveProblem.NONEXISTENT, name)
    await tx.set_sieve_active(account_id, name)


async def delete_script(tx: Tx, account_id: int, name: str) -> None:
    active = await tx.sieve_active_row(account_id)
    if active is not None and active[0] == name:
        raise SieveScriptError(SieveProblem.ACTIVE, name)  # RFC 5804 §2.10
    if not await tx.delete_sieve_script(account_id, name):
        raise SieveScriptError(SieveProblem.NONEXISTENT, name)


async def rename_script(tx: Tx, account_id: int, old: str, new: str) -> None:
    if await tx.sieve_script_content(account_id, old) is None:
        raise SieveScriptError(SieveProblem.NONEXISTENT, old)  # RFC 5804 §2.11.1
    if old == new:
        return
    if await tx.sieve_script_content(account_id, new) is not None:
        raise SieveScriptError(SieveProblem.ALREADYEXISTS, new)  # RFC 5804 §2.11.1
    await tx.rename_sieve_script(account_id, old, new)  # the active flag moves with the row


async def claim_once(tx: Tx, key: str, now: float, expires: float) -> bool:
    await tx.lock_limit(key)
    m = await tx.mark(key)
    if m is not None and m.expires > now:
        return False
    await tx.upsert_mark(key, str(now), expires)
    return True
