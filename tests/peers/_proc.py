"""Process helpers shared by the peer classes: start in a new session, stop by PID.

Invariant: we only ever signal PIDs (and the process groups they lead) that we
started ourselves.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

__all__ = ["find_binary", "stop_process", "tail"]


def find_binary(
    name: str, extra_dirs: tuple[str, ...] = ("/usr/sbin", "/sbin", "/usr/lib/postfix/sbin")
) -> str:
    found = shutil.which(name)
    if found:
        return found
    for d in extra_dirs:
        p = Path(d) / name
        if p.exists():
            return str(p)
    raise FileNotFoundError(f"{name} not found (run scripts/install-test-deps.sh)")


def stop_process(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Signal ``proc`` and wait; escalate to SIGKILL; then reap its process group.

    The process must have been started with ``start_new_session=True`` so that its
    process group id equals its pid and holds only its own children.
    """
    if proc is None:
        return
    pgid = proc.pid
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    # Children left in the group we created (e.g. a postfix daemon that outlived master).
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def tail(path: Path | str, lines: int = 40) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        return f"<{path}: {e}>"
    return "\n".join(text.splitlines()[-lines:])


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
