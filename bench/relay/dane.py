"""Benchmark (not a test): relaying to a DANE-protected MX, Mailhouse against Postfix (issue 15 item 10).

One MX for both: Postfix B (127.0.0.23, virtual(8) maildir delivery, STARTTLS with a certificate
from a test CA) for `b.test`, published in a zone signed by ldns-signzone with a DANE-EE TLSA
record (`3 1 1`, its key) and an MTA-STS TXT record, behind a validating unbound on
127.0.0.66:53 (tests/peers/unbound.py; port 53 because Postfix's resolver knows no other).

- Mailhouse A (submission, AUTH, MSA + DKIM, `[server] workers`) with `[dns] dnssec =
  "resolver"` on that unbound, and MTA-STS on (`mode: enforce` policy served over HTTPS on
  127.0.0.5 by a thread here, cached in the store as in production): MX lookup, TLSA lookup
  (cached by TTL), DANE-EE check of every new connection, connection reuse.
- Postfix A (relay for b.test, plain SMTP from mynetworks) with `smtp_tls_security_level = dane`,
  `smtp_dns_support_level = dnssec`, on the same unbound (its own /etc/resolv.conf in a private
  mount namespace). Postfix has no MTA-STS of its own (that is postfix-mta-sts-resolver): it
  does the DANE part only.

    .venv/bin/python bench/relay/dane.py [--messages 500] [--sessions 10] [--size 4096] [--workers 2]
                                         [--no-dane]

Prints msg/s for both (clock: first submission → last file in B's maildir), the ratio
(goal ≥ 1.5×), how many of each side's TLS sessions were DANE-verified (from the logs), and
`uptime`. Root only (port 53, mount namespace); everything binds to 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.relay.run import drive, wait_for  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # noqa: E402
from tests.mailhouse_proc import MailhouseProcess  # noqa: E402
from tests.peers.ports import free_port  # noqa: E402
from tests.peers.postfix import PostfixInstance  # noqa: E402
from tests.peers.unbound import ValidatingResolver, Zone  # noqa: E402
from tests.smtpclient.testca import TestCA  # noqa: E402

MX_IP, RES_IP, AUTH_IP, POLICY_IP = "127.0.0.23", "127.0.0.66", "127.0.0.65", "127.0.0.5"
POLICY = b"version: STSv1\r\nmode: enforce\r\nmx: mx.b.test\r\nmax_age: 86400\r\n"


class PolicyHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(POLICY)))
        self.end_headers()
        self.wfile.write(POLICY)

    def log_message(self, *args: object) -> None:
        pass


def policy_server(ca: TestCA) -> http.server.ThreadingHTTPServer:
    srv = http.server.ThreadingHTTPServer((POLICY_IP, 0), PolicyHandler)
    srv.socket = ca.server_context("mta-sts.b.test").wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def timed_relay(addr: tuple[str, int], mx: PostfixInstance, args: argparse.Namespace, auth: bool) -> float:
    """20 warm-up messages, then seconds from the first of ARGS.messages submitted to ADDR
    until the last is in the MX's maildir."""
    before = len(mx.delivered())
    drive(addr, args.sessions, 20, args.size, "alice@a.test", False, auth)
    wait_for(lambda: len(mx.delivered()) - before, 20, 120, lambda: [])
    t0 = time.monotonic()
    submit = drive(addr, args.sessions, args.messages, args.size, "alice@a.test", False, auth)
    print(f"    submission of {args.messages} took {submit:.2f}s", flush=True)
    wait_for(lambda: len(mx.delivered()) - before, 20 + args.messages, 900, lambda: [])
    return time.monotonic() - t0


def bench_postfix(root: Path, mx: PostfixInstance, args: argparse.Namespace) -> tuple[float, int]:
    root.mkdir(parents=True, exist_ok=True)
    resolv = root / "resolv.conf"
    resolv.write_text(f"nameserver {RES_IP}\noptions trust-ad\n")  # glibc passes AD on only with trust-ad
    nexthop = f"smtp:b.test:{mx.port}"  # MX lookup of b.test, that port (TLSA at _PORT._tcp.mx.b.test)
    pa = PostfixInstance(
        host="127.0.0.22",
        mode="relay",
        relay_to=f"{MX_IP}:{mx.port}",
        relay_domains=["b.test"],
        resolv_conf=resolv,
        main={
            "default_transport": nexthop,
            "relay_transport": nexthop,
            "transport_maps": "",
            "smtp_dns_support_level": "dnssec",
            "smtp_host_lookup": "dns",
            "smtp_tls_security_level": "dane",
            "smtp_tls_loglevel": "1",
            "default_destination_concurrency_limit": "20",
            "smtp_connection_cache_on_demand": "yes",
        },
    ).start()
    try:
        assert pa.proc
        total = timed_relay(pa.address, mx, args, auth=False)
        log = pa.log(100000)
    finally:
        pa.stop()
    verified = len(re.findall(r"Verified TLS connection established to mx\.b\.test", log))
    return total, verified


