"""The outbound MTA: durable queue hand-off, delivery passes, retries, DSNs.

One `QueueRunner` per node (built in `services.build` from the config, the store, the
resolver and the node's local delivery). The accept path (`delivery.accept`) calls
`enqueue` and `bounce_local`; `app.run_node` calls `start`/`stop`. A background loop
claims due entries with a lease (`store.claim_due`, so several processes or nodes can
share one queue), groups their open recipients by destination domain and delivers each
group concurrently: hosted domains through the local delivery it was given (any
`LocalDeliverer`), others over SMTP via `queue.routing` and `smtpclient.client`. Mail
queued by this process while it has room for another pass is written already leased to it
and delivered at once (no claim, and the message comes from memory, not the store); the
loop picks up everything else. Recipient statuses are the constants of `queue.status`.

RFCs: RFC 5321 §4.5.4 (retry strategy), §5 (MX), §6.1 (bounces, null sender),
RFC 3461/3464 (DSN), RFC 7505 (null MX).

Invariants:
- `enqueue` returns only when the blob and the queue row are durable (the 250 waits).
- Recipient statuses are mutated in place during a pass and persisted once at its end
  by `store.update` (which also releases the lease); on cancellation what was learnt so
  far is persisted too.
- Idempotency: local deliveries use the delivery key `<queue id>:<account id>`, so a
  crash between delivery and update never makes a second copy; DSNs get a queue id
  derived from (entry, kind, attempt), so a repeated pass does not queue a second DSN.
  Remote SMTP cannot be made idempotent: if we crash after the remote `250` and before
  the update, the next pass sends the message again (RFC 5321 §4.5.4.1 accepts this;
  RFC 1047 describes the window). Statuses are persisted right after each pass to keep
  the window short.
- Never a DSN to the null sender (RFC 5321 §6.1), so bounces cannot loop.
- Leases are short (`LEASE_SECONDS`) and renewed while passes run: every `HEARTBEAT` the loop
  extends all of this runner's leases in one store statement. Owner ids name the node across
  restarts (`queue.owner`); `start` releases the leases of the node's earlier incarnations at
  once, so a node killed with SIGKILL and restarted resumes its in-flight mail immediately, and
  another node takes it over within `LEASE_SECONDS` if it does not come back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from typing import Protocol

from mailhouse import metrics
from mailhouse import tls as tls_mod
from mailhouse.accounts.resolve import Resolver
from mailhouse.config import Config, Dnssec
from mailhouse.log import ConnLogger, safe
from mailhouse.queue import requiretls, retry
from mailhouse.queue.dane import Dane, DanePolicy, DaneState, TlsaOutcome, outcome
from mailhouse.queue.dsn import MAX_RETURNED, RecipientReport, build_dsn, status_of, wanted
from mailhouse.queue.ids import new_queue_id
from mailhouse.queue.mtasts import Mode, MtaSts
from mailhouse.queue.owner import INCARNATION, Owner, node_id
from mailhouse.queue.routing import Router, RoutingError
from mailhouse.queue.status import DEFERRED, DELIVERED, FAILED, OPEN
from mailhouse.smtpclient import tlsrpt
from mailhouse.smtpclient.client import (
    ConnectionPool,
    DaneFailed,
    RcptReply,
    SmtpConnection,
    SmtpError,
    StaleConnection,
)
from mailhouse.smtpclient.dane import Failure
from mailhouse.store.api import Account, NotFound, QueueEntry, QueueRecipient, Store
from mailhouse.store.spool import SpooledMessage

#: the result label of mailhouse_deliveries_total by recipient status after a pass
_DELIVERY_RESULTS = {DELIVERED: "delivered", FAILED: "bounced", DEFERRED: "deferred"}

log = logging.getLogger(__name__)
QueueLog = logging.Logger | logging.LoggerAdapter[logging.Logger]

POLL_INTERVAL = 0.5  # seconds between store polls (picks up `mailhouse queue retry` and other nodes' mail)
# A pass may outlast a lease (RFC 5321 §4.5.3.2 timeouts total up to ~15 min per host): the
# heartbeat renews it, so the lease only bounds how long a dead node's entries stay held.
LEASE_SECONDS = 60.0
HEARTBEAT = LEASE_SECONDS / 3  # seconds between renewals: two may fail before a lease expires
# entries delivered at once by this process (Postfix qmgr_message_active_limit is 20000)
MAX_IN_FLIGHT = 100
STOP_GRACE = 10.0  # seconds in-flight passes get to finish on shutdown
# Messages this process just queued, kept for its first delivery pass (saves reading the blob
# back from the store); oldest dropped first beyond this many octets (entries another
# process claimed are simply never used).
RECENT_BYTES = 32 * 1024 * 1024
DEFER_ON_ERROR = 60.0  # retry delay after an internal error


def dsn_id(entry_id: str, kind: str, attempt: int) -> str:
    """Deterministic queue id of the DSN a pass generates (idempotent re-runs)."""
    return hashlib.sha256(f"{entry_id}:{kind}:{attempt}".encode()).hexdigest()[:12].upper()


def _dane_usable(dane: dict[str, DanePolicy], mx: str) -> bool:
    d = dane.get(mx)
    return d is not None and d.state is DaneState.USABLE


class LocalOutcome(Protocol):
    """What the queue needs to know of a local delivery: who was over quota, whose Sieve rejected it."""

    @property
    def over_quota(self) -> Sequence[Account]: ...
    @property
    def rejected(self) -> Sequence[tuple[Account, str]]: ...


class LocalDeliverer(Protocol):
    """Local delivery as the queue uses it (`delivery.local.LocalDelivery`; idempotent per queue id)."""

    async def deliver(
        self, data: bytes, sender: str, accounts: list[Account], queue_id: str
    ) -> LocalOutcome: ...


class QueueRunner:
    """The node's outbound queue. CFG is read at use time (SIGHUP reloads the queue settings);
    CLOCK is seconds since the epoch (injectable for tests)."""

    def __init__(
        self,
        cfg: Config,
        store: Store,
        resolver: Resolver,
        local: LocalDeliverer,
        clock: Callable[[], float] = time.time,
        incarnation: str = INCARNATION,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.resolver = resolver
        self.local = local
        self.clock = clock
        self.router = Router(cfg)
        verify_ctx = tls_mod.client_context(verify=True, ca_file=cfg.tls_ca_file)
        self.pool = ConnectionPool(
            cfg.hostname,
            tls_mod.client_context(),
            verify_context=verify_ctx,
            source_addresses=cfg.source_addresses,
        )
        # RFC 8461: MX delivery follows the destination's MTA-STS policy (cached in the store)
        self.mtasts: MtaSts | None = None
        if cfg.mta_sts_enabled:
            self.mtasts = MtaSts(
                store,
                self.router.txt,
                self.router.addresses,
                verify_ctx,
                resolve=cfg.mta_sts_resolve,
                fetch_timeout=cfg.mta_sts_fetch_timeout,
                clock=clock,
            )
        # RFC 7672: DANE for MX hosts with secure TLSA records ([dns] dnssec = "resolver"/"validate")
        self.dane = (
            Dane(self.router.tlsa_resolver, validator=self.router.validator)
            if cfg.dns_dnssec is not Dnssec.OFF
            else None
        )
        self.owner_id = Owner(node_id(cfg.hostname, cfg.data_dir), incarnation, os.getpid())
        self.owner = str(self.owner_id)
        self._next_beat = 0.0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._recent: OrderedDict[str, bytes] = OrderedDict()  # blob key → message (RECENT_BYTES)
        self._recent_bytes = 0

    def _remember(self, blob_key: str, message: bytes) -> None:
        if not blob_key or len(message) > RECENT_BYTES // 4:
            return
        self._recent[blob_key] = message
        self._recent_bytes += len(message)
        while self._recent_bytes > RECENT_BYTES:
            _, old = self._recent.popitem(last=False)
            self._recent_bytes -= len(old)

    async def _message(self, blob_key: str) -> bytes:
        """The queued message: from memory on the first pass in the process that queued it."""
        data = self._recent.pop(blob_key, None)
        if data is not None:
            self._recent_bytes -= len(data)
            return data
        return await self.store.blobs.get(blob_key)

    # ---------------------------------------------------------------- API for the accept path
    async def enqueue(
        self,
        queue_id: str,
        sender: str,
        remote: list[tuple[str, dict[str, str | None]]],
        message: bytes | SpooledMessage,
        mail_params: dict[str, str | None],
    ) -> None:
        """Durably queue MESSAGE for the remote recipients (blob fsynced, row committed).

        A spooled message on disk becomes its blob through the store's ``put_file``, never whole
        in memory; only messages already in memory are kept for the first delivery pass."""
        size = message.size if isinstance(message, SpooledMessage) else len(message)
        data: bytes | None = message if isinstance(message, bytes) else None
        if isinstance(message, SpooledMessage) and message.in_memory:
            data = message.to_bytes()
        now = self.clock()
        rcpts = [
            QueueRecipient(addr, notify=params.get("NOTIFY") or "", orcpt=params.get("ORCPT") or "")
            for addr, params in remote
        ]
        extra: dict[str, str] = {}
        if "SMTPUTF8" in mail_params:
            extra["smtputf8"] = "1"
        if mail_params.get("BODY"):
            extra["body"] = str(mail_params["BODY"])
        if "REQUIRETLS" in mail_params:
            extra[requiretls.FLAG] = "1"  # RFC 8689 §4.2: kept with the message to every hop
        # Hand-off: while this process has room for another pass, the row is written already
        # leased to it and its pass starts at once, with no claim transaction (a crash leaves
        # it leased until the node restarts or LEASE_SECONDS pass, as a crash during any pass does).
        direct = self._task is not None and not self._stopping and len(self._inflight) < MAX_IN_FLIGHT
        entry = QueueEntry(
            id=queue_id,
            sender=sender,
            recipients=rcpts,
            blob_key="",  # set by the store, which keeps the message with the row
            size=size,
            created=now,
            next_attempt=now,
            ret=mail_params.get("RET") or "",
            envid=mail_params.get("ENVID") or "",
            extra=extra,
            lease_owner=self.owner if direct else "",
            lease_until=now + LEASE_SECONDS if direct else 0.0,
        )
        await self.store.enqueue(entry, data if data is not None else message)
        log.info("[%s] queued from=<%s> nrcpt=%d size=%d", queue_id, safe(sender), len(rcpts), size)
        if direct:
            self._start_pass(entry, data)
        else:
            if data is not None:
                self._remember(entry.blob_key, data)
            self.wake()

    def _start_pass(self, entry: QueueEntry, message: bytes | None = None) -> None:
        if message is not None:
            self._remember(entry.blob_key, message)
        task = asyncio.create_task(self._run_entry(entry), name=f"queue-{entry.id}")
        self._inflight[entry.id] = task
        task.add_done_callback(self._done)

    async def bounce_local(
        self, message: bytes | SpooledMessage, sender: str, failed: list[str], reason: str
    ) -> None:
        """A DSN to SENDER for local recipients that failed after acceptance (over quota)."""
        if not sender:
            return  # RFC 5321 §6.1: never a bounce to the null sender
        ret = ""
        if isinstance(message, SpooledMessage):
            if message.size > MAX_RETURNED:  # RFC 3461 §4.3: too big to return: headers only
                message, ret = message.head, "HDRS"
            else:
                message = await asyncio.to_thread(message.to_bytes)
        now = self.clock()
        qid = new_queue_id()
        reports = [
            RecipientReport(a, "failed", status_of(reason, True), reason, last_attempt=now) for a in failed
        ]
        dsn = build_dsn(
            reporting_mta=self.cfg.hostname,
            to=sender,
            original=message,
            reports=reports,
            queue_id=qid,
            arrival=now,
            ret=ret,
        )
        await self._send_dsn(qid, sender, dsn)

    # ---------------------------------------------------------------- lifecycle
    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    @property
    def alive(self) -> bool:
        """The runner loop runs (readiness, web/health.py)."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._stopping = False
        await self.reclaim_previous()
        self._next_beat = self.clock() + HEARTBEAT
        self._task = asyncio.create_task(self._loop(), name="queue-runner")
        log.info("queue runner started (owner %s)", self.owner)

    async def stop(self) -> None:
        self._stopping = True
        self.wake()
        if self._task is not None:
            await self._task
            self._task = None
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight.values()), timeout=STOP_GRACE)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        await self.pool.close()

    async def reclaim_previous(self) -> int:
        """Release the leases this node's earlier incarnations still hold (they died with them)."""
        try:
            n = await self.store.release_previous(self.owner_id.node_prefix, self.owner_id.incarnation_prefix)
        except Exception:
            log.exception("queue runner: could not release the leases of earlier incarnations")
            return 0
        if n:
            log.info("queue runner: released %d entries leased by earlier incarnations of this node", n)
        return n

    async def heartbeat(self) -> int:
        """Renew the leases of the entries this runner is delivering (one store statement)."""
        now = self.clock()
        self._next_beat = now + HEARTBEAT
        return await self.store.renew_leases(self.owner, now + LEASE_SECONDS)

    async def _loop(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            self._wake.clear()
            try:
                if self._inflight and self.clock() >= self._next_beat:
                    await self.heartbeat()
            except Exception:
                log.exception("queue runner: lease renewal failed")
            try:
                free = MAX_IN_FLIGHT - len(self._inflight)
                if free > 0:
                    for entry in await self.store.claim_due(self.clock(), self.owner, LEASE_SECONDS, free):
                        self._start_pass(entry)
                await self.pool.expire()
            except Exception:
                log.exception("queue runner: poll failed")
            try:
                await asyncio.wait_for(self._wake.wait(), POLL_INTERVAL)
            except TimeoutError:
                pass

    def _done(self, task: asyncio.Task[None]) -> None:
        for k, t in list(self._inflight.items()):
            if t is task:
                del self._inflight[k]

    async def _run_entry(self, entry: QueueEntry) -> None:
        qlog = ConnLogger(log, {"cid": entry.id})
        try:
            await self.process(entry, qlog)
        except asyncio.CancelledError:
            # shutting down: keep what this pass learnt and release the lease
            entry.next_attempt = self.clock()
            await asyncio.shield(self._safe_update(entry))
            raise
        except Exception:
            qlog.exception("delivery pass failed")
            entry.next_attempt = self.clock() + DEFER_ON_ERROR
            await self._safe_update(entry)

    async def _safe_update(self, entry: QueueEntry) -> None:
        try:
            await self.store.update(entry)
        except Exception:
            log.exception("[%s] could not update the queue entry", entry.id)

    # ---------------------------------------------------------------- one delivery pass
    async def process(self, entry: QueueEntry, qlog: QueueLog = log) -> None:
        data = await self._message(entry.blob_key)
        pending = [r for r in entry.recipients if r.status in OPEN]
        info: dict[int, tuple[str, bool]] = {}  # id(recipient) → (remote MTA, peer offered DSN)
        groups: dict[str, list[QueueRecipient]] = defaultdict(list)
        for r in pending:
            groups[r.address.rpartition("@")[2].lower()].append(r)
        await asyncio.gather(
            *(self._deliver_domain(entry, d, rs, data, info, qlog) for d, rs in groups.items())
        )

        now = self.clock()
        attempt = entry.attempts
        entry.attempts += 1
        failed = [r for r in pending if r.status == FAILED]
        delivered = [r for r in pending if r.status == DELIVERED]
        remaining = [r for r in entry.recipients if r.status in OPEN]
        if remaining and retry.expired(now, entry.created, self.cfg.queue_lifetime):
            for r in remaining:
                r.status = FAILED
                r.last_reply = r.last_reply or "451 4.4.7 delivery time expired"
                qlog.info("to=<%s> status=expired (%s)", safe(r.address), safe(r.last_reply))
            failed += remaining
            remaining = []
            expired_ids = {id(r) for r in failed}
        else:
            expired_ids = set()

        if entry.sender:
            bounce = [r for r in failed if wanted(r.notify, "failed")]
            if bounce:
                reports = [
                    RecipientReport(
                        r.address,
                        "failed",
                        "4.4.7" if id(r) in expired_ids else status_of(r.last_reply, True),
                        r.last_reply,
                        info.get(id(r), ("", False))[0],
                        r.orcpt,
                        now,
                    )
                    for r in bounce
                ]
                await self._dsn(entry, data, "failed", attempt, reports)
            success = [
                r for r in delivered if "SUCCESS" in r.notify.upper() and not info.get(id(r), ("", True))[1]
            ]
            if success:
                reports = [
                    RecipientReport(
                        r.address,
                        "relayed" if info.get(id(r), ("", False))[0] else "delivered",
                        "2.0.0",
                        r.last_reply,
                        info.get(id(r), ("", False))[0],
                        r.orcpt,
                        now,
                    )
                    for r in success
                ]
                await self._dsn(entry, data, "success", attempt, reports)
            if remaining and not entry.warned and now - entry.created >= self.cfg.queue_delay_warning:
                warn = [r for r in remaining if wanted(r.notify, "delayed")]
                if warn:
                    until = entry.created + self.cfg.queue_lifetime
                    reports = [
                        RecipientReport(
                            r.address,
                            "delayed",
                            status_of(r.last_reply, False),
                            r.last_reply,
                            info.get(id(r), ("", False))[0],
                            r.orcpt,
                            now,
                            until,
                        )
                        for r in warn
                    ]
                    await self._dsn(entry, data, "delayed", attempt, reports)
                entry.warned = True  # RFC 3461 §6.2: once; later ones would only repeat it

        if remaining:
            entry.next_attempt = retry.next_attempt(
                now,
                entry.created,
                entry.attempts,
                self.cfg.queue_retry_base,
                self.cfg.queue_retry_max,
                self.cfg.queue_lifetime,
            )
            await self.store.update(entry)
            qlog.info(
                "deferred %d recipient(s); next attempt in %.0fs", len(remaining), entry.next_attempt - now
            )
        else:
            try:
                await self.store.remove(entry.id)
            except NotFound:
                pass  # deleted by `mailhouse queue delete` meanwhile
            qlog.info("removed (delivered %d, failed %d)", len(delivered), len(failed))

    async def _deliver_domain(
        self,
        entry: QueueEntry,
        domain: str,
        rcpts: list[QueueRecipient],
        data: bytes,
        info: dict[int, tuple[str, bool]],
        qlog: QueueLog,
    ) -> None:
        destination = "remote" if self.router.override(domain) is None else "route"
        try:
            if await self.resolver.is_local_domain(domain):
                destination = "local"
                await self._deliver_local(entry, rcpts, data, info, qlog)
            else:
                async with self.pool.limit(domain):  # per-destination concurrency
                    await self._deliver_remote(entry, domain, rcpts, data, info, qlog)
        except Exception:
            qlog.exception("delivery to %s failed", safe(domain))
            for r in rcpts:
                if r.status in OPEN:
                    r.status, r.last_reply = DEFERRED, "451 4.3.0 internal error"
        for r in rcpts:
            metrics.DELIVERIES.labels(_DELIVERY_RESULTS.get(r.status, "deferred"), destination).inc()

    async def _deliver_local(
        self,
        entry: QueueEntry,
        rcpts: list[QueueRecipient],
        data: bytes,
        info: dict[int, tuple[str, bool]],
        qlog: QueueLog,
    ) -> None:
        """Hosted recipients produced inside the queue (bounces to local senders, aliases)."""
        for r in rcpts:
            res = await self.resolver.resolve(r.address)
            if res.empty:
                r.status, r.last_reply = FAILED, "550 5.1.1 no such user here"
                continue
            for addr in res.remote:  # an alias pointing elsewhere: forward in this entry
                if addr != r.address and all(x.address != addr for x in entry.recipients):
                    entry.recipients.append(QueueRecipient(addr, notify=r.notify, orcpt=r.orcpt))
            if res.local:
                result = await self.local.deliver(data, entry.sender, res.local, entry.id)
                if result.over_quota:
                    r.status, r.last_reply = DEFERRED, "452 4.2.2 mailbox full"
                    continue
                if result.rejected:  # RFC 5429 §2.1: the recipient's Sieve filter refused it
                    r.status, r.last_reply = FAILED, f"550 5.7.1 {result.rejected[0][1][:200]}"
                    continue
            r.status, r.last_reply = DELIVERED, "250 2.0.0 delivered locally"
            info[id(r)] = ("", False)
            qlog.info("to=<%s> status=delivered (local)", safe(r.address))

    async def _deliver_remote(
        self,
        entry: QueueEntry,
        domain: str,
        rcpts: list[QueueRecipient],
        data: bytes,
        info: dict[int, tuple[str, bool]],
        qlog: QueueLog,
    ) -> None:
        try:
            targets = await self.router.route(domain)
        except RoutingError as e:
            for r in rcpts:
                r.status, r.last_reply = (FAILED if e.permanent else DEFERRED), e.reply
                qlog.info("to=<%s> status=%s (%s)", safe(r.address), r.status, e.reply)
            return
        last_error = "451 4.4.1 no reachable server"
        enforce = False
        dane: dict[str, DanePolicy] = await self.dane.policies(targets, domain) if self.dane else {}
        must_tls = requiretls.is_required(entry.extra)
        refused = False  # a REQUIRETLS refusal: returned at once, never retried in the clear
        # RFC 8689 §4.3: TLS-Required: No (ignored with REQUIRETLS) → the policy never blocks
        relaxed = not must_tls and requiretls.tls_optional(data)
        applied = tlsrpt.NO_POLICY if targets[0].route is None else None  # RFC 8460: MX delivery only
        if self.mtasts is not None and targets[0].route is None and not domain.startswith("["):
            policy = await self.mtasts.policy(domain)
            if policy is not None and policy.mode is not Mode.NONE:
                applied = tlsrpt.AppliedPolicy.sts(policy.mode.value, policy.mx, policy.max_age)
                # RFC 8461 §2: an MX with usable TLSA records is governed by DANE, not MTA-STS
                matching = [t for t in targets if policy.matches(t.name) or _dane_usable(dane, t.name)]
                if policy.mode is Mode.ENFORCE and relaxed:
                    qlog.info("MTA-STS policy of %s not enforced: TLS-Required: No (RFC 8689 §4.3)", domain)
                elif policy.mode is Mode.ENFORCE:
                    # RFC 8461 §5: only MX hosts the policy names, with a verified certificate
                    enforce = True
                    for t in targets:
                        if t not in matching:
                            qlog.info("MTA-STS policy of %s: MX %s not allowed, skipped", domain, t.name)
                    targets = matching
                    last_error = f"451 4.7.5 MTA-STS policy: no MX host of {domain} matches the policy"
                else:  # testing: deliver as usual, note what enforce would have refused (RFC 8461 §5)
                    for t in targets:
                        if t not in matching:
                            qlog.info("MTA-STS policy of %s (testing): MX %s does not match", domain, t.name)
        smtputf8 = entry.extra.get("smtputf8") == "1"
        body = entry.extra.get("body", "")
        for target in targets:
            route = target.route
            d = dane.get(target.name)
            if d is not None and d.state is DaneState.FAILED:
                last_error = f"451 4.7.5 DANE: {d.detail}"
                self.tls_result(outcome(domain, d, Failure.DNSSEC_INVALID, d.detail), qlog)
                await tlsrpt.record(  # RFC 8460 §4.3.2.1: no session, the TLSA look-up failed
                    self.store,
                    tlsrpt.TlsOutcome(
                        domain,
                        tlsrpt.PolicyType.TLSA,
                        tlsrpt.ResultType.DNSSEC_INVALID,
                        receiving_mx_hostname=target.name,
                    ),
                )
                qlog.info("%s: %s", target.name, safe(last_error))
                continue
            # RFC 8460 §4.4: a DANE-governed MX is reported under its TLSA records, not MTA-STS
            governing = applied
            if applied is not None and d is not None and d.state is DaneState.USABLE:
                governing = tlsrpt.AppliedPolicy(tlsrpt.PolicyType.TLSA, outcome(domain, d).policy_strings)
            for address in target.addresses:
                tls_mode = route.tls if route else "required" if enforce else "opportunistic"
                if d is not None and d.state is DaneState.USABLE:
                    tls_mode = (
                        "dane"  # RFC 7672 §2.2: authenticated TLS, no fallback (verified: REQUIRETLS holds)
                    )
                elif must_tls:  # RFC 8689 §4.2.1: verified TLS to every hop, whatever the route says
                    tls_mode = requiretls.tls_mode(route.tls if route else None)
                username = route.username if route else None
                password = route.password if route else None
                unverified_ok = route.auth_over_unverified if route else False
                try:
                    conn = await self.pool.get(
                        target.name,
                        address,
                        target.port,
                        tls_mode=tls_mode,
                        username=username,
                        password=password,
                        auth_over_unverified=unverified_ok,
                        tlsa=d.records if d else (),
                        dane_names=d.names if d else (),
                    )
                except SmtpError as e:
                    await tlsrpt.record_session(
                        self.store, domain, governing, target.name, address, e, self.pool.sources
                    )
                    # RFC 5321 §5.1: connection-level trouble → try the next address / MX
                    last_error, refused = e.reply, False
                    if d is not None and isinstance(e, DaneFailed):
                        self.tls_result(outcome(domain, d, e.failure, e.reply), qlog)
                    if must_tls and (why := requiretls.refusal(e, target.name)) is not None:
                        last_error, refused = why, True
                    elif enforce and not isinstance(e, DaneFailed):  # RFC 8461 §4.2: say why (4.7.5)
                        last_error = "451 4.7.5 MTA-STS policy: " + e.reply.split(" ", 2)[-1]
                    qlog.info("%s[%s]:%d: %s", target.name, address, target.port, safe(last_error))
                    continue
                await tlsrpt.record_session(
                    self.store, domain, governing, target.name, address, conn, self.pool.sources
                )
                where = f"{target.name}[{address}]:{target.port}"
                has_dsn = "DSN" in conn.ext
                if must_tls and "REQUIRETLS" not in conn.ext:  # RFC 8689 §4.2.1 item 3
                    await self.pool.put(conn)
                    last_error, refused = requiretls.unsupported(target.name), True
                    qlog.info("%s: %s", where, last_error)
                    continue

                async def transaction(conn: SmtpConnection) -> list[RcptReply]:
                    params = conn.mail_params(data, entry.ret, entry.envid, smtputf8, body)
                    if must_tls:
                        params["REQUIRETLS"] = None  # RFC 8689 §4.2.1 item 4
                    return await conn.send(
                        entry.sender,
                        [(r.address, conn.rcpt_params(r.notify, r.orcpt)) for r in rcpts],
                        data,
                        params,
                        body,
                    )

                try:
                    try:
                        results = await transaction(conn)
                    except StaleConnection:
                        # the cached connection had died; nothing of the transaction was done
                        conn = await self.pool.get(
                            target.name,
                            address,
                            target.port,
                            tls_mode=tls_mode,
                            username=username,
                            password=password,
                            fresh=True,
                            auth_over_unverified=unverified_ok,
                            tlsa=d.records if d else (),
                            dane_names=d.names if d else (),
                        )
                        has_dsn = "DSN" in conn.ext
                        results = await transaction(conn)
                except SmtpError as e:
                    if e.connection_ok:
                        await self.pool.put(conn)
                    for r in rcpts:
                        r.status, r.last_reply = (FAILED if e.permanent else DEFERRED), e.reply
                        info[id(r)] = (target.name, has_dsn)
                        qlog.info(
                            "to=<%s> relay=%s status=%s (%s)", safe(r.address), where, r.status, safe(e.reply)
                        )
                    return
                await self.pool.put(conn)
                if d is not None and d.state is DaneState.USABLE:
                    self.tls_result(outcome(domain, d), qlog)
                for r, res in zip(rcpts, results, strict=True):
                    r.status = DELIVERED if res.ok else FAILED if res.permanent else DEFERRED
                    r.last_reply = res.text
                    info[id(r)] = (target.name, has_dsn)
                    qlog.info(
                        "to=<%s> relay=%s status=%s (%s)", safe(r.address), where, r.status, safe(res.text)
                    )
                return
        for r in rcpts:  # RFC 8689 §5: a REQUIRETLS refusal is returned, never retried downgraded
            r.status, r.last_reply = (FAILED if refused else DEFERRED), last_error
            qlog.info("to=<%s> status=%s (%s)", safe(r.address), r.status, safe(last_error))

    def tls_result(self, result: TlsaOutcome, qlog: QueueLog = log) -> None:
        """One DANE outcome (RFC 8460 policy type "tlsa"): the spot a TLS-RPT recorder hooks in."""
        qlog.info(
            "DANE %s for %s MX %s%s",
            result.result.value,
            result.policy_domain,
            result.mx_host,
            f": {result.failure.value}: {safe(result.detail)}" if result.failure else "",
        )

    # ---------------------------------------------------------------- DSNs
    async def _dsn(
        self, entry: QueueEntry, data: bytes, kind: str, attempt: int, reports: list[RecipientReport]
    ) -> None:
        qid = dsn_id(entry.id, kind, attempt)
        dsn = build_dsn(
            reporting_mta=self.cfg.hostname,
            to=entry.sender,
            original=data,
            reports=reports,
            queue_id=entry.id,
            arrival=entry.created,
            ret=entry.ret,
            envid=entry.envid,
            return_content=not requiretls.is_required(entry.extra),  # RFC 8689 §5
        )
        await self._send_dsn(qid, entry.sender, dsn)
        log.info("[%s] %s DSN %s to <%s>", entry.id, kind, qid, safe(entry.sender))

    async def _send_dsn(self, qid: str, to: str, dsn: bytes) -> None:
        """Deliver a DSN from the null sender: locally when TO is hosted here, else queued."""
        if not to:
            return
        domain = to.rpartition("@")[2].lower()
        if await self.resolver.is_local_domain(domain):
            res = await self.resolver.resolve(to)
            if res.local:
                await self.local.deliver(dsn, "", res.local, qid)  # delivery key dedups re-runs
            remote: list[tuple[str, dict[str, str | None]]] = [(a, {}) for a in res.remote]
            if not remote:
                return
        else:
            remote = [(to, {})]
        if await self.store.get(qid) is not None:
            return  # already queued by an earlier run of the same pass
        await self.enqueue(qid, "", remote, dsn, {})
