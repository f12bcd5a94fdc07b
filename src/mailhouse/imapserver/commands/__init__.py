"""The IMAP command table: every command the server answers, its handler and the states it is valid in.

RFCs: RFC 9051 §6 (commands by state: §6.1 any state, §6.2 not authenticated, §6.3
authenticated, §6.4 selected; the selected state allows the authenticated commands too) and
§6.4.9 (the ``UID`` forms); the extension RFCs are cited in each handler module.

Structure (DESIGN.md "Servers"): one explicit dispatch table :data:`COMMANDS` (command name as
the parser spells it, ``UID X`` for the UID forms → handler) and one state gate
:data:`ALLOWED`. One module per command family; a handler takes the
:class:`~mailhouse.imapserver.context.SessionContext` and the parsed ``Command`` and returns
``Ok | None`` or raises an ``errors`` exception; the session (``session.py``) looks the name up
here, checks the state and catches errors once per command.

Invariant: the names here are exactly the parser's (``proto.imap`` ``COMMANDS`` and
``UID_COMMANDS``) — tests/imapserver/test_command_table.py checks it — so a command is never
parsed and then answered "not supported". Modules of this package import only what lies below
them (``context``, ``errors``, the helpers, ``updates``), never each other or the session.
"""

from __future__ import annotations

from ..context import Handler, State
from . import (
    acl,
    any_state,
    append,
    auth,
    copy_move,
    expunge,
    fetch,
    idle,
    mailboxes,
    metadata,
    notify,
    quota,
    search,
    select,
    store,
    urlauth,
)

COMMANDS: dict[str, Handler] = {
    # RFC 9051 §6.1: any state
    "CAPABILITY": any_state.cmd_capability,
    "NOOP": any_state.cmd_noop,
    "LOGOUT": any_state.cmd_logout,
    "ID": any_state.cmd_id,  # RFC 2971
    # RFC 9051 §6.2: not authenticated
    "STARTTLS": auth.cmd_starttls,
    "LOGIN": auth.cmd_login,
    "AUTHENTICATE": auth.cmd_authenticate,
    # authenticated
    "UNAUTHENTICATE": auth.cmd_unauthenticate,  # RFC 8437
    "ENABLE": auth.cmd_enable,  # RFC 5161
    "COMPRESS": auth.cmd_compress,  # RFC 4978
    "NAMESPACE": mailboxes.cmd_namespace,  # RFC 2342
    "CREATE": mailboxes.cmd_create,
    "DELETE": mailboxes.cmd_delete,
    "RENAME": mailboxes.cmd_rename,
    "SUBSCRIBE": mailboxes.cmd_subscribe,
    "UNSUBSCRIBE": mailboxes.cmd_unsubscribe,
    "LIST": mailboxes.cmd_list,
    "LSUB": mailboxes.cmd_lsub,
    "STATUS": mailboxes.cmd_status,
    "SELECT": select.cmd_select,
    "EXAMINE": select.cmd_select,
    "APPEND": append.cmd_append,
    "IDLE": idle.cmd_idle,  # RFC 2177
    "NOTIFY": notify.cmd_notify,  # RFC 5465
    "ESEARCH": search.cmd_esearch,  # RFC 7377
    "GETQUOTA": quota.cmd_getquota,  # RFC 9208
    "GETQUOTAROOT": quota.cmd_getquotaroot,
    "SETQUOTA": quota.cmd_setquota,
    "GETMETADATA": metadata.cmd_getmetadata,  # RFC 5464
    "SETMETADATA": metadata.cmd_setmetadata,
    "GENURLAUTH": urlauth.cmd_genurlauth,  # RFC 4467
    "RESETKEY": urlauth.cmd_resetkey,
    "URLFETCH": urlauth.cmd_urlfetch,
    "SETACL": acl.cmd_setacl,  # RFC 4314 §3
    "DELETEACL": acl.cmd_deleteacl,
    "GETACL": acl.cmd_getacl,
    "LISTRIGHTS": acl.cmd_listrights,
    "MYRIGHTS": acl.cmd_myrights,
    # RFC 9051 §6.4: selected
    "CLOSE": select.cmd_close,
    "UNSELECT": select.cmd_unselect,  # RFC 3691
    "CHECK": select.cmd_check,  # RFC 3501 §6.4.1
    "EXPUNGE": expunge.cmd_expunge,
    "UID EXPUNGE": expunge.cmd_expunge,  # RFC 4315 §2.1
    "FETCH": fetch.cmd_fetch,
    "UID FETCH": fetch.cmd_fetch,
    "STORE": store.cmd_store,
    "UID STORE": store.cmd_store,
    "COPY": copy_move.cmd_copy,
    "UID COPY": copy_move.cmd_copy,
    "MOVE": copy_move.cmd_move,  # RFC 6851
    "UID MOVE": copy_move.cmd_move,
    "SEARCH": search.cmd_search,
    "UID SEARCH": search.cmd_search,
    "SORT": search.cmd_sort,  # RFC 5256
    "UID SORT": search.cmd_sort,
    "THREAD": search.cmd_thread,
    "UID THREAD": search.cmd_thread,
    "CANCELUPDATE": search.cmd_cancelupdate,  # RFC 5267 §4.3.5
}

_ANY = frozenset(("CAPABILITY", "NOOP", "LOGOUT", "ID"))
_NOT_AUTHENTICATED = _ANY | {"STARTTLS", "LOGIN", "AUTHENTICATE"}
_AUTHENTICATED = _ANY | {
    "UNAUTHENTICATE",
    "ENABLE",
    "COMPRESS",
    "NAMESPACE",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "LIST",
    "LSUB",
    "STATUS",
    "SELECT",
    "EXAMINE",
    "APPEND",
    "IDLE",
    "NOTIFY",
    "ESEARCH",  # RFC 7377 §2: authenticated and selected states
    "GETQUOTA",
    "GETQUOTAROOT",
    "SETQUOTA",
    "GETMETADATA",
    "SETMETADATA",
    "GENURLAUTH",
    "RESETKEY",
    "URLFETCH",
    "SETACL",  # RFC 4314 §3: authenticated and selected states
    "DELETEACL",
    "GETACL",
    "LISTRIGHTS",
    "MYRIGHTS",
}
_SELECTED = _AUTHENTICATED | {
    "CLOSE",
    "UNSELECT",
    "CHECK",
    "EXPUNGE",
    "UID EXPUNGE",
    "FETCH",
    "UID FETCH",
    "STORE",
    "UID STORE",
    "COPY",
    "UID COPY",
    "MOVE",
    "UID MOVE",
    "SEARCH",
    "UID SEARCH",
    "SORT",
    "UID SORT",
    "THREAD",
    "UID THREAD",
    "CANCELUPDATE",
}

ALLOWED: dict[State, frozenset[str]] = {
    State.NOT_AUTHENTICATED: frozenset(_NOT_AUTHENTICATED),
    State.AUTHENTICATED: frozenset(_AUTHENTICATED),
    State.SELECTED: frozenset(_SELECTED),
    State.LOGOUT: frozenset(),
}
"""RFC 9051 §3 / §6: the commands valid in each state (nothing after LOGOUT)."""

__all__ = ["ALLOWED", "COMMANDS"]
