"""Logging set-up. Every record carries a connection or queue id (`cid`) via `ConnLogger`.

Two formats (`[log] format`): "text" (`TIME LEVEL LOGGER [cid] message`, the default) and
"json" (one object per line: `time`, `level`, `logger`, `cid` when the line is about a
connection or message, `message`, `exception` when there is one) for log shippers.

Invariant: credentials and message bodies never reach a log line; untrusted text
(HELO names, addresses) is escaped with `safe()` before it is logged.
"""

from __future__ import annotations

import datetime
import json
import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Any

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def safe(value: bytes | str, limit: int = 200) -> str:
    """Escape CR, LF and control characters so untrusted input can't forge log lines."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    out = []
    for ch in value[:limit]:
        o = ord(ch)
        if o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    if len(value) > limit:
        out.append("…")
    return "".join(out)


class ConnLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every message with the connection / queue id."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        if not self.extra:
            return msg, kwargs
        kwargs["extra"] = {**kwargs.get("extra", {}), "cid": self.extra["cid"]}  # JsonFormatter's field
        return f"[{self.extra['cid']}] {msg}", kwargs


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the fields of the text line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        cid = getattr(record, "cid", None)
        if cid is not None and message.startswith(f"[{cid}] "):
            message = message[len(str(cid)) + 3 :]  # the text format's prefix: a field here
        out: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
        }
        if cid is not None:
            out["cid"] = str(cid)
        out["message"] = message
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup(level: str = "INFO", fmt: str = "text", file: Path | None = None) -> None:
    """Log at LEVEL in FMT to standard error, or with FILE (`[log] file`, `serve` only) appended to
    that file — reopened when it is moved or removed (logrotate's default `create` rotation;
    WatchedFileHandler checks the path before each line), so no copytruncate and no signal is needed."""
    # Records carry no caller frame, thread or process fields (the format uses none of them):
    # the Logging HOWTO's "Optimization" settings, a third of a record's cost on the
    # per-connection path (one line per connection and per message on port 25).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler: logging.Handler
    if file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.handlers.WatchedFileHandler(file, encoding="utf-8")
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler], force=True)
