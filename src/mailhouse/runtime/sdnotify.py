"""systemd's service notification protocol (sd_notify(3)): READY, RELOADING, STOPPING, STATUS.

Written by hand because the protocol is one datagram on a Unix socket named by `$NOTIFY_SOCKET`
(a path, or an abstract name when it starts with `@`), while the libraries that speak it either
bind libsystemd through C (`systemd-python`, a build dependency for one sendto) or are unmaintained.

Invariants: without `$NOTIFY_SOCKET` (not started by systemd with `Type=notify`) every call is a
no-op returning False; a failed send is logged and never raised (notification must not stop mail).
Only the main process notifies (the unit's `NotifyAccess=main`): with several workers the parent
says READY once every worker is ready (`app._serve_workers`).
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)

READY = "READY=1"
RELOADING = "RELOADING=1"
STOPPING = "STOPPING=1"


def notify(*fields: str) -> bool:
    """Send FIELDS (e.g. READY, "STATUS=…") as one datagram; True when it was sent."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or not fields:
        return False
    if address.startswith("@"):  # abstract namespace (sd_notify(3))
        address = "\0" + address[1:]
    payload = "\n".join(fields).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(payload, address)
    except OSError as e:
        log.warning("systemd notification %s failed: %s", fields[0], e)
        return False
    return True
