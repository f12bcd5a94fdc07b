"""The architecture checker must be able to fail: a tiny package with known faults.

Each fault the gates exist for is planted in a synthetic package in a temporary directory — a
cycle (one side only under `TYPE_CHECKING`, one only inside a function), an upward import, an
import between independent siblings, a relative import — and the checker (and import-linter, on
the same contract) must report exactly those.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.architecture.importgraph import (
    Contract,
    Import,
    Layer,
    build_graph,
    contracts_from_pyproject,
    find_cycles,
    violations,
)

FILES = {
    "toy/__init__.py": "",
    "toy/cli.py": "from toy.web import page\nfrom toy import core\n",
    "toy/web/__init__.py": "",
    "toy/web/page.py": "from toy.core import model\n",
    "toy/smtp.py": "import toy.core.model\n",
    "toy/core/__init__.py": "",
    "toy/core/model.py": textwrap.dedent(
        """\
        from __future__ import annotations
        from typing import TYPE_CHECKING
        import os
        from . import helpers
        if TYPE_CHECKING:
            from toy.core.store import Store
        """
    ),
    "toy/core/store.py": textwrap.dedent(
        """\
        def open_store() -> None:
            from toy.core.model import helpers  # deferred: still an edge
        """
    ),
    "toy/core/helpers.py": "import json\n",
    "toy/base.py": "",
}

PYPROJECT = textwrap.dedent(
    """\
    [tool.importlinter]
    root_package = "toy"

    [[tool.importlinter.contracts]]
    name = "toy layers"
    type = "layers"
    layers = ["toy.cli", "toy.web | toy.smtp", "toy.core", "(toy.missing_ok)", "toy.base"]

    [[tool.importlinter.contracts]]
    name = "base imports nothing"
    type = "forbidden"
    source_modules = ["toy.base"]
    forbidden_modules = ["toy.core"]
    """
)


def make_tree(tmp: Path, extra: dict[str, str] | None = None) -> Path:
    for name, text in {**FILES, **(extra or {})}.items():
        path = tmp / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp / "pyproject.toml").write_text(PYPROJECT)
    return tmp


def edges(found: list[Import]) -> set[tuple[str, str]]:
    return {(e.importer, e.imported) for e in found}


def test_graph_resolves_every_import_form(tmp_path: Path) -> None:
    g = build_graph(make_tree(tmp_path) / "src", "toy")
    assert set(g["toy.cli"]) == {"toy.web.page", "toy.core"}  # `from pkg import module`, `from . import`
    assert set(g["toy.smtp"]) == {"toy.core.model"}  # `import a.b.c`
    # relative, TYPE_CHECKING; stdlib dropped
    assert set(g["toy.core.model"]) == {"toy.core.helpers", "toy.core.store"}
    assert set(g["toy.core.store"]) == {"toy.core.model"}  # inside a function
    assert g["toy.core.store"]["toy.core.model"].line == 2


def test_cycle_through_type_checking_and_deferred_import_is_found(tmp_path: Path) -> None:
    g = build_graph(make_tree(tmp_path) / "src", "toy")
    assert find_cycles(g) == [["toy.core.model", "toy.core.store"]]


def test_acyclic_tree_passes(tmp_path: Path) -> None:
    g = build_graph(
        make_tree(tmp_path, {"toy/core/store.py": "def open_store() -> None: ...\n"}) / "src", "toy"
    )
    assert find_cycles(g) == []


def test_long_cycle_is_one_component(tmp_path: Path) -> None:
    ring = {f"toy/r{i}.py": f"from toy import r{(i + 1) % 5}\n" for i in range(5)}
    g = build_graph(make_tree(tmp_path, ring) / "src", "toy")
    assert [f"toy.r{i}" for i in range(5)] in find_cycles(g)


def test_upward_and_sibling_imports_are_violations(tmp_path: Path) -> None:
    extra = {
        "toy/core/helpers.py": "from toy.web import page\n",  # upward
        "toy/web/__init__.py": "from toy import smtp\n",  # between independent siblings
        "toy/base.py": "from toy.core import helpers\n",  # upward, and forbidden
    }
    tree = make_tree(tmp_path, extra)
    g = build_graph(tree / "src", "toy")
    layers, forbidden = contracts_from_pyproject(tree / "pyproject.toml")
    assert edges(violations(g, layers)) == {
        ("toy.core.helpers", "toy.web.page"),
        ("toy.web", "toy.smtp"),
        ("toy.base", "toy.core.helpers"),
    }
    assert edges(violations(g, forbidden)) == {("toy.base", "toy.core.helpers")}
    assert layers.missing(g) == []  # (toy.missing_ok) is optional


def test_clean_tree_keeps_the_contracts(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, {"toy/core/store.py": ""})
    g = build_graph(tree / "src", "toy")
    assert all(violations(g, c) == [] for c in contracts_from_pyproject(tree / "pyproject.toml"))


def test_non_independent_siblings_may_import_each_other(tmp_path: Path) -> None:
    g = build_graph(make_tree(tmp_path, {"toy/web/page.py": "from toy import smtp\n"}) / "src", "toy")
    loose = Contract("loose", "layers", layers=(Layer.parse("toy.cli"), Layer.parse("toy.web : toy.smtp")))
    strict = Contract("strict", "layers", layers=(Layer.parse("toy.cli"), Layer.parse("toy.web | toy.smtp")))
    assert violations(g, loose) == []
    assert edges(violations(g, strict)) == {("toy.web.page", "toy.smtp")}


def test_layer_syntax() -> None:
    layer = Layer.parse("a : (b) : c")
    assert layer.modules == ("a", "b", "c") and layer.optional == {"b"} and not layer.independent
    with pytest.raises(ValueError):
        Layer.parse("a | b : c")


def lint_imports() -> str | None:
    exe = Path(sys.executable).with_name("lint-imports")
    return str(exe) if exe.exists() else shutil.which("lint-imports")


def test_import_linter_breaks_on_the_same_faults(tmp_path: Path) -> None:
    # The contract syntax in pyproject.toml means to import-linter what it means to our checker.
    # import-linter is in the [test] extras: a missing tool is a failure, not a skip.
    assert lint_imports() is not None, "lint-imports not found: pip install -e '.[test]'"
    tree = make_tree(tmp_path, {"toy/core/helpers.py": "from toy.web import page\n"})
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    run = subprocess.run(
        [str(lint_imports()), "--no-cache", "--no-logo", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "toy.core.helpers -> toy.web.page" in run.stdout
    (tree / "src/toy/core/helpers.py").write_text("")
    run = subprocess.run(
        [str(lint_imports()), "--no-cache", "--no-logo", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
