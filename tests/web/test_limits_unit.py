"""The web hardening helpers without a server: same-site paths, bidi controls, admin error
keys, and `limits.BodyLimit` driven as an ASGI app."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mailhouse.accounts.admin import AdminError
from mailhouse.store.api import AlreadyExists, NotFound
from mailhouse.web.admin import ERRORS, error_key
from mailhouse.web.common import same_site_path
from mailhouse.web.limits import FORM_LIMIT, BodyLimit, compose_limit
from mailhouse.web.mailview import no_bidi, safe_filename


@pytest.mark.parametrize(
    "url",
    [
        "//evil.test",
        "/\\evil.test",
        "/\t/evil.test",
        "/\n/evil.test",
        "/\r\n/e",
        "https://e.test",
        "",
        "x/y",
        "/ /e",
    ],
)
def test_off_site_paths_refused(url: str) -> None:
    assert not same_site_path(url)


@pytest.mark.parametrize("url", ["/", "/mail/3", "/mail/3?q=a%20b", "/a\\b"])
def test_same_site_paths_kept(url: str) -> None:
    assert same_site_path(url)


def test_bidi_controls_removed() -> None:
    controls = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    assert no_bidi(f"a{controls}b") == "ab"
    assert safe_filename("invoice\u202efdp.exe", "x") == "invoicefdp.exe"
    assert no_bidi("שלום abc") == "שלום abc"  # right-to-left letters themselves stay


def test_admin_errors_are_keys_of_the_table() -> None:
    cases: list[tuple[Exception, str]] = [
        (AdminError("password too short: at least 8 characters"), "password too short"),
        (AdminError("quota must be a whole number"), "quota not a number"),
        (AdminError("domain x.test is not hosted here; add it"), "domain not hosted"),
        (AdminError("not a valid address"), "invalid name"),
        (AlreadyExists("account exists"), "already exists"),
        (NotFound("no such account"), "not found"),
    ]
    for exc, key in cases:
        assert error_key(exc) == key and key in ERRORS


async def _call(
    app: BodyLimit, method: str, path: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> tuple[list[dict[str, Any]], int]:
    sent: list[dict[str, Any]] = []
    pending = list(chunks)
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        body = pending.pop(0) if pending else b""
        read += len(body)
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    await app(scope, receive, send)
    return sent, read


async def _echo(scope: Any, receive: Any, send: Any) -> None:
    n = 0
    while True:
        m = await receive()
        n += len(m.get("body", b""))
        if not m.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(n).encode()})


def test_body_limit_by_content_length_and_framing() -> None:
    app = BodyLimit(_echo, max_message_size=10 * 1024 * 1024)
    big = str(FORM_LIMIT + 1).encode()
    sent, read = asyncio.run(_call(app, "POST", "/login", [(b"content-length", big)], [b"x"]))
    assert sent[0]["status"] == 413 and read == 0
    assert (b"connection", b"close") in sent[0]["headers"]
    both = [(b"content-length", b"5"), (b"transfer-encoding", b"chunked")]
    sent, read = asyncio.run(_call(app, "POST", "/login", both, [b"0\r\n\r\n"]))
    assert sent[0]["status"] == 400 and read == 0
    ok = str(compose_limit(10 * 1024 * 1024)).encode()
    sent, _ = asyncio.run(_call(app, "POST", "/compose", [(b"content-length", ok)], [b"x"]))
    assert sent[0]["status"] == 200


def test_body_limit_counts_chunked_bodies() -> None:
    from starlette.exceptions import HTTPException

    app = BodyLimit(_echo, max_message_size=10 * 1024 * 1024)
    chunks = [b"x" * 16384] * 10
    with pytest.raises(HTTPException) as e:  # the app's exception handler turns it into the 413 page
        asyncio.run(_call(app, "POST", "/login", [(b"transfer-encoding", b"chunked")], chunks))
    assert e.value.status_code == 413
    sent, read = asyncio.run(_call(app, "POST", "/login", [], [b"x" * 1000] * 3))
    assert sent[0]["status"] == 200 and read == 3000
