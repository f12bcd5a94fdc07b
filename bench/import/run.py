"""Import benchmark (issue 18 §5): a Dovecot Maildir into Mailhouse vs into a second Dovecot.

One source Maildir of ``--messages`` messages (seeded sizes: log-normal around 4 KiB, 1 % over
64 KiB; INBOX and three folders; flags and keywords on some), written as files and then
indexed by Dovecot itself (``doveadm force-resync``: ``dovecot-uidlist``, ``dovecot-keywords``),
so it is a Dovecot Maildir like any other. Then, per round (fresh targets each time):

1. Mailhouse: ``mailhouse import maildir SRC alice@… --no-progress --no-index`` as a subprocess
   into a new SQLite store (no ``serve`` running), wall time and the importer's peak RSS (VmHWM
   polled); ``--no-index`` because Dovecot here has no FTS plugin either — one extra run with
   the search index built after the import (``--jobs`` = cores) is printed beside it;
2. Dovecot 2.3: ``doveadm import -u dst@… -s maildir:SRC "" all`` into a new user of a Dovecot
   on the same machine (Maildir++ target, ``mail_fsync = never`` as the test peer configures it —
   Mailhouse fsyncs every commit, so the comparison favours Dovecot), wall time and peak RSS;
   by default Dovecot hard-links the source files into the target Maildir
   (``maildir_copy_with_hardlinks = yes``) and reads none of them, so a second run with
   ``-o maildir_copy_with_hardlinks=no`` (each message read and written) is printed too.

Printed: each round, the medians, the ratio (Dovecot time / Mailhouse time: > 1 means Mailhouse
is faster; the issue's goal is ≥ 1.5) and Mailhouse's peak RSS at a quarter of the messages as
well, to show it flat in the number of messages.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import peak_rss
from tests.mailhouse_proc import MailhouseProcess
from tests.peers.dovecot import DovecotInstance

SRC_USER = "src@example.org"
FOLDERS = ("", ".Sent", ".Archive", ".Lists.python")  # Maildir++ (INBOX is the root)


def make_source(root: Path, n: int, seed: int) -> int:
    rnd = random.Random(seed)
    total = 0
    for f in FOLDERS:
        for d in ("cur", "new", "tmp"):
            (root / f / d).mkdir(parents=True, exist_ok=True)
    (root / "dovecot-keywords").write_text("0 $Important\n1 project-x\n")
    for i in range(n):
        folder = FOLDERS[0] if rnd.random() < 0.7 else rnd.choice(FOLDERS[1:])
        size = 200_000 if rnd.random() < 0.01 else int(min(rnd.lognormvariate(8.3, 0.8), 60_000))
        body = b"".join(
            b"word%d " % rnd.randrange(5000) + (b"\n" if j % 12 == 11 else b"") for j in range(size // 8)
        )
        msg = (
            b"From: sender%d@example.net\nTo: src@example.org\nSubject: message %d\nMessage-ID: <%d@bench>\n\n"
            % (
                i % 97,
                i,
                i,
            )
        )
        msg += body + b"\n"
        flags = "".join(sorted(c for c, p in (("S", 0.8), ("F", 0.05), ("R", 0.2)) if rnd.random() < p))
        if rnd.random() < 0.1:
            flags += "a"
        p = root / folder / "cur" / f"{1_600_000_000 + i}.M{i}P1.bench:2,{flags}"
        p.write_bytes(msg)
        t = 1_600_000_000 + i * 60
        os.utime(p, (t, t))
        total += len(msg)
    return total


def run_child(cmd: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """(seconds, peak RSS in bytes, stdout) of one child: VmHWM of it and its children, polled
    every 20 ms (ru_maxrss would include this process's RSS from before the exec)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, peak_rss(proc.pid))
        time.sleep(0.02)
    secs = time.perf_counter() - t0
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}: {err.decode()[-2000:]}")
    return secs, peak, out.decode()


