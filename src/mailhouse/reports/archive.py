"""Find the report attached to a message and unpack it, refusing bombs cleanly.

RFC 7489 §7.2.1.1: a DMARC aggregate report is one XML file, sent gzip-compressed
(``.xml.gz``, ``application/gzip``) or zipped (``.zip``, ``application/zip``); RFC 8460 §5.3:
a TLS-RPT report is gzip-compressed JSON (``application/tlsrpt+gzip``) or plain
``application/tlsrpt+json``, and the message carries ``TLS-Report-Domain``.

Invariants: nothing here reads more than its named limit. A message above
`MAX_MESSAGE_BYTES` is not parsed; a decompressed report above `MAX_REPORT_BYTES` (whatever
the archive claims) or a zip with more than `MAX_ZIP_MEMBERS` members is refused with
`ReportError` — the caller keeps the message and logs the error.
"""

from __future__ import annotations

import gzip
import io
import zipfile
import zlib
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from typing import Protocol

from mailhouse.store.api import ReportKind

MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # a report message bigger than this is kept, not parsed
MAX_REPORT_BYTES = 32 * 1024 * 1024  # decompressed report: far above a big provider's daily report
MAX_ZIP_MEMBERS = 4  # RFC 7489 §7.2.1.1: one XML file per zip; a few stray members are tolerated
READ_CHUNK = 64 * 1024


class ReportError(Exception):
    """A report that cannot be read: malformed, unsafe or over a limit (the message is kept)."""


@dataclass(frozen=True, slots=True)
class Attachment:
    kind: ReportKind
    filename: str
    content_type: str
    payload: bytes  # still compressed


_GZIP_TYPES = {"application/gzip", "application/x-gzip", "application/tlsrpt+gzip"}
_ZIP_TYPES = {"application/zip", "application/x-zip-compressed", "application/x-zip"}
_PLAIN_TYPES = {"text/xml", "application/xml", "application/tlsrpt+json", "application/json"}
_SUFFIXES = (".xml.gz", ".json.gz", ".zip", ".xml", ".json", ".gz")


def _kind(msg: Message, ctype: str, filename: str) -> ReportKind:
    # RFC 8460 §5.3: TLS-RPT media types and the TLS-Report-Domain header
    if ctype.startswith("application/tlsrpt+") or msg.get("TLS-Report-Domain") is not None:
        return ReportKind.TLSRPT
    if filename.endswith((".json", ".json.gz")):
        return ReportKind.TLSRPT
    return ReportKind.DMARC


def find_report(data: bytes) -> Attachment | None:
    """The first report-shaped part of message DATA, or None (not a report: filed as usual)."""
    msg = message_from_bytes(data)
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type().lower()
        filename = (part.get_filename() or "").lower()
        known = ctype in _GZIP_TYPES | _ZIP_TYPES | _PLAIN_TYPES
        if not known and not (ctype == "application/octet-stream" and filename.endswith(_SUFFIXES)):
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or not payload:
            continue
        return Attachment(_kind(msg, ctype, filename), filename, ctype, payload)
    return None


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _bounded_read(stream: _Readable, what: str) -> bytes:
    out = bytearray()
    while True:
        chunk = stream.read(READ_CHUNK)
        if not chunk:
            return bytes(out)
        out += chunk
        if len(out) > MAX_REPORT_BYTES:
            raise ReportError(f"{what} decompresses to more than {MAX_REPORT_BYTES} octets")


def unpack(att: Attachment) -> bytes:
    """The report document inside ATT (gzip, zip or plain), at most MAX_REPORT_BYTES."""
    data = att.payload
    try:
        if data[:2] == b"\x1f\x8b":  # gzip magic (RFC 1952 §2.3.1), whatever the label says
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                return _bounded_read(gz, "gzip report")
        if data[:4] == b"PK\x03\x04":  # zip local file header
            return _unzip(data)
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as e:
        raise ReportError(f"broken archive: {e}") from None
    if len(data) > MAX_REPORT_BYTES:
        raise ReportError(f"report larger than {MAX_REPORT_BYTES} octets")
    return data


def _unzip(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = [i for i in zf.infolist() if not i.is_dir()]
        if not members:
            raise ReportError("empty zip")
        if len(members) > MAX_ZIP_MEMBERS:
            raise ReportError(f"zip with {len(members)} members (at most {MAX_ZIP_MEMBERS})")
        info = next((i for i in members if i.filename.lower().endswith(".xml")), members[0])
        if info.file_size > MAX_REPORT_BYTES:  # declared size; the read below is bounded anyway
            raise ReportError(f"zip member {info.filename!r} declares {info.file_size} octets")
        with zf.open(info) as f:
            return _bounded_read(f, "zip report")
