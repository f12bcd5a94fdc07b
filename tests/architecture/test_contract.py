"""The architecture gates on the real tree: no import cycles, layers respected.

`docs/architecture.md` ("Layers", "Gates"): imports point downwards only, and the module import
graph of `src/` has no cycles — every import counted, those inside functions and under
`TYPE_CHECKING` included (a cycle hidden behind a deferred import is still a cycle in the design).
The contracts are read from `[tool.importlinter]` in pyproject.toml, the single place they are
written; `lint-imports` checks the same contracts with import-linter.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.architecture.importgraph import (
    Contract,
    build_graph,
    contracts_from_pyproject,
    find_cycles,
    violations,
)

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
GRAPH = build_graph(SRC, "mailhouse")
CONTRACTS = contracts_from_pyproject(ROOT / "pyproject.toml")


def test_graph_is_read() -> None:
    # A guard for the gates below: an empty or edgeless graph would pass them vacuously.
    assert len(GRAPH) > 50
    assert "mailhouse.proto.smtp" in GRAPH["mailhouse.smtpserver.server"]


def test_no_import_cycles() -> None:
    cycles = find_cycles(GRAPH)
    lines = []
    for comp in cycles:
        members = set(comp)
        lines.append(f"cycle of {len(comp)} modules:")
        lines += [f"    {e}" for m in comp for e in GRAPH[m].values() if e.imported in members]
    assert not cycles, "import cycles in src/:\n" + "\n".join(lines)


@pytest.mark.parametrize("contract", CONTRACTS, ids=[c.name.split(":")[0] for c in CONTRACTS])
def test_contract_kept(contract: Contract) -> None:
    assert not contract.missing(GRAPH), f"contract names modules that do not exist: {contract.missing(GRAPH)}"
    bad = violations(GRAPH, contract)
    assert not bad, f"{contract.name}: broken by\n" + "\n".join(f"    {e}" for e in bad)


def test_every_top_level_module_has_a_layer() -> None:
    # A new package must be placed in the layer map (pyproject.toml) before it can be imported.
    layered = {n for c in CONTRACTS for layer in c.layers for n in layer.modules}
    tops = {".".join(m.split(".")[:2]) for m in GRAPH if m != "mailhouse"}
    assert sorted(tops - layered) == []
