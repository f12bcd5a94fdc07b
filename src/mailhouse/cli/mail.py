"""`mailhouse mail send|list|read`: a small command-line MUA for any mail server.

- `send` submits over SMTP with AUTH (RFC 6409 submission; RFC 4954): implicit TLS
  (RFC 8314, port 465), STARTTLS (RFC 3207, port 587) or, only when asked for, none.
  `send --requiretls` asks for TLS on every hop (RFC 8689: the REQUIRETLS MAIL parameter,
  sent only over TLS to a server that advertises it; otherwise nothing is sent).
- `list [FOLDER]` and `read UID` speak IMAP4rev1/rev2 (RFC 3501/9051) over TLS or STARTTLS.
Uses the standard library clients (smtplib, imaplib, email), so it works against
Mailhouse, Postfix/Dovecot or any other server.

Credentials never come from argv: they come from the client config
(`~/.config/mailhouse/client.toml` or `--client-config`), else the first line of stdin
(`--password-stdin`; for `send` the body follows), else a terminal prompt.

Client config (TOML)::

    address = "alice@example.org"       # From: and the default user name
    username = "alice@example.org"      # optional
    password = "…"                      # optional; keep the file mode 0600
    insecure = false                    # accept self-signed certificates
    [smtp]
    host = "mail.example.org"
    port = 587
    security = "starttls"               # "tls" (implicit), "starttls" or "none"
    [imap]
    host = "mail.example.org"
    port = 993
    security = "tls"
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.header
import email.policy
import email.utils
import getpass
import imaplib
import mimetypes
import re
import smtplib
import ssl
import sys
import tomllib
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = Path("~/.config/mailhouse/client.toml")
TIMEOUT = 60.0  # seconds per network operation
DEFAULT_PORTS = {
    ("smtp", "tls"): 465,
    ("smtp", "starttls"): 587,
    ("smtp", "none"): 587,
    ("imap", "tls"): 993,
    ("imap", "starttls"): 143,
    ("imap", "none"): 143,
}


class ClientError(Exception):
    pass


@dataclass(slots=True)
class Server:
    host: str
    port: int
    security: str  # "tls" | "starttls" | "none"


@dataclass(slots=True)
class ClientConfig:
    address: str
    username: str
    password: str | None
    insecure: bool
    smtp: Server | None
    imap: Server | None


def _server(data: dict[str, Any], kind: str, path: str) -> Server | None:
    t = data.get(kind)
    if t is None:
        return None
    if not isinstance(t, dict) or "host" not in t:
        raise ClientError(f"{path}: [{kind}] needs host")
    sec = str(t.get("security", "tls" if kind == "imap" else "starttls")).lower()
    if sec not in ("tls", "starttls", "none"):
        raise ClientError(f"{path}: {kind}.security: must be tls, starttls or none")
    return Server(str(t["host"]), int(t.get("port") or DEFAULT_PORTS[(kind, sec)]), sec)


def load_client_config(path: str | None) -> ClientConfig:
    p = Path(path).expanduser() if path else DEFAULT_CONFIG.expanduser()
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ClientError(f"no client config at {p}; see `mailhouse mail --help`") from None
    except tomllib.TOMLDecodeError as e:
        raise ClientError(f"{p}: {e}") from None
    address = str(data.get("address", ""))
    if "@" not in address:
        raise ClientError(f"{p}: address: must be your e-mail address")
    pw = data.get("password")
    return ClientConfig(
        address=address,
        username=str(data.get("username") or address),
        password=str(pw) if pw is not None else None,
        insecure=bool(data.get("insecure", False)),
        smtp=_server(data, "smtp", str(p)),
        imap=_server(data, "imap", str(p)),
    )


def _tls_context(insecure: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _password(cc: ClientConfig, args: argparse.Namespace) -> str:
    if cc.password is not None:
        return cc.password
    if getattr(args, "password_stdin", False):
        return sys.stdin.readline().rstrip("\r\n")
    if sys.stdin.isatty():
        return getpass.getpass(f"Password for {cc.username}: ")
    raise ClientError("no password: put it in the client config, use --password-stdin or run on a terminal")


# ------------------------------------------------------------------ send
def build(cc: ClientConfig, args: argparse.Namespace, body: str) -> tuple[EmailMessage, list[str]]:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = args.sender or cc.address
    rcpts: list[str] = []
    for name, values in (("To", args.to), ("Cc", args.cc), ("Bcc", args.bcc)):
        addrs = [a for _, a in email.utils.getaddresses([", ".join(values or [])]) if a]
        if addrs and name != "Bcc":
            msg[name] = ", ".join(values)
        rcpts += addrs
    if not rcpts:
        raise ClientError("no recipients: use --to, --cc or --bcc")
    msg["Subject"] = args.subject or ""
    msg["Date"] = email.utils.formatdate(localtime=True)
    domain = (args.sender or cc.address).rpartition("@")[2]
    msg["Message-ID"] = email.utils.make_msgid(domain=domain)
    msg["User-Agent"] = "mailhouse mail"
    msg.set_content(body, charset="utf-8")
    for f in args.attach or []:
        path = Path(f)
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        maintype, _, subtype = ctype.partition("/")
        msg.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype, filename=path.name)
    return msg, rcpts


def smtp_send(
    cc: ClientConfig,
    password: str,
    msg: EmailMessage,
    rcpts: list[str],
    insecure: bool,
    requiretls: bool = False,
) -> None:
    srv = cc.smtp
    if srv is None:
        raise ClientError("no [smtp] server in the client config")
    if requiretls and srv.security == "none":  # RFC 8689 §4.1: REQUIRETLS only within TLS
        raise ClientError('--requiretls needs TLS: [smtp] security = "tls" or "starttls"')
    ctx = _tls_context(insecure)
    client: smtplib.SMTP
    if srv.security == "tls":
        client = smtplib.SMTP_SSL(srv.host, srv.port, timeout=TIMEOUT, context=ctx)
    else:
        client = smtplib.SMTP(srv.host, srv.port, timeout=TIMEOUT)
    try:
        client.ehlo()
        if srv.security == "starttls":
            client.starttls(context=ctx)  # refuses to go on in plaintext if the server can't
            client.ehlo()
        if requiretls and not client.has_extn("requiretls"):
            # RFC 8689 §4.1: a server that does not advertise REQUIRETLS must not get the message
            raise ClientError(f"{srv.host} does not offer REQUIRETLS (RFC 8689): message not sent")
        client.login(cc.username, password)  # RFC 4954; smtplib picks PLAIN/LOGIN
        sender = email.utils.parseaddr(str(msg["From"]))[1]
        options = ["REQUIRETLS"] if requiretls else []  # RFC 8689 §4.1: the MAIL FROM parameter
        client.send_message(msg, from_addr=sender, to_addrs=rcpts, mail_options=options)  # Bcc stripped
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


# ------------------------------------------------------------------ IMAP
def imap_connect(cc: ClientConfig, password: str, insecure: bool) -> imaplib.IMAP4:
    srv = cc.imap
    if srv is None:
        raise ClientError("no [imap] server in the client config")
    ctx = _tls_context(insecure)
    conn: imaplib.IMAP4
    if srv.security == "tls":
        conn = imaplib.IMAP4_SSL(srv.host, srv.port, ssl_context=ctx, timeout=TIMEOUT)
    else:
        conn = imaplib.IMAP4(srv.host, srv.port, timeout=TIMEOUT)
        if srv.security == "starttls":
            conn.starttls(ssl_context=ctx)
    conn.login(cc.username, password)
    return conn


def _quote_mailbox(name: str) -> str:
    from mailhouse.proto.imap.mutf7 import encode as mutf7  # RFC 3501 §5.1.3 modified UTF-7

    enc = mutf7(name) if not name.isascii() else name
    if isinstance(enc, bytes):
        enc = enc.decode("ascii")
    return '"' + enc.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ok(typ: str, data: Any, what: str) -> Any:
    if typ != "OK":
        raise ClientError(f"{what} failed: {data[0].decode(errors='replace') if data and data[0] else typ}")
    return data


def _decode(v: str | None) -> str:
    if not v:
        return ""
    return str(email.header.make_header(email.header.decode_header(v)))


def imap_list(conn: imaplib.IMAP4, folder: str, limit: int) -> list[str]:
    _ok(*conn.select(_quote_mailbox(folder), readonly=True), what=f"SELECT {folder}")
    typ, data = conn.uid("SEARCH", "ALL")
    uids = [int(x) for x in _ok(typ, data, "SEARCH")[0].split()][-limit:]
    if not uids:
        return []
    typ, data = conn.uid(
        "FETCH", ",".join(map(str, uids)), "(UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])"
    )
    lines = []
    for item in _ok(typ, data, "FETCH"):
        if not isinstance(item, tuple):
            continue
        meta = item[0].decode(errors="replace")
        uid = re.search(r"UID (\d+)", meta)
        flags = re.search(r"FLAGS \(([^)]*)\)", meta)
        h = email.message_from_bytes(item[1], policy=email.policy.compat32)
        seen = flags is not None and "\\Seen" in flags.group(1)
        frm = email.utils.parseaddr(_decode(h.get("From")))
        lines.append(
            f"{'  ' if seen else 'N '}{uid.group(1) if uid else '?':>6}  {_short_date(h.get('Date'))}  "
            f"{(frm[0] or frm[1])[:24]:<24}  {_decode(h.get('Subject'))}"
        )
    return lines


def _short_date(v: str | None) -> str:
    try:
        d = email.utils.parsedate_to_datetime(v) if v else None
    except (TypeError, ValueError):
        d = None
    return d.strftime("%Y-%m-%d %H:%M") if d else " " * 16


def imap_read(conn: imaplib.IMAP4, folder: str, uid: int, raw: bool) -> str | bytes:
    _ok(*conn.select(_quote_mailbox(folder)), what=f"SELECT {folder}")
    typ, data = conn.uid("FETCH", str(uid), "(BODY[])")  # BODY[] (not PEEK): reading marks \Seen
    parts = [d for d in _ok(typ, data, "FETCH") if isinstance(d, tuple)]
    if not parts:
        raise ClientError(f"no message with UID {uid} in {folder}")
    blob = bytes(parts[0][1])
    if raw:
        return blob
    msg = email.message_from_bytes(blob, policy=email.policy.default)
    out = []
    for h in ("From", "To", "Cc", "Date", "Subject"):
        if msg[h]:
            out.append(f"{h}: {msg[h]}")
    out.append("")
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is not None:
        text = body.get_content()
        if body.get_content_subtype() == "html":
            from mailhouse.web.sanitize import html_to_text

            text = html_to_text(text)
        out.append(text.rstrip("\n"))
    atts = [p for p in msg.iter_attachments()]
    if atts:
        out.append("")
        out.append("Attachments:")
        for p in atts:
            payload = p.get_payload(decode=True) or b""
            out.append(f"  {p.get_filename() or '(unnamed)'}  {p.get_content_type()}  {len(payload)} bytes")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ command
async def cmd_mail(args: argparse.Namespace, cfg: Any) -> int:
    try:
        cc = load_client_config(args.client_config)
        insecure = args.insecure or cc.insecure
        if args.mail_action == "send":
            password = _password(cc, args)
            if args.body_file:
                body = await asyncio.to_thread(Path(args.body_file).read_text)
            else:
                body = sys.stdin.read()
            msg, rcpts = build(cc, args, body)
            await asyncio.to_thread(smtp_send, cc, password, msg, rcpts, insecure, args.requiretls)
            print(f"sent to {len(rcpts)} recipient(s)")
            return 0
        password = _password(cc, args)

        def run() -> str | bytes:
            conn = imap_connect(cc, password, insecure)
            try:
                if args.mail_action == "list":
                    lines = imap_list(conn, args.folder, args.limit)
                    return "\n".join(lines) + ("\n" if lines else "")
                return imap_read(conn, args.folder, args.uid, args.raw)
            finally:
                try:
                    conn.logout()
                except (imaplib.IMAP4.error, OSError):
                    pass

        out = await asyncio.to_thread(run)
        if isinstance(out, bytes):
            sys.stdout.buffer.write(out)
        else:
            sys.stdout.write(out)
        return 0
    except (ClientError, OSError, smtplib.SMTPException, imaplib.IMAP4.error, ssl.SSLError) as e:
        err = str(e)
        if isinstance(e, ssl.SSLCertVerificationError):
            # name the two ways to trust a server whose certificate is self-signed or for another name
            err += " (a self-signed server: pass --insecure, or set insecure = true in the client config)"
        elif isinstance(e, smtplib.SMTPResponseException):
            err = f"{e.smtp_code} {_text(e.smtp_error)}"
        elif isinstance(e, smtplib.SMTPRecipientsRefused):
            err = "; ".join(f"{r}: {c} {_text(m)}" for r, (c, m) in e.recipients.items())
        print(f"mailhouse mail: {err}", file=sys.stderr)
        return 1


def _text(v: bytes | str) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else v


def register(sub: Any) -> None:
    m = sub.add_parser(
        "mail",
        help="a command-line mail client (SMTP submission + IMAP) for any server",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    m.add_argument("--client-config", help=f"client TOML (default {DEFAULT_CONFIG})")
    m.add_argument(
        "--insecure", action="store_true", help="accept self-signed or mismatched TLS certificates"
    )
    m.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (for send, the body follows)",
    )
    ms = m.add_subparsers(dest="mail_action", required=True)
    s = ms.add_parser("send", help="send a message (body from stdin or --body-file)")
    s.add_argument("--to", action="append", default=[])
    s.add_argument("--cc", action="append", default=[])
    s.add_argument("--bcc", action="append", default=[])
    s.add_argument("--subject", default="")
    s.add_argument("--from", dest="sender", help="From address (default: address in the client config)")
    s.add_argument("--body-file")
    s.add_argument("--attach", action="append", default=[], metavar="FILE")
    s.add_argument(
        "--requiretls",
        action="store_true",
        help="require TLS on every hop to the recipients (RFC 8689 REQUIRETLS; refused if not offered)",
    )
    ls = ms.add_parser("list", help="list the newest messages of a folder")
    ls.add_argument("folder", nargs="?", default="INBOX")
    ls.add_argument("--limit", type=int, default=50)
    r = ms.add_parser("read", help="show one message by UID")
    r.add_argument("uid", type=int)
    r.add_argument("--folder", default="INBOX")
    r.add_argument("--raw", action="store_true", help="print the message source")
    for p in (m, s, ls, r):
        p.set_defaults(fn=cmd_mail)


__all__ = ["cmd_mail", "register", "load_client_config"]
