"""Greylisting triplets and passes are shared through PostgreSQL (issue 14 §3): a triplet deferred
by one node passes on the other node after the delay, and the network's pass is then known to
the first node too."""

from __future__ import annotations

import time

import pytest

from tests.mailhouse_proc import MailhouseProcess
from tests.smtpserver.test_greylist import DELAY, _attempt

EXTRA = f"[spam]\nenabled = false\ngreylisting = true\ngreylist_delay = {DELAY}\n"


@pytest.mark.parametrize("smtp_pair", [EXTRA], indirect=True)
def test_triplet_seen_on_one_node_passes_on_the_other(
    smtp_pair: tuple[MailhouseProcess, MailhouseProcess],
) -> None:
    a, b = smtp_pair
    a.add_domain("example.org")
    a.add_user("alice@example.org")
    a.add_user("bob@example.org")
    assert _attempt(a)[0] == 451  # first seen on A
    assert _attempt(b)[0] == 451  # B knows the triplet: still too soon
    time.sleep(DELAY + 0.5)
    assert _attempt(b)[0] == 250  # the retry reaches B and passes
    # A has the network's pass from the store: another triplet from it is not delayed
    assert _attempt(a, "zed@other.test", "bob@example.org")[0] == 250
