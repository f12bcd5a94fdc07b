"""Verify a store copy: compare two stores item by item (`mailhouse store verify`, and after `copy`).

Everything a client relies on is compared field by field — directory, usage counters, DKIM
keys, mailboxes (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ: RFC 9051 §2.3.1.1, RFC 7162 §3.1),
messages (UID, MODSEQ, flags, dates, size, EMAILID), the expunged-UID memory (RFC 7162 §3.2.10),
delivery keys, subscriptions, metadata, mailbox rights (RFC 4314), the queue, the rows of
`copy.ROW_TABLES` (spam learning, received reports) — and blobs by SHA-256 of their bytes.

Invariant: a copy is only reported good (`Report.ok`) when nothing differs; every difference
is listed (up to `MAX_REPORTED` per category).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from mailhouse.store.api import QueueEntry, Store, StoreError
from mailhouse.store.copy import BLOB_CONCURRENCY, ROW_TABLES, transfer_of

MAX_REPORTED = 20  # differences listed per category in the verification report


@dataclass
class Check:
    name: str
    source: int = 0
    destination: int = 0
    problems: list[str] = field(default_factory=list)

    def count(self, source: int, destination: int) -> None:
        self.source += source
        self.destination += destination

    def problem(self, text: str) -> None:
        self.problems.append(text)

    @property
    def ok(self) -> bool:
        return not self.problems and self.source == self.destination


@dataclass
class Report:
    checks: dict[str, Check] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> Check:
        if name not in self.checks:
            self.checks[name] = Check(name)
        return self.checks[name]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks.values())

    def render(self) -> str:
        lines = [f"{'':<16}{'source':>12}{'destination':>14}  result"]
        for c in self.checks.values():
            verdict = "ok" if c.ok else f"MISMATCH ({len(c.problems) or 'count'})"
            lines.append(f"{c.name:<16}{c.source:>12}{c.destination:>14}  {verdict}")
        for c in self.checks.values():
            for p in c.problems[:MAX_REPORTED]:
                lines.append(f"  {c.name}: {p}")
            if len(c.problems) > MAX_REPORTED:
                lines.append(f"  {c.name}: … {len(c.problems) - MAX_REPORTED} more")
        lines.extend(f"note: {n}" for n in self.notes)
        lines.append("verification: " + ("OK — every item is identical" if self.ok else "FAILED"))
        return "\n".join(lines)


def _cmp(check: Check, what: str, a: Any, b: Any) -> None:
    if a != b:
        check.problem(f"{what}: source {a!r} != destination {b!r}")


def _queue_view(e: QueueEntry) -> tuple[Any, ...]:
    return (
        e.sender,
        [(r.address, r.status, r.last_reply, r.notify, r.orcpt) for r in e.recipients],
        e.size,
        e.created,
        e.next_attempt,
        e.attempts,
        e.ret,
        e.envid,
        e.warned,
        e.extra,
    )


async def verify_store(
    src: Store, dst: Store, *, blob_map: dict[str, str] | None = None, blob_sha: dict[str, str] | None = None
) -> Report:
    """Compare SRC and DST item by item; blobs by SHA-256 (of SRC's bytes, or BLOB_SHA from the copy)."""
    s, d = transfer_of(src), transfer_of(dst)
    blob_map = blob_map or {}
    blob_sha = dict(blob_sha or {})
    rep = Report()
    sem = asyncio.Semaphore(BLOB_CONCURRENCY)

    async def sha(store: Store, key: str) -> str | None:
        async with sem:
            try:
                return hashlib.sha256(await store.blobs.get(key)).hexdigest()
            except (FileNotFoundError, StoreError):
                return None

    async def check_blob(key: str) -> None:
        chk = rep["blobs"]
        want = blob_sha.get(key) or await sha(src, key)
        got = await sha(dst, blob_map.get(key, key))
        chk.source += 1
        if got is not None:
            chk.destination += 1
        if want != got:
            chk.problem(f"blob {key}: {'missing' if got is None else 'bytes differ'} in destination")

    # directory
    sd, dd = await src.list_domains(), await dst.list_domains()
    rep["domains"].source, rep["domains"].destination = len(sd), len(dd)
    _cmp(
        rep["domains"],
        "domains",
        [(x.id, x.name, x.created) for x in sd],
        [(x.id, x.name, x.created) for x in dd],
    )
    sa, da = await src.list_accounts(), await dst.list_accounts()
    chk = rep["accounts"]
    chk.source, chk.destination = len(sa), len(da)
    dmap = {a.address: a for a in da}
    for a in sa:
        b = dmap.get(a.address)
        if b is None:
            chk.problem(f"{a.address} missing")
            continue
        _cmp(chk, f"{a.address} (id, hash, quota, admin, SCRAM keys, created)", a, b)
        su, du = await src.usage(a.id), await dst.usage(b.id)
        _cmp(chk, f"{a.address} usage", su, du)
        real = await s.raw_usage(a.id)
        if (su.messages, su.bytes) != real:
            rep.notes.append(
                f"{a.address}: the source's usage counters ({su.messages} messages, {su.bytes} bytes) differ from"
                f" its messages ({real[0]}, {real[1]}); copied as they were"
            )
    sal, dal = await src.list_aliases(), await dst.list_aliases()
    rep["aliases"].source, rep["aliases"].destination = len(sal), len(dal)
    _cmp(rep["aliases"], "aliases", sal, dal)
    chk = rep["dkim keys"]
    for dom in sd:
        ks, kd = await src.get_dkim_keys(dom.name), await dst.get_dkim_keys(dom.name)
        chk.count(len(ks), len(kd))
        _cmp(
            chk,
            f"{dom.name} keys",
            sorted(ks, key=lambda k: k.selector),
            sorted(kd, key=lambda k: k.selector),
        )

    # mailboxes, messages, blobs
    blob_keys: set[str] = set()
    for a in sa:
        b = dmap.get(a.address)
        if b is None:
            continue
        ms, md = await src.list_mailboxes(a.id), await dst.list_mailboxes(b.id)
        chk = rep["mailboxes"]
        chk.count(len(ms), len(md))
        mdmap = {m.name: m for m in md}
        for m in ms:
            n = mdmap.get(m.name)
            if n is None:
                chk.problem(f"{a.address}/{m.name} missing")
                continue
            # UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ: a change would make clients resync
            _cmp(chk, f"{a.address}/{m.name}", m, n)
            xs, xd = await s.expunged_rows(m.id), await d.expunged_rows(n.id)
            rep["expunged uids"].count(len(xs), len(xd))
            _cmp(rep["expunged uids"], f"{a.address}/{m.name}", xs, xd)
            msgs_s, msgs_d = await src.list_messages(m.id), await dst.list_messages(n.id)
            chk_m = rep["messages"]
            chk_m.count(len(msgs_s), len(msgs_d))
            by_uid = {r.uid: r for r in msgs_d}
            for r in msgs_s:
                q = by_uid.get(r.uid)
                if q is None:
                    chk_m.problem(f"{a.address}/{m.name} UID {r.uid} missing")
                    continue
                _cmp(
                    chk_m,
                    f"{a.address}/{m.name} UID {r.uid}",
                    replace(r, blob_key=blob_map.get(r.blob_key, r.blob_key)),
                    q,
                )
                blob_keys.add(r.blob_key)
            extra = set(by_uid) - {r.uid for r in msgs_s}
            if extra:
                chk_m.problem(f"{a.address}/{m.name}: UIDs {sorted(extra)[:10]} only in destination")
            ks_, kd_ = await s.delivery_keys(m.id), await d.delivery_keys(n.id)
            rep["delivery keys"].count(len(ks_), len(kd_))
            _cmp(rep["delivery keys"], f"{a.address}/{m.name}", ks_, kd_)
            acl_s, acl_d = await src.get_acl(m.id), await dst.get_acl(n.id)  # RFC 4314 rights
            rep["acl"].count(len(acl_s), len(acl_d))
            _cmp(rep["acl"], f"{a.address}/{m.name}", acl_s, acl_d)
        ss, sdst = await src.subscriptions(a.id), await dst.subscriptions(b.id)
        rep["subscriptions"].count(len(ss), len(sdst))
        _cmp(rep["subscriptions"], a.address, ss, sdst)
    for table, columns in ROW_TABLES.items():  # account ids are kept by the copy: compared per id
        chk = rep[table.replace("_", " ")]
        for owner in [a.id for a in sa] if columns[0] == "account_id" else [None]:
            rs, rd = await s.table_rows(table, columns, owner), await d.table_rows(table, columns, owner)
            chk.count(len(rs), len(rd))
            if rs != rd:
                diff = sorted(set(rs) ^ set(rd))
                chk.problem(f"{table}{'' if owner is None else f' account {owner}'}: {len(diff)} rows differ")
    ms_, md_ = await s.metadata_rows(), await d.metadata_rows()
    rep["metadata"].source, rep["metadata"].destination = len(ms_), len(md_)
    _cmp(rep["metadata"], "metadata", ms_, md_)

    # queue
    qs, qd = await src.list(), await dst.list()
    chk = rep["queue"]
    chk.source, chk.destination = len(qs), len(qd)
    qdmap = {e.id: e for e in qd}
    for e in qs:
        f = qdmap.get(e.id)
        if f is None:
            chk.problem(f"{e.id} missing")
            continue
        _cmp(chk, e.id, _queue_view(e), _queue_view(f))
        if blob_map.get(e.blob_key, e.blob_key) != f.blob_key:
            chk.problem(f"{e.id}: blob key {f.blob_key} is not the copy of {e.blob_key}")
        blob_keys.add(e.blob_key)

    keys = sorted(blob_keys)
    rep.checks.setdefault("blobs", Check("blobs"))
    for i in range(0, len(keys), 256):
        await asyncio.gather(*(check_blob(k) for k in keys[i : i + 256]))
    uv_s, uv_d = await s.uidvalidity_counter(), await d.uidvalidity_counter()
    if uv_d < uv_s:
        rep["uidvalidity"].problem(
            f"counter {uv_d} is below the source's {uv_s}: a new mailbox could reuse one"
        )
    return rep


__all__ = ["Check", "Report", "verify_store"]
