"""TLS contexts for every listener and the outbound client.

A self-signed certificate (cryptography) is made in `data_dir/tls/` on first start when
none is configured, so TLS works everywhere from the first run. Server contexts allow
TLS 1.2+ only (RFC 8996 deprecates 1.0/1.1; RFC 8314 §4.1).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def ensure_self_signed(data_dir: Path, hostname: str) -> tuple[Path, Path]:
    """Return (cert, key) paths under data_dir/tls, creating a self-signed pair if absent."""
    tls_dir = data_dir / "tls"
    cert_p, key_p = tls_dir / "cert.pem", tls_dir / "key.pem"
    if cert_p.is_file() and key_p.is_file():
        return cert_p, key_p
    tls_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(hostname), x509.DNSName("localhost")]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    tmp_key = key_p.with_suffix(".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    os.replace(tmp_key, key_p)
    cert_p.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_p, key_p


class CertificateError(Exception):
    """The configured certificate or key cannot be used (unreadable, not PEM, not a pair)."""


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(ctx, cert, key)
    ctx.options |= ssl.OP_NO_COMPRESSION  # CRIME
    return ctx


def _load(ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except PermissionError:
        raise CertificateError(
            f"cannot read the TLS certificate {cert} or key {key}: permission denied"
        ) from None
    except FileNotFoundError as e:
        raise CertificateError(f"TLS file {e.filename or cert} does not exist") from None
    except ssl.SSLError as e:
        why = (
            "the key does not match the certificate"
            if "KEY_VALUES_MISMATCH" in str(e)
            else "not a PEM certificate and key"
        )
        raise CertificateError(f"cannot use the TLS certificate {cert} with key {key}: {why}") from None


def dns_names(cert_pem: bytes) -> list[str]:
    """The DNS names of a PEM certificate's subjectAltName (lower case)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [n.lower() for n in san.get_values_for_type(x509.DNSName)]


def covers(names: Sequence[str], host: str) -> bool:
    """RFC 6125 §6.4.3: exact, or a `*.` wildcard standing for the leftmost label."""
    host = host.lower().rstrip(".")
    for n in names:
        if n == host or (n.startswith("*.") and host.partition(".")[2] == n[2:] and "." in n[2:]):
            return True
    return False


class _Pair:
    """One certificate/key pair in its own reloadable context."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self.context = server_context(cert, key)
        self.names = _names_of(cert)
        self.stamp = self.mtimes()

    def mtimes(self) -> tuple[int, ...] | None:
        try:
            return (self.cert.stat().st_mtime_ns, self.key.stat().st_mtime_ns)
        except OSError:
            return None

    def reload(self) -> None:
        stamp = self.mtimes()
        check = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        _load(check, self.cert, self.key)  # a half-written or mismatched pair never reaches the context
        _load(self.context, self.cert, self.key)
        self.names = _names_of(self.cert)
        self.stamp = stamp


def _names_of(cert: Path) -> list[str]:
    try:
        return dns_names(cert.read_bytes())
    except (OSError, ValueError):
        return []


class ServerCertificate:
    """The server context every listener shares and the files it was loaded from.

    `reload()` loads the files again into the same contexts (issue 16 §3): new handshakes get
    the new certificate at once, on every listener, while established connections keep the one
    they negotiated. A pair that cannot be used is refused and the running one kept.

    SNI (RFC 6066 §3): with `[tls] sni` pairs, a client asking for a name one of them covers
    gets that certificate (its context is switched in the handshake's SNI callback); every
    other client, and clients sending no name, get the main certificate."""

    def __init__(self, cert: Path, key: Path, sni: Sequence[tuple[Path, Path]] = ()) -> None:
        self._main = _Pair(cert, key)
        self.context = self._main.context
        self._sni = [_Pair(c, k) for c, k in sni]
        if self._sni:
            self.context.sni_callback = self._pick

    @property
    def cert(self) -> Path:
        """The main certificate's file (what `[tls] cert` names, or the self-signed one)."""
        return self._main.cert

    @property
    def key(self) -> Path:
        return self._main.key

    def _pick(self, sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext) -> None:
        if name:
            for pair in self._sni:
                if covers(pair.names, name):
                    sock.context = pair.context
                    return

    def changed(self) -> bool:
        """Whether any of the files changed since they were last loaded."""
        return any(p.mtimes() != p.stamp for p in (self._main, *self._sni))

    def reload(self) -> None:
        """Load the files again (CertificateError: unusable; the running certificates stay)."""
        for p in (self._main, *self._sni):
            p.reload()


def client_context(verify: bool = False, ca_file: Path | None = None) -> ssl.SSLContext:
    """Outbound TLS. Opportunistic TLS does not verify (RFC 7435 §4). With VERIFY the chain
    is checked against the system store plus CA_FILE (`[tls] ca_file`, extra CAs trusted for
    every outbound verification) and the host name against the certificate (RFC 6125 via
    OpenSSL's check_hostname): smarthosts with tls = "required", MTA-STS policy fetches and
    MTA-STS enforced MX hosts (RFC 8461 §4.2). TLS 1.2+ when verifying."""
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is not None:
        ctx.load_verify_locations(cafile=str(ca_file))
    return ctx