def mailhouse_round(work: Path, src: Path, n_note: str, index: bool = False) -> tuple[float, int]:
    work.mkdir()
    mh = MailhouseProcess(work, services=())
    mh.add_domain("example.org")
    mh.add_user("alice@example.org")
    cmd = [
        sys.executable,
        "-m",
        "mailhouse",
        "import",
        "maildir",
        str(src),
        "alice@example.org",
        "--no-progress",
    ]
    secs, rss, out = run_child(
        cmd + ([] if index else ["--no-index"]),
        env=dict(mh.env(), PYTHONPATH=os.environ.get("PYTHONPATH", "")),
    )
    what = "import + search index" if index else "import"
    print(f"  mailhouse {what}, {n_note}: {secs:.2f} s, peak RSS {rss / 1048576:.0f} MiB", flush=True)
    print(f"    {out.splitlines()[0]}", flush=True)  # the importer's report: imported N, failed 0
    return secs, rss


def dovecot_round(dc: DovecotInstance, src: Path, user: str, links: bool = True) -> tuple[float, int]:
    opts = [] if links else ["-o", "maildir_copy_with_hardlinks=no"]
    secs, rss, _ = run_child(
        [
            "/usr/bin/doveadm",
            "-c",
            str(dc.conf_file),
            *opts,
            "import",
            "-u",
            user,
            "-s",
            f"maildir:{src}",
            "",
            "all",
        ]
    )
    got = dc.doveadm("mailbox", "status", "-u", user, "-t", "messages", "*").split("=")[-1].strip()
    print(
        f"  dovecot{'' if links else ' (no hard links)'}: {secs:.2f} s, peak RSS {rss / 1048576:.0f} MiB, {got} messages",
        flush=True,
    )
    return secs, rss


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=18)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mh-bench-import-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        # every target user from the start: a passwd-file rewritten within one second may not be re-read
        users = {SRC_USER: "pw"} | {
            f"{k}{r}@example.org": "pw" for r in range(args.rounds) for k in ("dst", "nolink")
        }
        dc = DovecotInstance(root / "dovecot", users=users, pop3_port=0).start()
        try:
            src = Path(dc.maildir(SRC_USER))
            octets = make_source(src, args.messages, args.seed)
            quarter = root / "quarter"
            make_source(quarter, args.messages // 4, args.seed)
            subprocess.run(["chown", "-R", f"{dc.uid}:{dc.gid}", str(src)], check=True)
            dc.doveadm("force-resync", "-u", SRC_USER, "*")  # Dovecot writes its uidlist and keywords
            print(
                f"source: {args.messages} messages, {octets / 1e6:.0f} MB, Dovecot Maildir {src}", flush=True
            )
            mh_t: list[float] = []
            dc_t: list[float] = []
            dcc_t: list[float] = []
            mh_rss: list[int] = []
            for r in range(args.rounds):
                print(f"round {r + 1}", flush=True)
                t, rss = mailhouse_round(root / f"mh{r}", src, f"{args.messages} messages")
                mh_t.append(t)
                mh_rss.append(rss)
                t, _ = dovecot_round(dc, src, f"dst{r}@example.org")
                dc_t.append(t)
                t, _ = dovecot_round(dc, src, f"nolink{r}@example.org", links=False)
                dcc_t.append(t)
            _, q_rss = mailhouse_round(root / "mhq", quarter, f"{args.messages // 4} messages")
            idx_t, idx_rss = mailhouse_round(root / "mhi", src, f"{args.messages} messages", index=True)
        finally:
            dc.stop()
    m, d = statistics.median(mh_t), statistics.median(dc_t)
    print(
        f"median: mailhouse {m:.2f} s ({args.messages / m:.0f} msg/s), dovecot {d:.2f} s ({args.messages / d:.0f} msg/s)"
    )
    print(f"ratio dovecot/mailhouse: {d / m:.2f}x (goal >= 1.5x)")
    dc2 = statistics.median(dcc_t)
    print(f"dovecot copying the files (maildir_copy_with_hardlinks=no): {dc2:.2f} s, ratio {dc2 / m:.2f}x")
    print(
        f"mailhouse with the search index built after the import: {idx_t:.2f} s, peak RSS {idx_rss / 1048576:.0f} MiB"
    )
    print(
        f"mailhouse peak RSS: {statistics.median(mh_rss) / 1048576:.0f} MiB at {args.messages} messages,"
        f" {q_rss / 1048576:.0f} MiB at {args.messages // 4}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
