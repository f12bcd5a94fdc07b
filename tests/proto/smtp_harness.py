"""Test harness for the sans-IO SMTP server core: run one scenario three ways."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mailhouse.proto.smtp import (
    NEED_DATA,
    REPLY_BARE_NEWLINE,
    REPLY_BYE,
    REPLY_READY_TLS,
    REPLY_START_DATA,
    REPLY_TOO_BIG,
    Auth,
    AuthResponse,
    Bdat,
    BdatChunkEnd,
    CommandError,
    Data,
    Event,
    Helo,
    Help,
    Mail,
    MessageChunk,
    MessageEnd,
    Noop,
    Quit,
    Rcpt,
    Reply,
    Rset,
    SMTPServerProtocol,
    StartTLS,
    TooManyErrors,
    Vrfy,
)

Responder = Callable[[Event], Reply | None]
TRAILER = b"NOOP\r\n"


def default_reply(ev: Event) -> Reply:
    """What a permissive adapter would answer."""
    if isinstance(ev, CommandError | TooManyErrors):
        return ev.reply
    if isinstance(ev, Data):
        return REPLY_START_DATA
    if isinstance(ev, MessageEnd):
        if ev.too_big:
            return REPLY_TOO_BIG
        if ev.bare_newline:
            return REPLY_BARE_NEWLINE
        return Reply(250, "2.0.0", "Ok: queued")
    if isinstance(ev, Quit):
        return REPLY_BYE
    if isinstance(ev, StartTLS):
        return REPLY_READY_TLS
    if isinstance(ev, Auth):
        return Reply(334, None, "")
    if isinstance(ev, AuthResponse):
        return Reply(235, "2.7.0", "Authentication successful")
    if isinstance(ev, Vrfy):
        return Reply(252, "2.0.0", "Cannot VRFY")
    if isinstance(ev, Help):
        return Reply(214, "2.0.0", "See RFC 5321")
    if isinstance(ev, Helo | Mail | Rcpt | Rset | Noop | BdatChunkEnd):
        return Reply.ok()
    raise AssertionError(f"unexpected event {ev!r}")


def needs_reply(ev: Event) -> bool:
    return not isinstance(ev, MessageChunk | Bdat)


def merge(events: Iterable[Event]) -> list[Event]:
    """Join consecutive MessageChunk events (their boundaries depend on input chunking)."""
    out: list[Event] = []
    for ev in events:
        if isinstance(ev, MessageChunk) and out and isinstance(out[-1], MessageChunk):
            out[-1] = MessageChunk(out[-1].data + ev.data, ev.crlf)
        else:
            out.append(ev)
    return out


def drive(
    chunks: Iterable[bytes],
    responder: Responder | None = None,
    proto: SMTPServerProtocol | None = None,
    **kw: int,
) -> tuple[list[Event], SMTPServerProtocol, bytes]:
    """Feed *chunks*, answer every event; returns (merged events, core, bytes sent)."""
    kw.setdefault("max_message_size", 10_000)
    p = proto or SMTPServerProtocol(**kw)
    if not p.greeted:
        p.greeting("mx.test")
    events: list[Event] = []
    sent = b""
    for chunk in chunks:
        p.receive_data(chunk)
        while True:
            ev = p.next_event()
            if ev is NEED_DATA:
                break
            events.append(ev)
            if needs_reply(ev):
                reply = responder(ev) if responder else None
                sent += p.send(reply if reply is not None else default_reply(ev))
    return merge(events), p, sent


def three_ways(data: bytes, responder: Responder | None = None, **kw: int) -> list[Event]:
    """Run the scenario whole, byte by byte and with trailing data; all must agree."""
    whole, _, sent_whole = drive([data], responder, **kw)
    bytewise, _, sent_bytes = drive([data[i : i + 1] for i in range(len(data))], responder, **kw)
    assert bytewise == whole
    assert sent_bytes == sent_whole
    trailing, _, _ = drive([data + TRAILER], responder, **kw)
    assert trailing[: len(whole)] == whole
    return whole


def types(events: Iterable[Event]) -> list[type]:
    return [type(e) for e in events]


def body(events: Iterable[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, MessageChunk))
