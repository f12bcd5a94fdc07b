"""A tiny raw IMAP client and response-data parser for oracle (golden) tests.

imaplib splices literals into tuples and leaves the structure to the caller; comparing two
servers needs the *values*: this module reads whole responses (literals included) and parses
IMAP data into Python values: ``None`` (NIL), ``int``, ``bytes`` (atom, quoted string or
literal alike — so the quoted-vs-literal choice of a server is normalised away here, see
:func:`parse`), and ``list`` for parenthesised lists. Iterative, no recursion.
"""

from __future__ import annotations

import re
import socket
from typing import Any

_NUM = re.compile(rb"\d+\Z")


class Atom(bytes):
    """An unquoted atom (kept distinct so flags/keywords can be told from strings if needed)."""


def parse(data: bytes, pos: int = 0, *, until_eol: bool = True) -> tuple[list[Any], int]:
    """Parse space-separated IMAP values from ``data[pos:]`` up to CRLF (or the end)."""
    root: list[Any] = []
    stack: list[list[Any]] = [root]
    n = len(data)
    i = pos
    while i < n:
        c = data[i]
        if c == 0x20:
            i += 1
        elif c == 0x0D and data[i : i + 2] == b"\r\n":
            if len(stack) == 1 and until_eol:
                return root, i + 2
            i += 2
        elif c == 0x28:  # (
            new: list[Any] = []
            stack[-1].append(new)
            stack.append(new)
            i += 1
        elif c == 0x29:  # )
            stack.pop()
            i += 1
        elif c == 0x22:  # quoted string
            j = i + 1
            out = bytearray()
            while data[j] != 0x22:
                if data[j] == 0x5C:
                    j += 1
                out.append(data[j])
                j += 1
            stack[-1].append(bytes(out))
            i = j + 1
        elif c == 0x7B or (c == 0x7E and data[i + 1 : i + 2] == b"{"):  # {n} or ~{n} literal
            j = data.index(b"}", i)
            size = int(data[i + (2 if c == 0x7E else 1) : j].rstrip(b"+"))
            start = j + 3  # "}\r\n"
            stack[-1].append(bytes(data[start : start + size]))
            i = start + size
        else:  # atom, possibly with [...] (BODY[1.MIME]) and <...>
            j = i
            depth = 0
            while j < n:
                d = data[j]
                if d == 0x5B:
                    depth += 1
                elif d == 0x5D:
                    depth -= 1
                elif depth == 0 and d in (0x20, 0x28, 0x29, 0x0D):
                    break
                j += 1
            tok = data[i:j]
            if tok.upper() == b"NIL":
                stack[-1].append(None)
            elif _NUM.match(tok):
                stack[-1].append(int(tok))
            else:
                stack[-1].append(Atom(tok))
            i = j
    return root, i


class RawIMAP:
    """Blocking line/literal-aware client: ``cmd("UID FETCH 1:* (UID)")`` → untagged responses,
    each the raw bytes of one response (literals included)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.n = 0
        self.greeting = self._response()

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n") + 2
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def _response(self) -> bytes:
        out = b""
        while True:
            line = self._line()
            out += line
            m = re.search(rb"~?\{(\d+)\+?\}\r\n\Z", line)
            if not m:
                return out
            size = int(m.group(1))
            while len(self.buf) < size:
                self._fill()
            out += self.buf[:size]
            self.buf = self.buf[size:]

    def cmd(self, text: str | bytes, *, check: bool = True) -> tuple[list[bytes], bytes]:
        self.n += 1
        tag = b"G%d" % self.n
        line = text.encode() if isinstance(text, str) else text
        self.sock.sendall(tag + b" " + line + b"\r\n")
        untagged: list[bytes] = []
        while True:
            resp = self._response()
            if resp.startswith(tag + b" "):
                if check and not resp[len(tag) + 1 :].startswith(b"OK"):
                    raise RuntimeError(f"{line!r} failed: {resp!r}")
                return untagged, resp
            if resp.startswith(b"+"):
                raise RuntimeError(f"unexpected continuation for {line!r}")
            untagged.append(resp)

    def append(self, mailbox: str, message: bytes, flags: str = "", date: str | None = None) -> bytes:
        """APPEND with a non-synchronising literal when offered, else synchronising."""
        self.n += 1
        tag = b"G%d" % self.n
        head = tag + b" APPEND " + mailbox.encode()
        if flags:
            head += b" (" + flags.encode() + b")"
        if date:
            head += b' "' + date.encode() + b'"'
        self.sock.sendall(head + b" {%d}\r\n" % len(message))
        cont = self._response()
        if not cont.startswith(b"+"):
            raise RuntimeError(f"APPEND refused: {cont!r}")
        self.sock.sendall(message + b"\r\n")
        while True:
            resp = self._response()
            if resp.startswith(tag + b" "):
                if not resp[len(tag) + 1 :].startswith(b"OK"):
                    raise RuntimeError(f"APPEND failed: {resp!r}")
                return resp

    def close(self) -> None:
        try:
            self.cmd("LOGOUT", check=False)
        except Exception:
            pass
        self.sock.close()


def fetch_items(responses: list[bytes]) -> dict[int, dict[str, Any]]:
    """``* n FETCH (K V ...)`` responses → {n: {K: V}} (item names upper-cased)."""
    out: dict[int, dict[str, Any]] = {}
    for r in responses:
        vals, _ = parse(r)
        if len(vals) >= 4 and vals[2] == b"FETCH":
            items = vals[3]
            d = out.setdefault(vals[1], {})
            for k in range(0, len(items) - 1, 2):
                d[bytes(items[k]).decode().upper()] = items[k + 1]
    return out


def numbers_of(responses: list[bytes], kind: bytes) -> list[int]:
    """Numbers of ``* SEARCH ...`` / ``* SORT ...`` (ignoring a trailing (MODSEQ n))."""
    for r in responses:
        vals, _ = parse(r)
        if len(vals) >= 2 and vals[1] == kind:
            return [v for v in vals[2:] if isinstance(v, int)]
    return []


def thread_of(responses: list[bytes]) -> bytes:
    for r in responses:
        if r.startswith(b"* THREAD"):
            return r[len(b"* THREAD") :].strip()
    return b""
