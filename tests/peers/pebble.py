"""Debian's `pebble` (Let's Encrypt's test ACME server, RFC 8555) on loopback for tests.

Pebble is given its own config (`-config FILE`): its directory and management interface on free
loopback ports, served with a certificate made here (`ca_file` is what a client must trust), and
`httpPort` pointing at the web listener that answers HTTP-01 challenges. Names are resolved through
`dnsserver` (a test dnsmasq), never the machine's resolver. PEBBLE_VA_NOSLEEP=1 validates at once,
PEBBLE_VA_ALWAYS_VALID=0 really fetches the challenge, PEBBLE_WFE_NONCEREJECT=0 stops the random
badNonce rejections. Pebble makes a fresh root and intermediate CA each start (`intermediate_pem`).

Example::

    pebble = Pebble(http_port=web_port, dnsserver=dns.nameserver).start()
    pebble.directory    # "https://127.0.0.1:PORT/dir"
    pebble.stop()
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from mailhouse.tls import ensure_self_signed

from ._proc import find_binary, stop_process, tail
from .ports import check_loopback, free_port, wait_port

__all__ = ["Pebble"]


class Pebble:
    def __init__(self, *, http_port: int, dnsserver: str, tls_port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = check_loopback(host)
        self.http_port, self.tls_port, self.dnsserver = http_port, tls_port or free_port(host), dnsserver
        self.base_dir = Path(tempfile.mkdtemp(prefix="mh-pebble-"))
        self.port = self.mgmt_port = 0
        self.ca_file = self.base_dir / "tls" / "cert.pem"
        self.log_file = self.base_dir / "pebble.log"
        self.proc: subprocess.Popen | None = None

    @property
    def directory(self) -> str:
        return f"https://{self.host}:{self.port}/dir"

    def start(self, timeout: float = 20.0) -> Pebble:
        # pebble's own listener certificate (localhost, 127.0.0.1): what `ca_file` trusts
        self.ca_file, key_file = ensure_self_signed(self.base_dir, "localhost")
        self.port, self.mgmt_port = free_port(self.host), free_port(self.host)
        conf = self.base_dir / "pebble-config.json"
        conf.write_text(
            json.dumps(
                {
                    "pebble": {
                        "listenAddress": f"{self.host}:{self.port}",
                        "managementListenAddress": f"{self.host}:{self.mgmt_port}",
                        "certificate": str(self.ca_file),
                        "privateKey": str(key_file),
                        "httpPort": self.http_port,
                        "tlsPort": self.tls_port,
                        "ocspResponderURL": "",
                        "externalAccountBindingRequired": False,
                    }
                }
            )
        )
        env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_VA_ALWAYS_VALID": "0", "PEBBLE_WFE_NONCEREJECT": "0"}
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(
                [find_binary("pebble"), "-config", str(conf), "-dnsserver", self.dnsserver],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.base_dir,
                start_new_session=True,
            )
        try:
            wait_port(self.host, self.port, timeout=timeout)
            wait_port(self.host, self.mgmt_port, timeout=timeout)
        except Exception:
            self.stop()
            raise RuntimeError(f"pebble did not start:\n{tail(self.log_file)}") from None
        return self

    def _get(self, path: str) -> str:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        url = f"https://{self.host}:{self.mgmt_port}{path}"
        with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
            return r.read().decode()

    def intermediate_pem(self) -> str:
        """The intermediate CA certificate that signs what this pebble issues."""
        return self._get("/intermediates/0")

    def root_pem(self) -> str:
        return self._get("/roots/0")

    def log(self) -> str:
        return tail(self.log_file, 80)

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Pebble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":  # pragma: no cover - a quick manual check
    p = Pebble(http_port=5002, dnsserver="127.0.0.1:53").start()
    print(p.directory)
    time.sleep(1)
    p.stop()
