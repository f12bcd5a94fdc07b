"""Header anomalies (RFC 5322): missing or future Date, missing or malformed Message-ID, a
Reply-To in another domain than From, recipients hidden behind "undisclosed-recipients".

Mail from other servers has been through an MSA that must add Date and should add Message-ID
(RFC 5322 §3.6: "The only required header fields are the origination date field and the
originator address field(s)"; §3.6.4: every message SHOULD have a Message-ID); bulk senders
often skip them or get them wrong.
"""

from __future__ import annotations

import email.utils
import re

from mailhouse.spam.rules import Context, Hit, clean_reason

__all__ = ["FUTURE_SLACK", "SCORES", "HeaderAnomalies"]

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
}
#: A Date this far ahead of our clock is "in the future" (SpamAssassin's DATE_IN_FUTURE_12_24
#: starts at 12 hours: clocks and time zones get that wrong honestly).
FUTURE_SLACK = 12 * 3600.0
# RFC 5322 §3.6.4: msg-id = "<" id-left "@" id-right ">"
_MSGID = re.compile(r"^\s*<[^<>@\s]+@[^<>@\s]+>\s*$")


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
        return hits
