"""SMTP ingest with spam filtering on both sides (issue 14 item 7): Mailhouse with its default rules
(SPF/DKIM/DMARC verified, DNS lists, rDNS, headers, content) and the recipient's Bayes trained on a
few hundred messages, against Postfix with Rspamd as a milter (Debian's packages: Rspamd's proxy
worker in milter mode scanning by itself, ``smtpd_milters = inet:127.0.0.1:PORT``), in the same run
with the same DNS (a local dnsmasq answering the lists, the client's PTR/A and everything else
NXDOMAIN). Run from the repository root:

    .venv/bin/python -m bench.smtp_ingest.run --rspamd [--messages 3000] [--mode session] [--rounds 3]

Both sides are fed by Postfix's smtp-source with the same messages and measured the same way as
`run.py` (Mailhouse: 250 = in the mailbox; Postfix: until the last message is in its maildir).
Rspamd runs its stock configuration (Hyperscan, the full TLD list) with as many proxy processes
as Mailhouse has workers, no Redis (so no Rspamd Bayes, greylisting or reputation: less work for
it than a full installation does), no fuzzy storage (it would ask rspamd.com).

Mailhouse's scoring cost per message is the pipeline's own measurement, start to verdict
(``time=`` on each ``spam <queue id> …`` log line), as p50/p99 over the run.
"""

from __future__ import annotations

import argparse
import mailbox
import random
import re
import tempfile
import time
from pathlib import Path

from bench.common import mib
from bench.smtp_ingest.run import filter_config, filter_dns, run_mailhouse, run_postfix
from tests.mailhouse_proc import MailhouseProcess
from tests.peers.rspamd import RspamdInstance

__all__ = ["run_filtering", "train_corpus"]

#: Messages of each kind the recipient's Bayes is trained on (default bayes_min_spam/_ham is 200).
TRAIN_EACH = 250
_HAM = "meeting agenda project report budget review lunch team schedule minutes draft invoice quarter".split()
_SPAM = "viagra casino winner lottery prize cheap pills bitcoin offer urgent claim million free".split()
_TIME = re.compile(rb" time=([0-9.]+)ms")


def train_corpus(directory: Path, seed: int = 14) -> tuple[Path, Path]:
    """Two mbox files of `TRAIN_EACH` synthetic spam and ham messages each."""
    rnd = random.Random(seed)
    paths = []
    for kind, words in (("spam", _SPAM), ("ham", _HAM)):
        path = directory / f"{kind}.mbox"
        box = mailbox.mbox(str(path))
        for i in range(TRAIN_EACH):
            text = " ".join(rnd.choice(words + _HAM[:3]) for _ in range(60))
            box.add(
                f"From: <{kind}{i}@sender{i % 17}.test>\nTo: <user@example.test>\nSubject: {text[:40]}\n"
                f"Message-ID: <{kind}.{i}@sender.test>\n\n{text}\n"
            )
        box.close()
        paths.append(path)
    return paths[0], paths[1]


def _percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


def _median(values: list[float]) -> float:
    return _percentile(values, 50)


def run_filtering(a: argparse.Namespace, mode: str) -> bool:
    """ROUNDS alternating runs of each side (the machine's load drifts; alternating and taking
    the median of each side keeps a drift from deciding the ratio)."""
    rounds = getattr(a, "rounds", 1)
    dns = filter_dns()
    rspamd = RspamdInstance(nameserver=dns.nameserver, milter=True, workers=a.workers, fast_start=False)
    mh_rates: list[float] = []
    pf_rates: list[float] = []
    times: list[float] = []
    ok = True
    try:
        rspamd.start()
        # its Hyperscan database is compiled after start: let that finish before anything is measured
        deadline = time.monotonic() + 300
        while "hyperscan" not in rspamd.logtext() and time.monotonic() < deadline:
            time.sleep(0.5)
        milter = {
            "smtpd_milters": rspamd.milter_address,
            "milter_default_action": "tempfail",  # a milter failure must not pass mail unscanned
            "milter_protocol": "6",
        }
        with tempfile.TemporaryDirectory(prefix="bench-filter-", dir="/var/tmp") as tmp:
            root = Path(tmp)
            spam_box, ham_box = train_corpus(root)

            def train(mh: MailhouseProcess) -> None:
                mh.cli("spam", "train", "--spam", "user@example.test", str(spam_box))
                mh.cli("spam", "train", "--ham", "user@example.test", str(ham_box))

            extra = filter_config(dns) + "[mailauth]\nverify_inbound = true\n"
            for r in range(rounds):
                (root / f"mh{r}").mkdir()
                mh_t, mh_peak, mh_n = run_mailhouse(
                    root / f"mh{r}",
                    a.messages,
                    a.sessions,
                    a.size,
                    a.workers,
                    mode,
                    extra,
                    before_start=train,
                )
                log = (root / f"mh{r}" / "serve.log").read_bytes()
                scored = [float(m) for m in _TIME.findall(log)]
                bayes = log.count(b"BAYES_")
                times += scored
                before = rspamd.logtext().count("rspamd_task_write_log")
                pf_acc, pf_t, pf_n = run_postfix(
                    root / f"pf{r}", a.messages, a.sessions, a.size, mode, main=milter
                )
                scanned = rspamd.logtext().count("rspamd_task_write_log") - before
                mh_rates.append(a.messages / mh_t)
                pf_rates.append(a.messages / pf_t)
                print(
                    f"  round {r + 1}: Mailhouse {mh_rates[-1]:.0f} msg/s ({mh_n} stored, {len(scored)} scored, "
                    f"{bayes} BAYES_ verdicts, peak RSS {mib(mh_peak)}); Postfix + Rspamd {pf_rates[-1]:.0f} msg/s "
                    f"({a.messages / pf_acc:.0f} msg/s to 250; {pf_n} delivered, {scanned} scanned)",
                    flush=True,
                )
                ok = ok and mh_n == pf_n == len(scored) == a.messages and scanned >= a.messages
    finally:
        rspamd.stop()
        dns.stop()
    mh_rate, pf_rate = _median(mh_rates), _median(pf_rates)
    how = "many messages per session (-d)" if mode == "session" else "one connection per message"
    print(
        f"mode {mode} (filtering): {a.messages} x {a.size} B over {a.sessions} sessions, {how}, {rounds} round(s)"
    )
    print(f"Mailhouse, default rules + Bayes ({a.workers} workers): {mh_rate:8.0f} msg/s (median)")
    print(
        f"  scoring time per message (pipeline start to verdict): p50 {_percentile(times, 50):.1f} ms, "
        f"p99 {_percentile(times, 99):.1f} ms"
    )
    print(
        f"Postfix + Rspamd milter ({a.workers} proxy processes): {pf_rate:8.0f} msg/s (median, until delivered)"
    )
    print(f"ratio Mailhouse/(Postfix+Rspamd): {mh_rate / pf_rate:.2f}x  (goal >= 1.5x)")
    return ok
