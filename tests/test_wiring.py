"""Typed wiring: one `Server` per adapter module and node, components built from narrow
dependencies, and no service below the node importing `services` or `app`."""

from __future__ import annotations

import ast
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import mailhouse
from mailhouse import app, config, services
from mailhouse.config import Listener

SRC = Path(mailhouse.__file__).parent
BELOW_THE_NODE = ("delivery", "queue", "accounts", "mailauth", "message", "store", "proto")


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[services.Services]:
    cfg = config.from_dict(
        {"hostname": "mx.a.test", "data_dir": str(tmp_path), "dns": {"nameservers": ["127.0.0.1:9"]}}
    )
    s = await services.build(cfg)
    yield s
    await s.outbound.pool.close()
    await s.store.close()


def test_every_listener_has_a_server_class() -> None:
    assert set(app.SERVERS) == set(Listener)
    for name in Listener:
        cls = app.server_class(name)
        assert isinstance(cls, type) and cls.__name__ == "Server", name


async def test_one_server_per_module_shared_by_its_listeners(svc: services.Services) -> None:
    servers = app.node_servers(svc, list(Listener))
    assert servers[Listener.IMAP] is servers[Listener.IMAPS]
    assert servers[Listener.POP3] is servers[Listener.POP3S]
    assert servers[Listener.SMTP] is servers[Listener.SUBMISSION] is servers[Listener.SUBMISSIONS]
    assert servers[Listener.HTTP] is servers[Listener.HTTPS]
    assert len({id(s) for s in servers.values()}) == 5  # smtp, imap, pop3, http, managesieve
    assert all(getattr(s, "svc") is svc for s in servers.values())


async def test_components_share_the_node_objects(svc: services.Services) -> None:
    assert svc.envelope.local is svc.delivery and svc.outbound.local is svc.delivery
    assert svc.envelope.outbound is svc.outbound
    assert svc.delivery.resolver is svc.resolver and svc.outbound.resolver is svc.resolver
    assert svc.envelope.msa.resolver is svc.resolver and svc.envelope.policy.resolver is svc.resolver


async def test_two_nodes_share_no_state(tmp_path: Path) -> None:
    nodes = []
    for i in range(2):
        cfg = config.from_dict({"hostname": f"n{i}.a.test", "data_dir": str(tmp_path / str(i))})
        nodes.append(await services.build(cfg))
    try:
        a, b = nodes
        assert a.auth.cache is not b.auth.cache and a.auth.limiter is not b.auth.limiter
        assert a.auth.hasher is not b.auth.hasher
        assert a.envelope.msa.signer is not b.envelope.msa.signer
    finally:
        for n in nodes:
            await n.outbound.pool.close()
            await n.store.close()


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):  # TYPE_CHECKING blocks included
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


@pytest.mark.parametrize("package", BELOW_THE_NODE)
def test_services_below_the_node_do_not_import_it(package: str) -> None:
    for path in sorted((SRC / package).rglob("*.py")):
        bad = {m for m in _imports(path) if m in ("mailhouse.services", "mailhouse.app")}
        assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


def test_webmail_uses_no_smtp_server_module() -> None:
    for path in sorted((SRC / "web").rglob("*.py")):
        bad = {m for m in _imports(path) if m.startswith("mailhouse.smtpserver")}
        assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"
