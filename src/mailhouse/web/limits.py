"""HTTP request bounds: a request body is limited before it is read (issue 12, item 2 and 6).

`BodyLimit` is a pure ASGI middleware in front of the Starlette app:

- A request with both `Content-Length` and `Transfer-Encoding` is refused with 400 and
  the connection closed (RFC 9112 §6.1: such a message "ought to be handled as an error"
  and the server "MUST close the connection after responding"). uvicorn's h11 parser
  accepts it and frames by the chunked coding, so a proxy that framed by Content-Length
  would see a second request hidden in the body (request smuggling / proxy desync).
- A declared `Content-Length` above the route's limit is answered 413 at once, before a
  byte of the body is read (RFC 9110 §15.5.14), and the connection is closed.
- A chunked body is counted as it arrives; the first chunk past the limit raises
  `HTTPException(413)` inside the handler reading it (so the app's error page answers)
  and the connection is closed after the response.

Limits (`limit_for`): `FORM_LIMIT` for every route except compose, whose body may carry the
message text and attachments: the configured `max_message_size` plus `COMPOSE_OVERHEAD`.
Form parsing is bounded too (`common.checked_form`): at most `MAX_FORM_FIELDS` fields, each
at most `FORM_LIMIT` (compose: `max_message_size`); uploaded files are spooled to disk by
Starlette's multipart parser beyond 1 MiB (`SpooledTemporaryFile`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from mailhouse.message import vcard

FORM_LIMIT = 64 * 1024  # bytes of a request body (login, actions, admin forms, autodiscover)
COMPOSE_OVERHEAD = 1024 * 1024  # multipart framing and the other compose fields
MAX_FORM_FIELDS = 200  # fields of one form (a page lists 50 messages; compose has ~30 fields)
COMPOSE_PATH = "/compose"
VCARD_IMPORT_PATH = "/contacts/import"  # a .vcf file: message.vcard.MAX_BYTES plus the form's framing

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def compose_limit(max_message_size: int) -> int:
    """Body limit of `POST /compose`: anything larger makes a message over the size limit."""
    return max_message_size + COMPOSE_OVERHEAD


def route_limit(method: str, path: str, max_message_size: int) -> int:
    """The request body limit of METHOD PATH, in bytes."""
    if method == "POST" and path == COMPOSE_PATH:
        return compose_limit(max_message_size)
    if method == "POST" and path == VCARD_IMPORT_PATH:
        return vcard.MAX_BYTES + FORM_LIMIT
    return FORM_LIMIT


async def refuse(send: Send, status: int, text: str) -> None:
    """Answer STATUS and close the connection (the unread body is never read)."""
    body = text.encode() + b"\n"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse request bodies over the route's limit (413) and ambiguous framing (400)."""

    def __init__(self, app: ASGIApp, max_message_size: int) -> None:
        self.app = app
        self.max_message_size = max_message_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        if length is not None and chunked:
            # RFC 9112 §6.1: both framings present → error, then close the connection
            await refuse(send, 400, "Content-Length together with Transfer-Encoding refused")
            return
        limit = route_limit(scope["method"], scope["path"], self.max_message_size)
        if length is not None and (not length.strip().isdigit() or int(length) > limit):
            await refuse(send, 413, f"request body larger than {limit} bytes")  # RFC 9110 §15.5.14
            return
        received = 0
        exceeded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise HTTPException(413, f"request body larger than {limit} bytes")
            return message

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and exceeded:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = dict(message, headers=[*headers, (b"connection", b"close")])
            await send(message)

        await self.app(scope, limited_receive, send_closing)
