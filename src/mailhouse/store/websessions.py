"""Webmail session and per-user settings rules, written once over both backends.

Invariants:
- A session is found only before its expiry; creating one drops the account's expired ones,
  so the table stays bounded by the live sessions (no sweeper needed).
- Setting an account's password ends all its sessions in the same transaction
  (`directory.set_password`), removing the account removes them (ON DELETE CASCADE): every
  node sees the end at its next request, since each request reads the session row.
"""

from __future__ import annotations

from mailhouse.store.api import WebSession
from mailhouse.store.backend import Tx


async def create(tx: Tx, session: WebSession) -> None:
    await tx.delete_web_sessions(session.account_id, "", session.created)
    await tx.insert_web_session(session)


async def get(tx: Tx, id_hash: str, now: float) -> WebSession | None:
    s = await tx.web_session(id_hash)
    return s if s is not None and s.expires > now else None


async def live(tx: Tx, account_id: int, now: float) -> list[WebSession]:
    return [s for s in await tx.web_sessions(account_id) if s.expires > now]
