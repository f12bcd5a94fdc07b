"""CVE-2011-0411 class: plaintext pipelined after STARTTLS is discarded, never executed."""

from __future__ import annotations

import socket
import ssl

from tests.helpers import mailbox
from tests.mailhouse_proc import MailhouseProcess


def test_plaintext_after_starttls_is_discarded(mailhouse: MailhouseProcess) -> None:
    sock = socket.create_connection(mailhouse.addr("smtp"), timeout=10)
    f = sock.makefile("rb")
    while (line := f.readline()).startswith(b"220-"):  # the pregreet test's first line
        pass
    assert line.startswith(b"220 ")
    sock.sendall(b"EHLO attacker.test\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    # STARTTLS with injected commands in the same packet
    sock.sendall(b"STARTTLS\r\nMAIL FROM:<evil@attacker.test>\r\nRCPT TO:<alice@example.org>\r\n")
    assert f.readline().startswith(b"220 2.0.0")
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    tls = ctx.wrap_socket(sock)
    tf = tls.makefile("rb")
    # After TLS the session starts over: the injected MAIL/RCPT were not executed,
    # so a RCPT now is out of sequence and the first reply we read is for our EHLO.
    tls.sendall(b"EHLO client.test\r\n")
    first = tf.readline()
    assert first.startswith(b"250-"), first
    while not tf.readline().startswith(b"250 "):
        pass
    tls.sendall(b"RCPT TO:<alice@example.org>\r\n")
    assert tf.readline().startswith(b"503 5.5.1")
    tls.sendall(b"QUIT\r\n")
    tf.readline()
    tls.close()
    assert mailbox(mailhouse, "alice@example.org") == []
