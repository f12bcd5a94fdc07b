"""What a Sieve run decided: typed, frozen actions in script order (RFC 5228 §4 and extensions).

Invariants: every action is a frozen dataclass; :class:`SieveResult` lists them in the order the
script performed them, after RFC 5228 §2.10.6 de-duplication (a second ``fileinto`` to the same
mailbox, a second ``redirect`` to the same address, ``keep`` after ``keep``, merge into the first);
``implicit_keep`` is True when no action cancelled it (§2.10.2). When ``error`` is set the run
failed (§2.10.6) and the caller keeps the message in INBOX: ``actions`` is then empty and
``implicit_keep`` True, so a failing script never loses mail.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailhouse.proto.sieve.errors import SieveRuntimeError

__all__ = [
    "Action",
    "AddHeader",
    "DeleteHeader",
    "Discard",
    "FileInto",
    "Keep",
    "Notify",
    "Redirect",
    "Reject",
    "SieveResult",
    "Vacation",
]


@dataclass(frozen=True, slots=True)
class Keep:
    """Store in INBOX (RFC 5228 §4.3); ``flags`` from :flags or the imap4flags internal variable."""

    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FileInto:
    """RFC 5228 §4.1; ``copy`` RFC 3894; ``create`` RFC 5490 §3.2; ``mailboxid`` RFC 9042 §3."""

    mailbox: str
    flags: tuple[str, ...] = ()
    create: bool = False
    copy: bool = False
    mailboxid: str | None = None


@dataclass(frozen=True, slots=True)
class Redirect:
    """RFC 5228 §4.2 (``copy``: RFC 3894). The caller sends it through the queue with loop checks."""

    address: str
    copy: bool = False


@dataclass(frozen=True, slots=True)
class Discard:
    """RFC 5228 §4.4: silently drop (cancels the implicit keep)."""


@dataclass(frozen=True, slots=True)
class Reject:
    """RFC 5429: refuse with ``reason`` (``ereject``: at SMTP time when possible, §2.1)."""

    reason: str
    ereject: bool = False


@dataclass(frozen=True, slots=True)
class Vacation:
    """RFC 5230 (+ RFC 6131 seconds): a reply is requested to ``to`` (the envelope sender).

    ``skip_reason`` is set when an RFC 5230 §4.5 / RFC 3834 §2 rule says not to answer this
    message (null sender, auto-submitted, list or bulk mail, not addressed to the user, own
    address); the caller then sends nothing. Otherwise the caller sends at most one reply per
    (``handle``, sender) within ``seconds`` (tracked in the store).
    """

    reason: str
    subject: str | None
    from_: str | None
    addresses: tuple[str, ...]
    seconds: int
    handle: str
    mime: bool
    to: str
    skip_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Notify:
    """RFC 5435 §3: a notification through ``method`` (validated; only mailto, RFC 5436)."""

    method: str
    from_: str | None = None
    importance: str = "2"
    options: tuple[str, ...] = ()
    message: str | None = None


@dataclass(frozen=True, slots=True)
class AddHeader:
    """RFC 5293 §4: add ``name: value`` at the top (or the bottom with ``last``)."""

    name: str
    value: str
    last: bool = False


@dataclass(frozen=True, slots=True)
class DeleteHeader:
    """RFC 5293 §5: delete the occurrences of ``name`` at ``indexes`` (0-based, top first)."""

    name: str
    indexes: tuple[int, ...]


Action = Keep | FileInto | Redirect | Discard | Reject | Vacation | Notify | AddHeader | DeleteHeader


@dataclass(frozen=True, slots=True)
class SieveResult:
    actions: tuple[Action, ...]
    implicit_keep: bool
    implicit_keep_flags: tuple[str, ...] = ()
    error: SieveRuntimeError | None = None
    # duplicate-tracking keys (RFC 7352 §3.1) the caller records only because the run succeeded
    duplicate_keys: tuple[tuple[str, int], ...] = ()

    @property
    def header_edits(self) -> tuple[AddHeader | DeleteHeader, ...]:
        return tuple(a for a in self.actions if isinstance(a, (AddHeader, DeleteHeader)))

    @property
    def keeps(self) -> bool:
        """The message is stored in INBOX (explicit keep or implicit keep)."""
        return self.implicit_keep or any(isinstance(a, Keep) for a in self.actions)
