"""TLS contexts for every listener and the outbound client.

A self-signed certificate (cryptography) is made in `data_dir/tls/` on first start when
none is configured, so TLS works everywhere from the first run. Server contexts allow
TLS 1.2+ only (RFC 8996 deprecates 1.0/1.1; RFC 8314 §4.1).

ACME TLS-ALPN-01 (RFC 8737): `ServerCertificate.set_validations` installs the validation
certificates of an order in progress; on the HTTPS listener's own context (`acme_context`), a
ClientHello naming one of those names (SNI) gets it, with ALPN `acme-tls/1` (§3). Python cannot
see the client's ALPN offer in the SNI callback, so a web client asking for such a name without
`acme-tls/1` during the order's seconds gets it too (and a closed connection: web/acme.py);
the mail listeners' shared context never serves one.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pwd
import ssl
import stat
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(
    common_name: str,
    sans: list[x509.GeneralName],
    lifetime: datetime.timedelta,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A fresh P-256 key and a certificate it signs for itself: COMMON_NAME, the subjectAltName
    SANS, valid from a day ago for LIFETIME, plus EXTENSIONS ((extension, critical) pairs)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + lifetime)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
    )
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(key, hashes.SHA256()), key


def ensure_self_signed(data_dir: Path, hostname: str) -> tuple[Path, Path]:
    """Return (cert, key) paths under data_dir/tls, creating a self-signed pair if absent."""
    tls_dir = data_dir / "tls"
    cert_p, key_p = tls_dir / "cert.pem", tls_dir / "key.pem"
    if cert_p.is_file() and key_p.is_file():
        return cert_p, key_p
    tls_dir.mkdir(parents=True, exist_ok=True)
    sans: list[x509.GeneralName] = [x509.DNSName(hostname), x509.DNSName("localhost")]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert, key = self_signed(
        hostname,
        sans,
        datetime.timedelta(days=825),
        [(x509.BasicConstraints(ca=True, path_length=None), True)],
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


ACME_TLS_ALPN = "acme-tls/1"  # RFC 8737 §6.2: the ALPN protocol of TLS-ALPN-01 validation


def _load(ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except PermissionError:
        raise CertificateError(_unreadable(cert, key)) from None
    except FileNotFoundError as e:
        raise CertificateError(f"TLS file {e.filename or cert} does not exist") from None
    except ssl.SSLError as e:
        why = (
            "the key does not match the certificate"
            if "KEY_VALUES_MISMATCH" in str(e)
            else "not a PEM certificate and key"
        )
        raise CertificateError(f"cannot use the TLS certificate {cert} with key {key}: {why}") from None


def _unreadable(cert: Path, key: Path) -> str:
    """Which of CERT and KEY this process cannot read, whose it is, and what to do (issue 16 §1:
    after the privilege drop a renewed key readable only by root cannot be loaded)."""
    path, what = (cert, "certificate") if not os.access(cert, os.R_OK) else (key, "key")
    try:
        me = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        me = f"uid {os.geteuid()}"
    try:
        st = path.stat()
        whose = f" (owner uid {st.st_uid}, gid {st.st_gid}, mode {stat.S_IMODE(st.st_mode):04o})"
    except OSError:
        whose = ""
    return (
        f"cannot read {what} {path} as {me}{whose}: make it readable for {me} or its group"
        f" (chgrp GROUP {path}; chmod 640 {path}) and reload, or restart"
    )


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
        self.extra: list[ssl.SSLContext] = []  # more contexts with this pair (the HTTPS one)
        self.names = _names_of(cert)
        self.stamp = self.mtimes()

    def mtimes(self) -> tuple[int, ...] | None:
        try:
            return (self.cert.stat().st_mtime_ns, self.key.stat().st_mtime_ns)
        except OSError:
            return None

    def reload(self) -> None:
        # the files as they are now are tried once: a failure is reported once per change (the
        # watch), not at every check, and SIGHUP tries again
        self.stamp = stamp = self.mtimes()
        check = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        _load(check, self.cert, self.key)  # a half-written or mismatched pair never reaches the context
        for ctx in (self.context, *self.extra):
            _load(ctx, self.cert, self.key)
        self.names = _names_of(self.cert)
        self.stamp = stamp

    def another_context(self) -> ssl.SSLContext:
        """A further context with this pair, reloaded with it."""
        ctx = server_context(self.cert, self.key)
        self.extra.append(ctx)
        return ctx


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
    other client, and clients sending no name, get the main certificate. On `acme_context()`,
    before both, a name with an ACME TLS-ALPN-01 validation certificate gets that one."""

    def __init__(self, cert: Path, key: Path, sni: Sequence[tuple[Path, Path]] = ()) -> None:
        self._main = _Pair(cert, key)
        self.context = self._main.context
        self._sni = [_Pair(c, k) for c, k in sni]
        # name -> (the PEM pair it was built from, its context offering only acme-tls/1)
        self._validations: dict[str, tuple[tuple[str, str], ssl.SSLContext]] = {}
        self._acme: ssl.SSLContext | None = None
        if self._sni:
            self.context.sni_callback = self._pick

    @property
    def cert(self) -> Path:
        """The main certificate's file (what `[tls] cert` names, or the self-signed one)."""
        return self._main.cert

    @property
    def key(self) -> Path:
        return self._main.key

    def acme_context(self) -> ssl.SSLContext:
        """The HTTPS listener's context: the same certificates (reloaded with them), and the
        TLS-ALPN-01 validation certificates (`set_validations`) for the names being validated."""
        if self._acme is None:
            self._acme = self._main.another_context()
            self._acme.sni_callback = self._pick_validation
        return self._acme

    def _pick_validation(
        self, sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, ctx: ssl.SSLContext
    ) -> None:
        if name and (validation := self._validations.get(name.lower().rstrip("."))) is not None:
            sock.context = validation[1]  # RFC 8737 §3: the validation certificate for this name
            return
        self._pick(sock, name, ctx)

    def _pick(self, sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext) -> None:
        if name:
            for pair in self._sni:
                if covers(pair.names, name):
                    sock.context = pair.context
                    return

    def set_validations(self, pems: Mapping[str, tuple[str, str]]) -> None:
        """Serve the RFC 8737 validation certificates PEMS (name -> (certificate, key) PEM) to
        clients asking for those names; names left out stop getting one."""
        current = self._validations
        new: dict[str, tuple[tuple[str, str], ssl.SSLContext]] = {}
        for name, pem in pems.items():
            old = current.get(name)
            new[name] = old if old is not None and old[0] == pem else (pem, _validation_context(*pem))
        self._validations = new

    def is_validation(self, ssl_object: ssl.SSLObject | ssl.SSLSocket) -> bool:
        """Whether this handshake served a validation certificate (the connection carries no HTTP)."""
        if ssl_object.selected_alpn_protocol() == ACME_TLS_ALPN:
            return True
        return any(ctx is ssl_object.context for _, ctx in self._validations.values())

    def changed(self) -> bool:
        """Whether any of the files changed since they were last loaded."""
        return any(p.mtimes() != p.stamp for p in (self._main, *self._sni))

    def reload(self) -> None:
        """Load the files again (CertificateError: unusable; the running certificates stay)."""
        for p in (self._main, *self._sni):
            p.reload()


def _validation_context(cert_pem: str, key_pem: str) -> ssl.SSLContext:
    """A server context with one in-memory pair and ALPN `acme-tls/1` only (RFC 8737 §3)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8737 §3 requires TLS 1.2 or higher
    ctx.set_alpn_protocols([ACME_TLS_ALPN])
    with tempfile.TemporaryDirectory(prefix="mh-acme-") as d:  # ssl loads pairs from files only
        path = Path(d) / "pair.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key_pem + cert_pem)
        ctx.load_cert_chain(str(path))
    return ctx


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
