"""SMTP listeners: `smtp` (inbound MTA, port 25), `submission` (587, STARTTLS then AUTH)
and `submissions` (465, implicit TLS, RFC 8314). One asyncio adapter over the sans-IO
core `proto.smtp`: it reads bytes, feeds the core, asks policy and delivery, writes
replies.

Invariants:
- A `250` after DATA/BDAT is sent only after local delivery and queueing committed.
- Errors are caught once per event (`_dispatch`): a bug in one command answers
  `451 4.3.0` and is logged with its traceback; the session and the server go on. A store
  outage (`StoreUnavailable`) answers ``451 4.3.0 Temporary storage failure`` — never a
  silent close — and ends only the current mail transaction.
- Plaintext pipelined after STARTTLS is discarded by the core (CVE-2011-0411).
- A client that speaks before the final greeting line is refused (`554 5.5.1`), as postscreen
  does; a client that passed is greeted at once for `[server] smtp_pregreet_ttl`, on every node
  (`smtpserver/pregreet.py`); trusted networks are never tested.
- Untrusted text (HELO, addresses) reaches headers and logs only escaped.
- I/O goes through the connection runtime (``mailhouse.runtime``): reads with the idle timeout
  of :class:`~mailhouse.runtime.Limits`, writes with its high-water mark and stall timeout.
- Deadlines, not idle timers (issue 12 item 6): a whole command line — and a whole DATA/BDAT
  transfer, with ``len / min_data_rate`` seconds more — must arrive within
  ``Limits.command_deadline`` of its first octet (Postfix ``smtpd_per_request_deadline``); the
  session ends after ``Limits.session_timeout``; submission waits ``Limits.preauth_timeout``
  before AUTH; all answered ``421 4.4.2`` (RFC 5321 §4.5.3.2.7 / §3.8).
- Input pipelined before PIPELINING applies is refused with ``554 5.5.0`` and the connection
  closed (Postfix ≥ 3.9 ``smtpd_forbid_unauth_pipelining``; RFC 2920 §3.1).
- Messages stream (issue 12 item 2): DATA (dot-unstuffed by the core) and BDAT octets go to a
  `store.spool.Spool` as they arrive — memory up to ``SPOOL_MEMORY_MAX``, then a file under
  ``data_dir/spool`` — and reach delivery as a `SpooledMessage` (header section in memory, body
  on disk); the spool is discarded when the transaction ends, whatever the outcome, and its
  octets count against the process's `InflightBudget` until then (``452 4.3.1`` beyond it).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import ssl
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from mailhouse import metrics
from mailhouse.accounts import sasl_flow
from mailhouse.config import Listener
from mailhouse.delivery.local import Folder
from mailhouse.delivery.policy import NOT_OWNER
from mailhouse.delivery.sendlimits import RECIPIENTS_EXCEEDED
from mailhouse.log import ConnLogger, safe
from mailhouse.mailauth import inbound
from mailhouse.proto import sasl
from mailhouse.proto import smtp as core
from mailhouse.proto.smtp import Reply
from mailhouse.queue.ids import new_queue_id
from mailhouse.reports import dmarc_out
from mailhouse.runtime import Connection, Limits, read_auth_line, start_listener
from mailhouse.runtime.connlimits import ConnectionGate, Refusal, policy_from_config
from mailhouse.smtpserver.inflight import REPLY_INSUFFICIENT_STORAGE, InflightBudget
from mailhouse.smtpserver.pregreet import PregreetMemory, Verdict
from mailhouse.spam import explain as spam_explain
from mailhouse.spam import headers as spam_headers
from mailhouse.spam.greylist import Greylist
from mailhouse.spam.lookup import Lookup
from mailhouse.spam.pipeline import Scoring, spam_refusal
from mailhouse.spam.pipeline import Verdict as SpamVerdict
from mailhouse.spam.rules import Action, header_values
from mailhouse.store.api import Account, StoreUnavailable
from mailhouse.store.spool import HeaderTooLarge, Spool, SpooledMessage, remove_stale

if TYPE_CHECKING:
    from mailhouse.services import Services

log = logging.getLogger(__name__)

TLS_HANDSHAKE_TIMEOUT = 30.0
#: Seconds the final flush of a closing session may take.
CLOSE_FLUSH_TIMEOUT = 5.0
#: The store could not be used (RFC 3463 §3.5 X.3.0: other or undefined mail system status;
#: 451 = local error in processing, RFC 5321 §4.2.3): the client keeps the message and retries.
STORE_UNAVAILABLE = Reply(451, "4.3.0", "Temporary storage failure, try again later")
#: To a client that talked before the final greeting line (postscreen's pregreet test): 554
#: (RFC 5321 §3.1 "no SMTP service here"), then the connection is closed.
PREGREET_REFUSED = b"554 5.5.1 Error: you talked before the greeting\r\n"
#: RFC 3463 X.3.4 "message too big for system": a header section longer than store.spool.HEAD_MAX.
REPLY_HEADER_TOO_BIG = Reply(552, "5.3.4", "Error: message header section too big")
REPLY_DMARC_REJECT = Reply(550, "5.7.1", "Message rejected by the sender domain's DMARC policy")
#: the result label of mailhouse_messages_total by reply class (RFC 5321 §4.2.1)
_RESULTS = {2: "accepted", 4: "tempfail", 5: "refused"}


def limits_for(svc: Services) -> Limits:
    """The runtime limits of one SMTP connection (read per connection: a reload applies to new ones)."""
    return Limits(
        max_line=core.MAX_COMMAND_LINE,  # RFC 5321 §4.5.3.1.4: 512 octets
        max_auth_line=core.MAX_EXTENDED_LINE,  # RFC 4954 §4: SASL responses, as the core frames them
        max_message=svc.cfg.max_message_size,  # RFC 1870 SIZE
        idle_timeout=svc.cfg.smtp_idle_timeout,  # RFC 5321 §4.5.3.2.7
        command_deadline=svc.cfg.smtp_command_deadline,  # Postfix smtpd_per_request_deadline
        min_data_rate=svc.cfg.smtp_min_data_rate,  # Postfix smtpd_min_data_rate
        session_timeout=svc.cfg.session_timeout,
        preauth_timeout=svc.cfg.preauth_timeout,
        stress_timeout=svc.cfg.stress_timeout,
        connection_budget=svc.cfg.connection_budget,
        write_stall_timeout=svc.cfg.smtp_idle_timeout,
        tls_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
    )


class SmtpSession:
    def __init__(
        self,
        svc: Services,
        mode: str,
        conn: Connection,
        pregreet: PregreetMemory,
        cid: str,
        budget: InflightBudget,
        greylist: Greylist | None = None,
    ) -> None:
        self.svc = svc
        self.pregreet = pregreet
        self.greylist = greylist
        self.budget = budget
        self.spool: Spool | None = None
        self._held = 0  # octets of the current message reserved in the budget
        self._over_budget = False
        self.cfg = svc.cfg
        self.mode = mode  # "smtp" | "submission" | "submissions"
        self.conn = conn
        self.limits = conn.limits
        self.core = core.SMTPServerProtocol(
            max_message_size=self.limits.max_message,
            max_line=self.limits.max_line,
            max_extended_line=self.limits.max_auth_line,
            forbid_unauth_pipelining=svc.cfg.smtp_forbid_unauth_pipelining,
        )
        self.ip = conn.peer_ip
        self.cid = cid
        self.log = ConnLogger(log, {"cid": self.cid})
        self.policy = svc.envelope
        self.tls = conn.tls
        self.user: Account | None = None
        self.closing = False
        self._out = bytearray()
        self._cmd_start: float | None = None  # loop time the current command's first octet arrived
        self._cmd_octets = 0  # message octets of the current DATA/BDAT transfer (RFC 5321 §4.1.1.4)
        self._reset()

    def _reset(self) -> None:
        self.sender: str | None = None
        self.mail_params: dict[str, str | None] = {}
        self.local: dict[int, Account] = {}
        self.remote: list[tuple[str, dict[str, str | None]]] = []
        self.rcpt_for_header: list[str] = []
        self.forwarded_by = ""  # a hosted domain whose alias forwards outside (ARC seal, RFC 8617)
        self._drop_message()
        self._queue_id: str | None = None

    def _drop_message(self) -> None:
        """Forget the message being received: spool file removed, its octets given back."""
        spool, self.spool = self.spool, None
        if spool is not None:
            if spool.on_disk:  # unlinking a big file blocks for a while: not on the event loop
                self.conn.loop.run_in_executor(None, spool.discard)
            else:
                spool.discard()
        if self._held:
            self.budget.give(self._held)
            self._held = 0
        self._over_budget = False

    @property
    def queue_id(self) -> str:
        if self._queue_id is None:
            self._queue_id = new_queue_id()
        return self._queue_id

    # ---------------------------------------------------------------- I/O
    async def write(self, data: bytes) -> None:
        self._out += data
        await self.flush()

    async def flush(self) -> None:
        if self._out:
            self.conn.write(bytes(self._out))
            self._out.clear()
            await self.conn.drain()

    async def reply(self, r: Reply) -> None:
        # RFC 2920 §3.1: replies to a pipelined group may be sent together; they are
        # flushed whenever the session is about to wait for the client.
        self._out += self.core.send(r)

    def _deadline(self) -> float | None:
        """Absolute loop time the current command must be complete by (None: between commands)."""
        lim = self.limits
        if lim.command_deadline is None or self._cmd_start is None:
            return None
        # Postfix smtpd_per_request_deadline + smtpd_min_data_rate: N message octets read add
        # N / rate seconds to the DATA/BDAT deadline
        return self._cmd_start + lim.command_deadline + self._cmd_octets / lim.min_data_rate

    def _command_done(self) -> None:
        self._cmd_start = None
        self._cmd_octets = 0

    async def _read(self) -> bytes:
        await self.flush()
        loop = self.conn.loop
        if self._cmd_start is None and (self.core.bytes_buffered() or self.core.in_message):
            self._cmd_start = loop.time()  # a partial command, or a transfer after 354 / BDAT
        preauth = self.mode != "smtp" and self.user is None
        try:
            timeout = self.conn.wait_time(preauth=preauth, deadline=self._deadline())
            data = await self.conn.read(timeout)
            if self._cmd_start is None:
                self._cmd_start = loop.time()  # the deadline runs from the command's first octet
            if self.core.in_message:
                self._cmd_octets += len(data)
            return data
        except TimeoutError:
            # RFC 5321 §4.5.3.2.7 / §3.8: on timeout, reply 421 and close
            await self.write(
                self.core.send(Reply(421, "4.4.2", f"{self.cfg.hostname} Error: timeout exceeded"))
            )
            self.closing = True
            return b""

    async def run(self) -> None:
        # one INFO line per connection (at its end, as Postfix's "disconnect from"): on port 25
        # a line per message is the queue id's, and log records cost on the per-connection path
        self.log.debug("connect from %s mode=%s", self.ip, self.mode)
        try:
            if await self.svc.auth.bans.is_banned(self.ip):  # issue 12 item 7: refused at connect
                # RFC 5321 §3.1: 554 in place of the 220 greeting
                await self.write(b"554 5.7.1 Access denied: too many failed logins\r\n")
                return
            if self.mode == "smtp" and not await self._pregreet_test():
                return
            if not self.core.greeted:
                await self.write(self.core.greeting(self.cfg.hostname, "ESMTP Mailhouse"))
            await self._loop()
        except (ConnectionError, ssl.SSLError) as e:
            self.log.info("connection lost: %s", type(e).__name__)
        finally:
            self._drop_message()  # a session cut off mid-transfer leaves no spool file behind
            try:
                await asyncio.wait_for(self.flush(), CLOSE_FLUSH_TIMEOUT)
            except (TimeoutError, ConnectionError, ssl.SSLError):
                pass
            await self.conn.close()
            self.log.info("disconnect from %s mode=%s", self.ip, self.mode)

    async def _pregreet_test(self) -> bool:
        """postscreen's pregreet test on port 25; False: the client was refused (or left).

        A client that passed within `pregreet_ttl` (on any node) or is in a trusted network is
        greeted at once. Otherwise the first line of a multi-line greeting goes out now and the
        final line after `pregreet_wait` seconds (postscreen_greet_banner): RFC 5321 §4.2.1 — a
        client reads a reply up to its last line (no hyphen) and §3.1 — it sends nothing before
        the greeting, so anything arriving meanwhile comes from a client that does not wait.
        """
        wait = self.cfg.pregreet_wait
        if wait <= 0 or self.cfg.is_trusted(self.ip):
            return True
        verdict = await self.pregreet.verdict(self.ip)
        if verdict is Verdict.PASS:
            return True
        if verdict is Verdict.FAIL:
            self.log.info("pregreet: %s talked before the greeting recently; refused", self.ip)
            await self.write(PREGREET_REFUSED)
            return False
        host = core.sanitize_for_header(self.cfg.hostname.encode())
        await self.write(f"220-{host} ESMTP\r\n".encode())  # RFC 5321 §4.2.1: more lines follow
        try:
            early = await self.conn.read(wait)
        except TimeoutError:
            early = None
        if early == b"":
            return False  # left during the test: no verdict
        if early is not None:
            self.core.receive_data(early)  # marks spoke_before_greeting
            self.log.info("pregreet: %s talked before the greeting; refused", self.ip)
            await self.write(PREGREET_REFUSED)
            await self.pregreet.record(self.ip, Verdict.FAIL)
            return False
        await self.write(self.core.greeting(self.cfg.hostname, "ESMTP Mailhouse"))  # then the store write
        await self.pregreet.record(self.ip, Verdict.PASS)
        return True

    async def _loop(self) -> None:
        while not self.closing and not self.core.closed:
            ev = self.core.next_event()
            if ev is core.NEED_DATA:
                if self.svc.draining and not self.core.in_message:
                    await self.reply(Reply(421, "4.3.2", f"{self.cfg.hostname} Service shutting down"))
                    return
                data = await self._read()
                if not data:
                    return
                self.core.receive_data(data)
                continue
            if not isinstance(ev, core.MessageChunk | core.Bdat):
                self._command_done()  # a whole command (or transfer) arrived in time
            await self._dispatch(ev)

    async def _dispatch(self, ev: core.Event) -> None:
        handler = self.COMMANDS.get(type(ev))
        try:
            assert handler is not None, f"no handler for {type(ev).__name__}"
            with metrics.timed(metrics.COMMAND_SECONDS, "smtp", type(ev).__name__.lower()):  # event kinds
                await handler(self, ev)
        except StoreUnavailable as e:  # the database, not the client, went away (issue 12 item 11)
            self.log.warning("store unavailable handling %s: %s", type(ev).__name__, e)
            if isinstance(ev, core.MessageEnd):
                self._reset()  # the transaction is over; the session stays usable (RSET, next MAIL)
                await self._end_reply(STORE_UNAVAILABLE, "storage")
            else:
                await self.reply(STORE_UNAVAILABLE)
        except (ConnectionError, ssl.SSLError):
            raise
        except Exception:
            self.log.exception("internal error handling %s", type(ev).__name__)
            if not isinstance(ev, core.MessageChunk | core.Bdat):
                await self.reply(Reply(451, "4.3.0", "Error: internal error, try again later"))

    # ---------------------------------------------------------------- handlers
    def _extensions(self) -> list[str]:
        ext = [
            "PIPELINING",  # RFC 2920
            f"SIZE {self.cfg.max_message_size}",  # RFC 1870
            "8BITMIME",  # RFC 6152
            "ENHANCEDSTATUSCODES",  # RFC 2034
            "SMTPUTF8",  # RFC 6531
            "CHUNKING",  # RFC 3030
            "BINARYMIME",  # RFC 3030 §3
            "DSN",  # RFC 3461
        ]
        if not self.tls:
            ext.append("STARTTLS")  # RFC 3207
        else:
            ext.append("REQUIRETLS")  # RFC 8689 §4.1: offered only once the session is TLS
        if self.mode != "smtp" and (self.tls or self.cfg.allow_plaintext_auth):
            ext.append("AUTH " + " ".join(sasl_flow.MECHANISMS))  # RFC 4954; never over plaintext
        return ext

    async def on_helo(self, ev: core.Helo) -> None:
        name = ev.name.strip()
        if not name:
            await self.reply(Reply(501, "5.5.4", "Syntax: HELO hostname"))
            return
        self._reset()
        if ev.extended:
            await self.reply(Reply(250, None, [self.cfg.hostname, *self._extensions()]))
        else:
            await self.reply(Reply(250, None, self.cfg.hostname))

    async def on_mail(self, ev: core.Mail) -> None:
        if self.mode != "smtp" and self.user is None:
            await self.reply(Reply(530, "5.7.0", "Authentication required"))  # RFC 4954 §6
            return
        sender = ev.path.mailbox if ev.path is not None else ""
        if "REQUIRETLS" in ev.params and not self.tls:  # RFC 8689 §4.1: only within a TLS session
            await self.reply(Reply(530, "5.7.10", "REQUIRETLS needs a TLS session (STARTTLS first)"))
            return
        if self.user is not None and sender and not await self.policy.may_send_as(self.user, sender):
            self.log.info("sender %s refused for %s", safe(sender), self.user.address)
            await self.reply(NOT_OWNER)
            return
        if self.user is not None and (refusal := await self.policy.start_send(self.user, self.ip)):
            self.log.info("send rate limit for %s", self.user.address)  # delivery/sendlimits.py
            await self.reply(refusal)
            return
        size = ev.params.get("SIZE")
        if size is not None and size.isdigit() and self.budget.would_exceed(int(size)):
            # RFC 1870 §6.2 / RFC 5321 §4.5.3.1.10: no room now for a message of this size
            self.log.info("SIZE=%s refused: %d octets in flight", size, self.budget.used)
            await self.reply(REPLY_INSUFFICIENT_STORAGE)
            return
        self._reset()
        self.sender = sender
        self.mail_params = ev.params
        if log.isEnabledFor(logging.DEBUG):  # safe() walks the address: not for a line never written
            self.log.debug("from=<%s> size=%s", safe(sender), ev.params.get("SIZE"))
        await self.reply(Reply(250, "2.1.0", "Ok"))

    async def on_rcpt(self, ev: core.Rcpt) -> None:
        if ev.path is None:
            await self.reply(core.REPLY_BAD_RECIPIENT)
            return
        if len(self.rcpt_for_header) >= self.cfg.max_recipients:  # RCPT commands, not mailboxes
            await self.reply(Reply(452, "4.5.3", "Error: too many recipients"))  # RFC 5321 §4.5.3.1.10
            return
        if self.user is not None and not await self.policy.recipient_room(self.user, self.ip):
            self.log.info("daily recipient limit for %s", self.user.address)  # delivery/sendlimits.py
            await self.reply(RECIPIENTS_EXCEEDED)
            return
        size = int(self.mail_params.get("SIZE") or 0)
        verdict = await self.policy.check_recipient(ev.path, self.user, size)
        level = logging.DEBUG if verdict.reply.code == 250 else logging.INFO
        if log.isEnabledFor(level):
            self.log.log(
                level, "to=<%s> %d %s", safe(ev.path.mailbox), verdict.reply.code, verdict.reply.enhanced
            )
        if verdict.reply.code == 250 and (deferred := await self._greylisted(ev.path.mailbox)):
            await self.reply(deferred)
            return
        if verdict.reply.code == 250:
            if verdict.remote and self.svc.outbound is None:
                await self.reply(Reply(451, "4.3.2", "Error: outbound delivery is not available"))
                return
            if self.user is not None:
                await self.policy.add_recipients(self.user, self.ip)
            for acc in verdict.local:
                self.local[acc.id] = acc
            for addr in verdict.remote:
                self.remote.append((addr, ev.params))
            if verdict.remote and self.user is None:
                self.forwarded_by = self.forwarded_by or ev.path.domain
            self.rcpt_for_header.append(ev.path.mailbox)
        await self.reply(verdict.reply)

    async def _greylisted(self, recipient: str) -> Reply | None:
        """The 451 of spam/greylist.py for a new triplet on port 25 (never for authenticated users)."""
        if self.greylist is None or self.mode != "smtp" or self.user is not None:
            return None
        return (await self.greylist.check(self.ip, self.sender or "", recipient))[1]

    async def on_data(self, ev: core.Data) -> None:
        await self.reply(core.REPLY_START_DATA)

    async def on_chunk(self, ev: core.MessageChunk) -> None:
        if self._over_budget:
            return  # counted and dropped until the end of the transfer
        if not self.budget.take(len(ev.data)):
            self.log.info("in-flight limit reached (%d octets); message dropped", self.budget.used)
            self._drop_message()
            self._over_budget = True
            return
        self._held += len(ev.data)
        if self.spool is None:
            self.spool = Spool(self.cfg.data_dir / "spool")
        try:
            self.spool.write(ev.data, crlf=ev.crlf)  # DATA: CRLF already, no pass over it
            if self.spool.flush_due:
                await asyncio.to_thread(self.spool.flush)  # file I/O never on the event loop
        except OSError as e:  # the spool's disk is full (or failing): insufficient storage too
            self.log.warning("cannot spool the message: %s; message dropped", e)
            self._drop_message()
            self._over_budget = True

    async def on_bdat(self, ev: core.Bdat) -> None:
        return None  # chunk bytes follow as MessageChunk events

    async def on_bdat_chunk_end(self, ev: core.BdatChunkEnd) -> None:
        if ev.too_big:
            await self._end_reply(core.REPLY_TOO_BIG, "size")
            self._drop_message()
            return
        if self._over_budget:
            await self._end_reply(REPLY_INSUFFICIENT_STORAGE, "storage")  # RFC 3030 §2: the transaction fails
            self._reset()
            return
        await self.reply(Reply(250, "2.0.0", f"Ok: {ev.size} octets received"))

    async def on_message_end(self, ev: core.MessageEnd) -> None:
        try:
            await self._end_reply(*await self._message_end(ev))
        finally:
            self._reset()  # the spool goes, the octets are given back, whatever happened

    async def _end_reply(self, reply: Reply, reason: str) -> None:
        """REPLY to the end of a message, counted by result and REASON class (metrics.MESSAGES)."""
        metrics.MESSAGES.labels(self.mode, _RESULTS.get(reply.code // 100, "refused"), reason).inc()
        await self.reply(reply)

    async def _message_end(self, ev: core.MessageEnd) -> tuple[Reply, str]:
        """The reply to the end of data and its reason class (metrics.MESSAGES)."""
        if ev.too_big:
            return core.REPLY_TOO_BIG, "size"  # RFC 1870 §6.3 / RFC 3463 5.3.4
        if ev.bare_newline:
            return core.REPLY_BARE_NEWLINE, "other"
        if self._over_budget:
            return REPLY_INSUFFICIENT_STORAGE, "storage"  # RFC 5321 §4.5.3.1.10
        if not self.local and not self.remote:
            return Reply(554, "5.5.1", "Error: no valid recipients"), "other"
        try:
            spool = self.spool
            if spool is None:
                message = SpooledMessage(b"")
            elif spool.on_disk:  # the last write and the header read: file I/O off the loop
                message = await asyncio.to_thread(spool.finish)
            else:
                message = spool.finish()  # in memory: no I/O
        except HeaderTooLarge:
            return REPLY_HEADER_TOO_BIG, "size"
        return await self._accept(message)

    def _received(self) -> bytes:
        """RFC 5321 §4.4 trace header; RFC 3848 `with` keywords."""
        proto = "UTF8SMTP" if "SMTPUTF8" in self.mail_params else "ESMTP"
        if not self.core.extended:
            proto = "SMTP"
        if self.tls:
            proto += "S"
        if self.user is not None:
            proto += "A"
        helo = core.sanitize_for_header(self.core.helo_name or b"unknown")
        rcpt = self.rcpt_for_header[0] if len(self.rcpt_for_header) == 1 else None
        for_part = f"\r\n\tfor <{core.sanitize_for_header(rcpt.encode())}>" if rcpt else ""
        return (
            f"Received: from {helo} ([{self.ip}])\r\n\tby {self.cfg.hostname} (Mailhouse) with {proto} id "
            f"{self.queue_id}{for_part};\r\n\t{formatdate(localtime=False)}\r\n"
        ).encode()

    async def _accept(self, body: SpooledMessage) -> tuple[Reply, str]:
        sender = self.sender or ""
        folder = Folder.INBOX
        helo = (self.core.helo_name or b"").decode("ascii", "replace")
        scoring = self._start_scoring(body, sender, helo)
        if scoring is not None:
            body = scoring.ctx.message  # without the X-Spam-* fields that arrived with it
        try:
            if self.mode == "smtp" and self.cfg.verify_inbound:
                body, auth_verdict = await inbound.annotate(body, self.cfg, self.ip, sender, helo)
                if (
                    auth_verdict.evaluation is not None and self.cfg.reports_send and self.cfg.dmarc_reports
                ):  # RFC 7489 §7.2 counts
                    await dmarc_out.record(self.svc.store, auth_verdict.evaluation, self.ip, sender)
                if auth_verdict.action is inbound.Action.REJECT:  # RFC 7489 §10.3: refuse, never bounce
                    self.log.info("refused from=<%s>: %s", safe(sender), auth_verdict.reason)
                    return REPLY_DMARC_REJECT, "dmarc"
                if auth_verdict.action is inbound.Action.JUNK:
                    folder = Folder.JUNK
            verdict = None if scoring is None else await scoring.finish(body)
        finally:
            if scoring is not None:
                scoring.cancel()  # a no-op once finished
        stored: Awaitable[None] | None = None  # (no placeholder coroutine: one left unawaited warns)
        if verdict is not None:
            self.log.info("spam %s %s", self.queue_id, safe(verdict.summary()))
            stored = self._store_verdict(body, verdict)
            body = body.prepend(spam_headers.fields(verdict.score, verdict.required, list(verdict.hits)))
            if verdict.action is Action.REJECT:
                await stored
                return spam_refusal(verdict), "spam"  # before the 250: no backscatter (issue 14 §3)
            if verdict.action is Action.JUNK:
                folder = Folder.JUNK
        message = body.prepend(self._received())
        accepted = self.svc.envelope.accept(
            message,
            sender,
            list(self.local.values()),
            self.remote,
            queue_id=self.queue_id,
            submitted_by=self.user if self.mode != "smtp" else None,
            mail_params=self.mail_params,
            folder=folder,
            forwarded_by=self.forwarded_by,
        )
        if stored is None:
            reply = await accepted
        else:  # the verdict is written beside the delivery (one group commit)
            reply, _ = await asyncio.gather(accepted, stored)
        if reply.code != 250:  # RFC 3463 X.2.2: mailbox full
            return reply, "quota" if (reply.enhanced or "").endswith(".2.2") else "other"
        self.log.info(
            "queued as %s from=<%s> nrcpt=%d size=%d message-id=%s",  # Postfix cleanup's message-id=
            self.queue_id,
            safe(sender),
            len(self.rcpt_for_header),
            message.size,
            safe(next(iter(header_values(body.head, "message-id")), "").strip(), 120) or "-",
        )
        return reply, "ok"

    def _start_scoring(self, body: SpooledMessage, sender: str, helo: str) -> Scoring | None:
        """Start the spam rules (spam/pipeline.py) on port 25, unless the client is exempt."""
        spam = self.svc.spam
        if spam is None or not spam.applies(self.ip, authenticated=self.user is not None):
            return None
        body = body.with_head(spam_headers.strip_incoming(body.head))
        user = self.user.address if self.user is not None else None
        return spam.start(
            body, self.ip, helo, sender, self.rcpt_for_header, queue_id=self.queue_id, user=user
        )

    async def _store_verdict(self, body: SpooledMessage, verdict: SpamVerdict) -> None:
        """Keep VERDICT for `mailhouse spam explain` (spam/explain.py); a store outage only loses it."""
        mid = next(iter(header_values(body.head, "message-id")), "")
        try:
            await spam_explain.record(self.svc.store, self.queue_id, mid, verdict)
        except StoreUnavailable:
            self.log.warning("spam verdict of %s not stored (store unavailable)", self.queue_id)

    async def on_rset(self, ev: core.Rset) -> None:
        self._reset()
        await self.reply(Reply(250, "2.0.0", "Ok"))

    async def on_noop(self, ev: core.Noop) -> None:
        await self.reply(Reply(250, "2.0.0", "Ok"))

    async def on_quit(self, ev: core.Quit) -> None:
        await self.reply(core.REPLY_BYE)
        self.closing = True

    async def on_vrfy(self, ev: core.Vrfy) -> None:
        # RFC 5321 §3.5.3: 252 — no address harvesting
        await self.reply(
            Reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery")
        )

    async def on_help(self, ev: core.Help) -> None:
        await self.reply(Reply(214, "2.0.0", "See https://www.rfc-editor.org/rfc/rfc5321"))

    async def on_starttls(self, ev: core.StartTLS) -> None:
        if self.tls:
            await self.reply(Reply(503, "5.5.1", "Error: TLS already active"))
            return
        await self.flush()
        try:
            # RFC 3207 §4.2: plaintext pipelined after STARTTLS is discarded (CVE-2011-0411)
            dropped = await self.conn.start_tls(
                self.core.send(core.REPLY_READY_TLS), self.svc.tls, self.limits.tls_handshake_timeout
            )
        except (ssl.SSLError, TimeoutError, ConnectionError, OSError) as e:
            self.log.info("TLS handshake failed: %s", type(e).__name__)
            self.closing = True
            return
        self.tls = True
        discarded = self.core.pending_plaintext_discarded + dropped
        self.core.start_tls_done()  # RFC 3207 §4.2: back to the start, plaintext forgotten
        if discarded:
            self.log.info("discarded %d octets of plaintext pipelined after STARTTLS", discarded)
        self._reset()
        self.user = None

    async def on_auth(self, ev: core.Auth) -> None:
        if self.mode == "smtp":
            await self.reply(Reply(503, "5.5.1", "Error: authentication not enabled"))
            return
        if not self.tls and not self.cfg.allow_plaintext_auth:
            await self.reply(Reply(530, "5.7.0", "Must issue a STARTTLS command first"))  # RFC 3207 §4
            return
        if self.user is not None:
            await self.reply(Reply(503, "5.5.1", "Error: already authenticated"))  # RFC 4954 §4
            return
        if ev.mechanism not in sasl_flow.MECHANISMS:
            await self.reply(Reply(504, "5.5.4", "Unrecognized authentication type"))
            return

        async def send_challenge(b64: bytes) -> None:
            await self.reply(Reply(334, None, b64.decode("ascii") if b64 else ""))

        try:
            account = await sasl_flow.authenticate(
                self.svc.auth, ev.mechanism, ev.initial, send_challenge, self._auth_line, self.ip, "smtp"
            )
        except sasl.SaslCancelled:
            await self.reply(Reply(501, "5.0.0", "Authentication cancelled"))  # RFC 4954 §4
            return
        except sasl.SaslError:
            await self.reply(Reply(501, "5.5.2", "Cannot decode response"))  # RFC 4954 §4
            return
        if account is None:
            await self.reply(Reply(535, "5.7.8", "Authentication credentials invalid"))  # RFC 4954 §6
            return
        self.user = account
        self.log.info("authenticated as %s", account.address)
        await self.reply(Reply(235, "2.7.0", "Authentication successful"))

    async def _auth_line(self) -> bytes:
        return await read_auth_line(self._auth_poll, self._auth_more, max_octets=self.limits.max_auth_line)

    def _auth_poll(self) -> bytes | None:
        ev = self.core.next_event()
        if isinstance(ev, core.AuthResponse):
            return ev.line  # answered by the driver's next challenge or final reply
        if isinstance(ev, core.CommandError):
            raise sasl.SaslError("auth line error")
        if ev is core.NEED_DATA:
            return None
        raise sasl.SaslError("unexpected event during AUTH")

    async def _auth_more(self) -> bool:
        data = await self._read()  # with the idle timeout (421 on expiry)
        if not data:
            return False
        self.core.receive_data(data)
        return True

    async def on_command_error(self, ev: core.CommandError) -> None:
        await self.reply(ev.reply)

    async def on_too_many_errors(self, ev: core.TooManyErrors) -> None:
        await self.reply(ev.reply)
        self.closing = True

    async def on_pipelining_violation(self, ev: core.PipeliningViolation) -> None:
        # Postfix ≥ 3.9 smtpd_forbid_unauth_pipelining: reply 554 5.5.0 and disconnect
        self.log.info(
            "improper command pipelining after %s from %s", safe(ev.command.decode("latin-1")), self.ip
        )
        await self.reply(ev.reply)
        self.closing = True

    COMMANDS: dict[type, Callable[[SmtpSession, Any], Awaitable[None]]] = {
        core.Helo: on_helo,
        core.Mail: on_mail,
        core.Rcpt: on_rcpt,
        core.Data: on_data,
        core.MessageChunk: on_chunk,
        core.MessageEnd: on_message_end,
        core.Bdat: on_bdat,
        core.BdatChunkEnd: on_bdat_chunk_end,
        core.Rset: on_rset,
        core.Noop: on_noop,
        core.Quit: on_quit,
        core.Vrfy: on_vrfy,
        core.Help: on_help,
        core.StartTLS: on_starttls,
        core.Auth: on_auth,
        core.CommandError: on_command_error,
        core.TooManyErrors: on_too_many_errors,
        core.PipeliningViolation: on_pipelining_violation,
    }


#: Issue 12 item 5: the answer at accept time when a connection limit is reached (RFC 5321
#: §3.8: 421 and close; RFC 3463: 4.7.0 security/policy, 4.3.2 system not accepting messages).
REFUSALS = {
    Refusal.PER_IP: b"421 4.7.0 Too many connections from your address\r\n",
    Refusal.BUSY: b"421 4.3.2 Too many connections, try again later\r\n",
}


class Server:
    """The SMTP listeners of one node (smtp, submission, submissions) on the connection runtime."""

    def __init__(self, svc: Services, gate: ConnectionGate | None = None) -> None:
        self.svc = svc
        self.gate = gate or ConnectionGate(policy_from_config(svc.cfg))
        self.pregreet = PregreetMemory(svc.store, svc.cfg)  # shared by this node's sessions
        lookup = svc.spam.lookup if svc.spam is not None else Lookup(svc.cfg.dns_nameservers or None)
        self.greylist = Greylist(svc.store, svc.cfg, lookup)  # [spam] greylisting, read per RCPT
        # connection ids for the logs: a counter from a random start per node (no urandom call
        # per connection)
        self._ids = itertools.count(secrets.randbits(32))
        # one per process: every listener and session of this node shares it
        self.budget = InflightBudget(lambda: svc.cfg.max_inflight_bytes)
        stale = remove_stale(svc.cfg.data_dir / "spool")
        if stale:
            log.info("removed %d spool files left by stopped processes", stale)

    def _cid(self) -> str:
        return f"{next(self._ids) & 0xFFFFFFFF:08x}"

    def limits(self) -> Limits:
        return limits_for(self.svc)

    async def listen(self, name: str, host: str, port: int) -> asyncio.base_events.Server:
        svc, pregreet = self.svc, self.pregreet
        return await start_listener(
            host,
            port,
            lambda conn: SmtpSession(
                svc, name, conn, pregreet, self._cid(), self.budget, self.greylist
            ).run(),
            limits=self.limits,
            ssl_ctx=svc.tls if Listener(name).implicit_tls else None,  # RFC 8314 §3.3: implicit TLS
            track=svc.track,
            gate=self.gate,
            service=name,
            refusals=REFUSALS,
        )
