"""The CAPABILITY list per state, and what ENABLE may turn on.

RFCs: RFC 9051 §6.1.1 / §7.2.2 (CAPABILITY; LOGINDISABLED), §6.2.1 (STARTTLS only before TLS),
§7.1 (``[CAPABILITY ...]`` in the greeting and the login OK); RFC 5161 (ENABLE); the RFC of
each listed extension is cited in the handler that implements it.

Invariant: a capability is listed here only when its command or behaviour is wired in the
command table (``commands``), so the list stays honest; the test of the table checks the
parser's command names against it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailhouse.accounts import sasl_flow

from . import metadata, query, quota, urlauth
from .context import State

if TYPE_CHECKING:
    from .context import SessionContext

ENABLEABLE = frozenset(("CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "IMAP4REV2"))
"""What ENABLE turns on (RFC 5161 §3.1; upper case as the parser gives them)."""


def capabilities(s: SessionContext) -> list[str]:
    caps = ["IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE"]
    if s.state is State.NOT_AUTHENTICATED:
        if not s.tls:
            caps.append("STARTTLS")  # RFC 9051 §6.2.1
        if s.login_allowed():
            caps += [f"AUTH={m}" for m in sasl_flow.MECHANISMS]
        else:
            caps.append("LOGINDISABLED")  # RFC 9051 §7.2.2
        return caps
    caps += [
        "NAMESPACE",
        "UNSELECT",
        "CHILDREN",
        "SPECIAL-USE",
        "CREATE-SPECIAL-USE",
        "LIST-EXTENDED",
        "LIST-STATUS",
        "UIDPLUS",
        "MOVE",
        "CONDSTORE",
        "QRESYNC",
        "BINARY",
        "MULTIAPPEND",
        f"APPENDLIMIT={s.cfg.max_message_size}",
        "STATUS=SIZE",
        "UTF8=ACCEPT",
        "NOTIFY",
        "WITHIN",  # RFC 5032: OLDER/YOUNGER (query.py)
        "SAVEDATE",  # RFC 8514: FETCH SAVEDATE, SAVEDBEFORE/SAVEDON/SAVEDSINCE, SAVEDATESUPPORTED
        "UNAUTHENTICATE",  # RFC 8437 §2: commands/auth.py
        "MULTISEARCH",  # RFC 7377 §2: the ESEARCH command (commands/search.py)
        "OBJECTID",  # RFC 8474: MAILBOXID, EMAILID, THREADID (message/objectid.py)
        "PREVIEW",  # RFC 8970: FETCH PREVIEW (message/preview.py)
    ]
    # CONTEXT=SEARCH, CONTEXT=SORT (RFC 5267 §4): RETURN (UPDATE) contexts (contexts.py),
    # ADDTO/REMOVEFROM (positions for SORT), CANCELUPDATE, PARTIAL.
    caps += ["ESEARCH", "SEARCHRES", "SORT", "SORT=DISPLAY", "ESORT", "CONTEXT=SEARCH", "CONTEXT=SORT"]
    caps += [f"THREAD={a}" for a in query.THREAD_ALGORITHMS]
    caps += list(quota.CAPABILITIES) + list(metadata.CAPABILITIES)
    caps += list(urlauth.CAPABILITIES)  # URLAUTH, URLAUTH=BINARY (RFC 5524 URLFETCH items)
    caps += ["ACL", "RIGHTS=texk"]  # RFC 4314 §2.1, §3: commands/acl.py, enforced in namespaces.py
    caps.append("CATENATE")  # RFC 4469: URL parts resolved by urlauth.resolve_url
    if not s.conn.compressed:
        caps.append("COMPRESS=DEFLATE")
    return caps


def cap_code(s: SessionContext) -> str:
    """The ``CAPABILITY ...`` response code (greeting, LOGIN/AUTHENTICATE OK)."""
    return "CAPABILITY " + " ".join(capabilities(s))
