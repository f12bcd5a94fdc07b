"""Header anomalies (RFC 5322): missing or future Date, missing or malformed Message-ID, a
Reply-To in another domain than From, recipients hidden behind "undisclosed-recipients", and a
forged Received chain (RFC 5321 §4.4):

- ``RCVD_FORGED_OURS``: the newest Received field that arrived with the message (the one the
  connecting client wrote) says the message came from or through our own host name. Our own
  Received is added after the rules run, so a message that never passed here cannot carry one
  on top; spam bots add it to look internal. A message of ours that comes back from a mailing
  list carries ours lower down, under the list's own Received, and does not fire.
- ``RCVD_DATE_ORDER``: the Received dates go backwards, a hop stamped more than
  `RCVD_ORDER_SLACK` before the hop it follows (each server prepends its field, RFC 5321 §4.4:
  newer fields are higher up): a chain pasted together, not one a message travelled.

Mail from other servers has been through an MSA that must add Date and should add Message-ID
(RFC 5322 §3.6: "The only required header fields are the origination date field and the
originator address field(s)"; §3.6.4: every message SHOULD have a Message-ID); bulk senders
often skip them or get them wrong.
"""

from __future__ import annotations

import email.utils
import re

from mailhouse.spam.rules import Context, Hit, clean_reason

__all__ = ["FUTURE_SLACK", "RCVD_ORDER_SLACK", "SCORES", "HeaderAnomalies", "received_parts"]

#: Near SpamAssassin 4's defaults (MISSING_DATE 1.36, MISSING_MID 0.5, MISSING_FROM 1.0,
#: FREEMAIL_FORGED_REPLYTO-like mismatch 0.5, DATE_IN_FUTURE_12_24 ~1.5).
SCORES = {
    "MISSING_DATE": 1.4,
    "DATE_IN_FUTURE": 1.5,
    "MISSING_MID": 0.5,
    "INVALID_MSGID": 1.0,
    "FROM_REPLYTO_DIFFER": 0.5,
    "UNDISC_RECIPS": 1.0,
    "MISSING_FROM": 1.0,
    "RCVD_FORGED_OURS": 3.0,
    "RCVD_DATE_ORDER": 1.0,
}
#: A Date this far ahead of our clock is "in the future" (SpamAssassin's DATE_IN_FUTURE_12_24
#: starts at 12 hours: clocks and time zones get that wrong honestly).
FUTURE_SLACK = 12 * 3600.0
#: Received dates may run this far backwards (servers' clocks and time zones are set wrongly often).
RCVD_ORDER_SLACK = 12 * 3600.0
#: Received fields looked at per message (the newest first): a chain longer than this is not read.
MAX_RECEIVED = 30
_COMMENT = re.compile(r"\([^()]*\)")
# RFC 5321 §4.4: Stamp = From-domain By-domain Opt-info [CFWS] ";" FWS date-time
_RCVD_FROM = re.compile(r"^\s*from\s+([^\s;]+)", re.IGNORECASE)
_RCVD_BY = re.compile(r"\bby\s+([^\s;]+)", re.IGNORECASE)
# RFC 5322 §3.6.4: msg-id = "<" id-left "@" id-right ">"
_MSGID = re.compile(r"^\s*<[^<>@\s]+@[^<>@\s]+>\s*$")


def received_parts(value: str) -> tuple[str, str, float | None]:
    """(from host, by host, date as epoch seconds or None) of one Received field value; the hosts
    lower-case without a trailing dot, "" where the field has none. Comments are skipped."""
    head, sep, date = value.rpartition(";")
    if not sep:
        head, date = value, ""
    for _ in range(3):  # comments nest rarely deeper than this
        head = _COMMENT.sub(" ", head)
    f, b = _RCVD_FROM.search(head), _RCVD_BY.search(head)
    try:
        when: float | None = email.utils.parsedate_to_datetime(date.strip()).timestamp() if date else None
    except (TypeError, ValueError, IndexError, OverflowError):
        when = None
    return (
        f.group(1).lower().rstrip(".") if f else "",
        b.group(1).lower().rstrip(".") if b else "",
        when,
    )


def _received_hits(ctx: Context) -> list[Hit]:
    chain = [received_parts(v) for v in ctx.header("received")[:MAX_RECEIVED]]  # newest first
    hits = []
    ours = ctx.authserv_id.lower().rstrip(".")
    if chain and ours in chain[0][:2]:
        which = "from" if chain[0][0] == ours else "by"
        hits.append(
            Hit(
                "RCVD_FORGED_OURS",
                SCORES["RCVD_FORGED_OURS"],
                clean_reason(
                    f"a Received header claims the message came {which} our own server {ours}, "
                    f"but client {ctx.ip} just brought it from outside"
                ),
            )
        )
    dates = [d for _, _, d in chain if d is not None]
    for newer, older in zip(dates, dates[1:], strict=False):
        if newer < older - RCVD_ORDER_SLACK:
            hours = (older - newer) / 3600
            hits.append(
                Hit(
                    "RCVD_DATE_ORDER",
                    SCORES["RCVD_DATE_ORDER"],
                    f"the Received headers' dates go backwards by {hours:.0f} hours: a made-up relay chain",
                )
            )
            break
    return hits


def _domain(value: str) -> str:
    _, addr = email.utils.parseaddr(value)
    return addr.rsplit("@", 1)[1].lower() if "@" in addr else ""


class HeaderAnomalies:
    name = "HEADERS"

    async def check(self, ctx: Context) -> list[Hit]:
        hits: list[Hit] = []
        dates = ctx.header("date")
        if not dates:
            hits.append(
                Hit("MISSING_DATE", SCORES["MISSING_DATE"], "no Date header (RFC 5322 §3.6 requires one)")
            )
        else:
            try:
                when = email.utils.parsedate_to_datetime(dates[0]).timestamp()
            except (TypeError, ValueError, IndexError, OverflowError):
                when = None
            if when is not None and when > ctx.clock() + FUTURE_SLACK:
                hits.append(
                    Hit(
                        "DATE_IN_FUTURE",
                        SCORES["DATE_IN_FUTURE"],
                        clean_reason(f"Date is in the future: {dates[0]}"),
                    )
                )
        mids = ctx.header("message-id")
        if not mids:
            hits.append(Hit("MISSING_MID", SCORES["MISSING_MID"], "no Message-ID header"))
        elif not _MSGID.match(mids[0]):
            hits.append(
                Hit("INVALID_MSGID", SCORES["INVALID_MSGID"], clean_reason(f"malformed Message-ID {mids[0]}"))
            )
        froms = ctx.header("from")
        if not froms:
            hits.append(
                Hit("MISSING_FROM", SCORES["MISSING_FROM"], "no From header (RFC 5322 §3.6 requires one)")
            )
        replies = ctx.header("reply-to")
        if froms and replies:
            fd, rd = _domain(froms[0]), _domain(replies[0])
            if fd and rd and fd != rd and not fd.endswith("." + rd) and not rd.endswith("." + fd):
                hits.append(
                    Hit(
                        "FROM_REPLYTO_DIFFER",
                        SCORES["FROM_REPLYTO_DIFFER"],
                        clean_reason(f"replies go to {rd}, not to the sender's domain {fd}"),
                    )
                )
        to = " ".join(ctx.header("to") + ctx.header("cc")).lower()
        if "undisclosed" in to and "recipients" in to:
            hits.append(
                Hit(
                    "UNDISC_RECIPS",
                    SCORES["UNDISC_RECIPS"],
                    "the recipients are hidden (undisclosed-recipients)",
                )
            )
        return hits + _received_hits(ctx)
