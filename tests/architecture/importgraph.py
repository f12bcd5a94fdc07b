"""The import graph of a source tree, and the two architecture gates checked on it.

Purpose: `docs/architecture.md` draws layers ("imports point downwards only") and promises an
import graph without circles. This module reads the tree with `ast` (nothing is imported or run),
so it sees every import statement — at module level, inside functions, and under
`if TYPE_CHECKING:` — and checks:

- **cycles**: strongly connected components of the module graph with more than one module
  (Tarjan's algorithm); a module importing itself is not a cycle;
- **layers**: the same contract syntax as import-linter's `layers` type (top layer first;
  `a | b` independent siblings, `a : b` siblings that may import each other, `(a)` optional),
  plus its `forbidden` type; a module belongs to a layer when it is the layer's module or
  inside it, and an import is checked only when both ends belong to contract modules.

Invariants: edges are between modules of the tree only (stdlib and third-party imports are
dropped); `from pkg import name` is an edge to `pkg.name` when that is a module, else to `pkg`;
`import a.b.c` is an edge to the longest prefix that is a module of the tree. Each edge keeps the
line number and the source line of its first occurrence, for reports.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Contract",
    "Import",
    "Layer",
    "build_graph",
    "contracts_from_pyproject",
    "find_cycles",
    "module_files",
    "violations",
]


@dataclass(frozen=True, slots=True)
class Import:
    """One import edge: IMPORTER imports IMPORTED at LINE (TEXT is that source line)."""

    importer: str
    imported: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported}  (line {self.line}: {self.text})"


Graph = Mapping[str, Mapping[str, Import]]  # importer -> imported -> first edge


def module_files(src: Path, package: str) -> dict[str, Path]:
    """Every module of PACKAGE under SRC, by dotted name (a package is its __init__.py)."""
    mods: dict[str, Path] = {}
    for path in sorted((src / package.replace(".", "/")).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _known_prefix(name: str, mods: Mapping[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def build_graph(src: Path, package: str) -> dict[str, dict[str, Import]]:
    """The module import graph of PACKAGE under SRC, every import statement counted."""
    mods = module_files(src, package)
    graph: dict[str, dict[str, Import]] = {m: {} for m in mods}
    for mod, path in mods.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        is_pkg = path.name == "__init__.py"
        here = mod if is_pkg else mod.rpartition(".")[0]
        edges = graph[mod]

        def add(target: str | None, node: ast.stmt, mod: str = mod, edges: dict[str, Import] = edges) -> None:
            if target is None or target == mod or target in edges:
                return
            edges[target] = Import(mod, target, node.lineno, lines[node.lineno - 1].strip())

        for node in ast.walk(ast.parse(text, filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(_known_prefix(alias.name, mods), node)
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: level 1 is this package, 2 its parent ...
                    base = here.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                for alias in node.names:
                    sub = f"{origin}.{alias.name}"
                    add(sub if sub in mods else _known_prefix(origin, mods), node)
    return graph


def find_cycles(graph: Graph) -> list[list[str]]:
    """Import cycles: each strongly connected component of more than one module, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        # Iterative Tarjan: (node, iterator over its successors) frames.
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        frames = [(root, iter(sorted(graph.get(root, {}))))]
        while frames:
            node, succ = frames[-1]
            advanced = False
            for nxt in succ:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    frames.append((nxt, iter(sorted(graph.get(nxt, {})))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            frames.pop()
            if frames:
                parent = frames[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp: list[str] = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return sorted(found)


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer: its modules, and whether they are independent of each other."""

    modules: tuple[str, ...]
    optional: frozenset[str]
    independent: bool

    @classmethod
    def parse(cls, spec: str) -> Layer:
        """import-linter syntax: `a | b` (independent), `a : b` (not), `(a)` optional."""
        if "|" in spec and ":" in spec:
            raise ValueError(f"layer {spec!r} mixes '|' and ':'")
        independent = ":" not in spec
        names: list[str] = []
        optional: set[str] = set()
        for raw in spec.replace(":", "|").split("|"):
            name = raw.strip()
            if name.startswith("(") and name.endswith(")"):
                name = name[1:-1].strip()
                optional.add(name)
            names.append(name)
        return cls(tuple(names), frozenset(optional), independent)


def _owner(module: str, candidates: Iterable[str]) -> str | None:
    for c in candidates:
        if module == c or module.startswith(c + "."):
            return c
    return None


@dataclass(frozen=True, slots=True)
class Contract:
    """A `layers` or `forbidden` contract as written in `[tool.importlinter]`."""

    name: str
    kind: str  # "layers" | "forbidden"
    layers: tuple[Layer, ...] = ()
    sources: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()

    def missing(self, modules: Iterable[str]) -> list[str]:
        """Contract modules that do not exist (optional layers excepted)."""
        present = set(modules)
        names = [n for layer in self.layers for n in layer.modules if n not in layer.optional]
        names += list(self.sources) + list(self.forbidden)
        return [n for n in names if n not in present]


def violations(graph: Graph, contract: Contract) -> list[Import]:
    """Direct imports that break CONTRACT (an upward import, or one between independent siblings)."""
    bad: list[Import] = []
    if contract.kind == "forbidden":
        for importer, edges in graph.items():
            if _owner(importer, contract.sources) is None:
                continue
            bad += [e for imp, e in edges.items() if _owner(imp, contract.forbidden) is not None]
        return sorted(bad, key=str)
    where: dict[str, tuple[int, Layer]] = {}
    for pos, layer in enumerate(contract.layers):
        for name in layer.modules:
            where[name] = (pos, layer)
    for importer, edges in graph.items():
        src_name = _owner(importer, where)
        if src_name is None:
            continue
        src_pos, src_layer = where[src_name]
        for imported, edge in edges.items():
            dst_name = _owner(imported, where)
            if dst_name is None or dst_name == src_name:
                continue
            dst_pos, _ = where[dst_name]
            if dst_pos < src_pos or (dst_pos == src_pos and src_layer.independent):
                bad.append(edge)
    return sorted(bad, key=str)


def contracts_from_pyproject(pyproject: Path) -> list[Contract]:
    """The `layers` and `forbidden` contracts of `[tool.importlinter]` in PYPROJECT."""
    cfg = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["importlinter"]
    out: list[Contract] = []
    for c in cfg.get("contracts", []):
        if c["type"] == "layers":
            out.append(Contract(c["name"], "layers", layers=tuple(Layer.parse(s) for s in c["layers"])))
        elif c["type"] == "forbidden":
            out.append(
                Contract(
                    c["name"],
                    "forbidden",
                    sources=tuple(c["source_modules"]),
                    forbidden=tuple(c["forbidden_modules"]),
                )
            )
        else:
            raise ValueError(f"contract type {c['type']!r} is not checked by tests/architecture")
    return out
