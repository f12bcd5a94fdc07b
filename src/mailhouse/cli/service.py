"""`mailhouse service install [--output FILE] [--user NAME]`: a hardened systemd unit for `serve`.

The unit runs Mailhouse as an unprivileged user that may bind ports below 1024 and nothing
more (`AmbientCapabilities`/`CapabilityBoundingSet` = CAP_NET_BIND_SERVICE), with the file
system read-only except the data directory (`ProtectSystem=strict`, `ReadWritePaths`),
`NoNewPrivileges`, private /tmp and devices, and `Type=notify`: `mailhouse serve` says READY
once every listener is up, RELOADING/READY around a SIGHUP reload (`ExecReload`) and STOPPING
when it drains (runtime/sdnotify.py). `systemd-analyze verify` accepts what it writes
(tests/cli/test_service.py). docs/deploy.md walks through installing it.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from pathlib import Path
from typing import Any

from mailhouse import config as config_mod

DRAIN_MARGIN = 20  # seconds past app.DRAIN_SECONDS before systemd kills a stopping server


def unit_text(cfg: config_mod.Config, config_path: str, user: str, python: str = sys.executable) -> str:
    """The unit file for CFG read from CONFIG_PATH, run as USER with the interpreter PYTHON."""
    from mailhouse.app import DRAIN_SECONDS

    start = shlex.join([python, "-m", "mailhouse", "--config", config_path, "serve"])
    writable = [str(cfg.data_dir)]
    if cfg.log_file:  # `[log] file`: its folder, where a rotation makes the new file
        writable.append(str(cfg.log_file.parent))
    guide = Path(__file__).resolve().parents[3] / "docs" / "deploy.md"  # in a source checkout
    docs = f"Documentation=file://{guide}\n" if guide.exists() else ""
    return f"""# Mailhouse: written by `mailhouse service install`; see docs/deploy.md
[Unit]
Description=Mailhouse mail server (SMTP, submission, IMAP, POP3, webmail)
{docs}Wants=network-online.target
After=network-online.target postgresql.service

[Service]
Type=notify
NotifyAccess=main
ExecStart={start}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s
TimeoutStartSec=120s
TimeoutStopSec={int(DRAIN_SECONDS) + DRAIN_MARGIN}s
KillMode=mixed
User={user}
Group={user}
UMask=0027
LimitNOFILE=65536
Environment=PYTHONUNBUFFERED=1
# Bind ports 25, 465, 587, 993, 995, 443 without root, and gain no other privilege.
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=yes
# The file system is read-only but for the data directory (and the [log] file's folder).
ProtectSystem=strict
ReadWritePaths={" ".join(writable)}
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
"""


async def cmd_service(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    return await asyncio.to_thread(_install, args, cfg)


def _install(args: argparse.Namespace, cfg: config_mod.Config) -> int:
    config_path = args.config or cfg.source_path
    if config_path == "<defaults>":
        print(
            "mailhouse: service install needs a configuration file (--config FILE or $MAILHOUSE_CONFIG):"
            " the unit starts `serve` with it",
            file=sys.stderr,
        )
        return 2
    text = unit_text(cfg, str(Path(config_path).resolve()), args.user)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    out.write_text(text)
    print(f"wrote {out}; then: systemctl daemon-reload && systemctl enable --now {out.stem}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("service", help="install: write a hardened systemd unit for `mailhouse serve`")
    p.add_argument("action", choices=["install"])
    p.add_argument(
        "--output", default="/etc/systemd/system/mailhouse.service", help="unit file to write ('-': stdout)"
    )
    p.add_argument("--user", default="mailhouse", help="the unprivileged user (and group) to run as")
    p.set_defaults(fn=cmd_service)
