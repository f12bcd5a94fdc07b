"""`mailhouse mailbox share create|set|remove|list`: shared mailboxes and folder rights (RFC 4314).

- ``create ADDRESS``: a shared mailbox (an account with no login, e.g. ``support@example.org``)
  that mail is delivered to; users reach it under ``Shared/ADDRESS`` once given rights.
- ``set OWNER IDENTIFIER RIGHTS [--folder NAME]``: IDENTIFIER (an address, ``anyone`` or
  ``anyone@DOMAIN``) gets RIGHTS (``lrswipkxtea``; ``+lr`` adds, ``-w`` removes) on OWNER's
  folder (INBOX by default).
- ``remove OWNER IDENTIFIER [--folder NAME]``; ``list OWNER [--folder NAME]``.

Acts on the store directly, so it works while `mailhouse serve` runs; IMAP sessions see a
changed right at their next command.
"""

from __future__ import annotations

import argparse
from typing import Any

from mailhouse import config as config_mod
from mailhouse.accounts import shared
from mailhouse.cli.common import with_store


async def cmd_mailbox(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    async def run(store: Any) -> int:
        need = {"create": 1, "set": 3, "remove": 2, "list": 1}[args.action]
        if len(args.args) != need:
            raise ValueError(f"mailbox share {args.action} takes {need} argument(s)")
        a = args.args
        if args.action == "create":
            acc = await shared.create_shared_mailbox(store, a[0])
            print(f"shared mailbox {acc.address} created")
        elif args.action == "set":
            rights = await shared.set_rights(store, a[0], args.folder or "INBOX", a[1], a[2])
            print(f"{a[1]} on {a[0]} {args.folder or 'INBOX'}: {rights or '(none)'}")
        elif args.action == "remove":
            if not await shared.remove_rights(store, a[0], args.folder or "INBOX", a[1]):
                print(f"mailhouse: {a[1]} has no rights on {a[0]} {args.folder or 'INBOX'}")
                return 1
            print(f"{a[1]} removed from {a[0]} {args.folder or 'INBOX'}")
        else:
            for f in await shared.list_rights(store, a[0], args.folder):
                for e in f.entries:
                    print(f"{f.mailbox.name}\t{e.identifier}\t{e.rights}")
        return 0

    try:
        return await with_store(cfg, run)
    except shared.ShareError as e:
        raise ValueError(str(e)) from None


def register(sub: Any) -> None:
    m = sub.add_parser("mailbox", help="shared mailboxes and folder rights (IMAP ACL)")
    msub = m.add_subparsers(dest="mailbox_command", required=True)
    s = msub.add_parser("share", help="create|set|remove|list: shared mailboxes and rights (RFC 4314)")
    s.add_argument("action", choices=["create", "set", "remove", "list"])
    s.add_argument(
        "args", nargs="*", help="create ADDRESS | set OWNER ID RIGHTS | remove OWNER ID | list OWNER"
    )
    s.add_argument("--folder", help="the owner's folder (default INBOX)")
    s.set_defaults(fn=cmd_mailbox)