def bench_mailhouse(
    root: Path, mx: PostfixInstance, ca: TestCA, args: argparse.Namespace
) -> tuple[float, int]:
    srv = policy_server(ca)
    (root / "a").mkdir(parents=True, exist_ok=True)
    a = MailhouseProcess(
        root / "a",
        host="127.0.0.20",
        hostname="mx.a.test",
        services=("submission",),
        extra=(
            f'[dns]\nnameservers = ["{RES_IP}:53"]\ndnssec = "{"off" if args.no_dane else "resolver"}"\n'
            f'[tls]\nca_file = "{ca.ca_file}"\n'
            f"[mta_sts]\nenabled = {'false' if args.no_dane else 'true'}\n"
            f'resolve = {{ "mta-sts.b.test" = "{POLICY_IP}:{srv.server_address[1]}" }}\n'
            "[auth]\nallow_plaintext = true\n"
            "[limits]\nsend_rate = 0\nrecipients_per_day = 0\n"  # per-account limits off for the load
            f"[queue]\noutbound_port = {mx.port}\nretry_base = 1\nretry_max = 5\n"
            f"[server]\nworkers = {args.workers}\n"
        ),
    )
    a.add_domain("a.test")
    a.add_user("alice@a.test")
    try:
        with a:
            total = timed_relay(a.addr("submission"), mx, args, auth=True)
    finally:
        srv.shutdown()
    logs = "".join(p.read_text(errors="replace") for p in (root / "a").glob("**/serve.log"))
    Path("/tmp/mh-bench-dane-serve.log").write_text(logs)  # kept for a look afterwards
    return total, logs.count("DANE success for b.test")


def mx_tls_sessions(mx: PostfixInstance) -> int:
    """TLS sessions the MX has accepted so far (warm-up included): connection reuse at a glance."""
    return mx.log(10**6).count("TLS connection established from")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--workers", type=int, default=2, help="Mailhouse A worker processes (default 2)")
    ap.add_argument(
        "--no-dane",
        action="store_true",
        help="Mailhouse without DANE and MTA-STS (opportunistic TLS): what the two cost",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root: a resolver on port 53 and a private mount namespace for Postfix")
        return 2
    with tempfile.TemporaryDirectory(prefix="mh-bench-dane-") as tmp:
        root = Path(tmp)
        ca = TestCA(root / "ca")
        cert, key = ca.issue("mx.b.test")
        leaf = x509.load_pem_x509_certificates(cert.read_bytes())[0]
        spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        mx_port = free_port(MX_IP)
        zone = Zone(
            "b.test",
            [
                "@ MX 10 mx",
                f"mx A {MX_IP}",
                f"_{mx_port}._tcp.mx TLSA 3 1 1 {hashlib.sha256(spki).hexdigest()}",
                '_mta-sts TXT "v=STSv1; id=20261207"',
                f"mta-sts A {POLICY_IP}",
            ],
            ttl=3600,
        )
        res = ValidatingResolver([zone], host=RES_IP, auth_host=AUTH_IP, base_dir=root / "unbound")
        res.port = 53
        res.start()
        mx = PostfixInstance(
            host=MX_IP,
            port=mx_port,
            domains=["b.test"],
            main={
                "smtpd_tls_security_level": "may",
                "smtpd_tls_cert_file": str(cert),
                "smtpd_tls_key_file": str(key),
                "smtpd_tls_loglevel": "1",
            },
        )
        try:
            mx.start()
            pf_total, pf_verified = bench_postfix(root / "postfix", mx, args)
            pf_sessions = mx_tls_sessions(mx)
            print(f"Postfix (dane) → MX: {args.messages / pf_total:.1f} msg/s", flush=True)
            mh_total, mh_verified = bench_mailhouse(root / "mailhouse", mx, ca, args)
            mh_sessions = mx_tls_sessions(mx) - pf_sessions
        finally:
            mx.stop()  # idempotent; stops by PID whatever started
            res.stop()
    n = args.messages
    print(f"relay to a DANE MX: {n} messages of {args.size} octets over {args.sessions} sessions")
    print(
        f"  Mailhouse ({'no DANE/MTA-STS' if args.no_dane else 'DANE + MTA-STS'}, {args.workers} workers): {n / mh_total:8.1f} msg/s"
        f"  ({mh_total:.2f}s; {mh_verified} deliveries under DANE; MX saw {mh_sessions} TLS sessions)"
    )
    print(
        f"  Postfix   (smtp_tls_security_level = dane):  {n / pf_total:8.1f} msg/s"
        f"  ({pf_total:.2f}s; {pf_verified} verified TLS sessions; MX saw {pf_sessions})"
    )
    print(f"  ratio Mailhouse/Postfix: {pf_total / mh_total:.2f}x (goal ≥ 1.5x)")
    print("  uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
