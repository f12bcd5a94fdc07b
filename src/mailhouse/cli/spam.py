"""`mailhouse spam explain QUEUE-ID|MESSAGE-ID`: every rule that fired on a message, with its score
and reason (issue 14 §4), from the verdict the SMTP server stored (`spam.explain`).

Reads the store directly, so it works while `mailhouse serve` runs and on any node.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from mailhouse import config as config_mod
from mailhouse.cli.common import with_store
from mailhouse.cli.spam_train import add_train
from mailhouse.spam import explain


def render(e: explain.Explained) -> str:
    when = datetime.fromtimestamp(e.when, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        f"queue id:   {e.queue_id}",
        f"message-id: <{e.message_id}>" if e.message_id else "message-id: (none)",
        f"scored:     {when}",
        f"verdict:    {e.action} (score {e.score:.1f}, junk at {e.required:.1f})",
    ]
    if e.hits:
        width = max(len(h.name) for h in e.hits)
        lines.append("rules:")
        lines += [f"  {h.score:>7.1f}  {h.name:<{width}}  {h.reason}" for h in e.hits]
    else:
        lines.append("rules:      none fired")
    if e.unfinished:
        lines.append(f"not finished within the time budget: {', '.join(e.unfinished)}")
    return "\n".join(lines)


async def cmd_spam(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    async def run(store: Any) -> int:
        found = await explain.find(store, args.id)
        if found is None:
            print(f"mailhouse: no spam verdict stored for {args.id}")
            return 1
        print(render(found))
        return 0

    return await with_store(cfg, run)


def register(sub: Any) -> None:
    s = sub.add_parser("spam", help="spam filtering: explain verdicts, train the per-user classifier")
    actions = s.add_subparsers(dest="spam_action", required=True)
    e = actions.add_parser("explain", help="why a message was scored as it was")
    e.add_argument("id", help="queue id (from the log or the Received: field) or Message-ID")
    e.set_defaults(fn=cmd_spam, action="explain")
    add_train(actions)  # `spam train` (cli/spam_train.py)
