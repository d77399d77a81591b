"""The import rules of ARCHITECTURE.md, read from the source (every import, lazy ones included).

- shared/ imports nothing from broker/, workers/ or producer/, and never Celery or kombu;
- inside shared/, each package imports only the layers below it (SHARED_LAYERS);
- broker/ imports only shared's config and errors;
- producer/ imports workers/ only in the `ragfleet worker` command;
- workers/ never imports producer/; no cycles between packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.unit

TOP = ("broker", "producer", "workers", "shared")
# shared's packages and what each may import from shared (config and errors are on top of all)
SHARED_LAYERS = {
    "errors": set(),
    "config": {"errors"},
    "state": {"config", "errors"},
    "llm": {"config", "errors"},
    "retrieval": {"config", "errors", "llm"},  # the prompt is made of llm's chat messages
    "report": {"config", "errors", "state"},
    "pipeline": {"config", "errors", "state", "llm", "retrieval"},
}
WORKER_ENTRY = "producer/commands/worker_cmd.py"


def imports_of(path: Path) -> set[str]:
    """Every module name a file imports (absolute), at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from shared import state` imports the package shared.state
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def package_files(package: str, root: Path = ROOT) -> list[Path]:
    return sorted((root / package).rglob("*.py"))


def node_of(module: str) -> str | None:
    """The architecture node of a module name: a top-level package, or shared.<layer>."""
    parts = module.split(".")
    if parts[0] not in TOP:
        return None
    if parts[0] == "shared" and len(parts) > 1 and parts[1] in SHARED_LAYERS:
        return f"shared.{parts[1]}"
    return parts[0]


def edges(root: Path = ROOT) -> dict[tuple[str, str], list[str]]:
    """(importing node, imported node) -> the files that make the edge."""
    found: dict[tuple[str, str], list[str]] = {}
    for package in TOP:
        for path in package_files(package, root):
            rel = path.relative_to(root).with_suffix("")
            source = node_of(".".join(rel.parts))
            for module in imports_of(path):
                target = node_of(module)
                if target and source and target != source and not (
                        source == "shared" or target == "shared"):  # shared/__init__ docstring only
                    found.setdefault((source, target), []).append(str(path.relative_to(root)))
    return found


def violations(root: Path = ROOT) -> list[str]:
    problems = []
    for (source, target), files in edges(root).items():
        where = ", ".join(sorted(set(files)))
        src_top, dst_top = source.split(".")[0], target.split(".")[0]
        if src_top == "shared" and dst_top != "shared":
            problems.append(f"shared imports {target}: {where}")
        elif src_top == "shared":
            allowed = SHARED_LAYERS[source.split(".")[1]]
            if target.split(".")[1] not in allowed:
                problems.append(f"{source} imports {target}: {where}")
        elif src_top == "broker" and dst_top == "shared" and target not in (
                "shared.config", "shared.errors"):
            problems.append(f"broker imports {target}: {where}")
        elif src_top == "broker" and dst_top in ("producer", "workers"):
            problems.append(f"broker imports {target}: {where}")
        elif src_top == "producer" and dst_top == "workers":
            others = sorted(set(files) - {WORKER_ENTRY})
            if others:
                problems.append(f"producer imports workers: {', '.join(others)}")
        elif src_top == "workers" and dst_top == "producer":
            problems.append(f"workers imports producer: {where}")
    return problems


def cycles(root: Path = ROOT) -> list[list[str]]:
    graph: dict[str, set[str]] = {}
    for source, target in edges(root):
        graph.setdefault(source, set()).add(target)
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_import_rules_hold():
    assert violations() == []


def test_no_cycles_between_packages():
    assert cycles() == []


def test_shared_never_imports_celery():
    offenders = [str(p.relative_to(ROOT)) for p in package_files("shared")
                 if {m.split(".")[0] for m in imports_of(p)} & {"celery", "kombu"}]
    assert offenders == []


def test_every_shared_module_belongs_to_a_layer():
    for path in package_files("shared"):
        rel = path.relative_to(ROOT / "shared")
        name = rel.parts[0].removesuffix(".py")
        assert name in SHARED_LAYERS or rel.name == "__init__.py", f"{rel}: add it to a package"


def test_every_package_says_what_it_owns():
    for package in [*TOP, *(f"shared/{p}" for p in SHARED_LAYERS if p not in ("config", "errors"))]:
        init = ROOT / package / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), init


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_the_checks_catch_a_broken_rule_and_a_cycle(tmp_path):
    """The rules above can fail: a tree that breaks them is reported."""
    for package in TOP:
        _write(tmp_path, f"{package}/__init__.py", '"""x"""\n')
    _write(tmp_path, "shared/state/__init__.py", '"""x"""\n')
    _write(tmp_path, "shared/report/__init__.py", '"""x"""\n')
    _write(tmp_path, "shared/state/store.py", "from shared.report import stats\n")
    _write(tmp_path, "shared/report/stats.py", "from shared.state import store\n")
    _write(tmp_path, "shared/retrieval/cache.py", "def f():\n    from broker import keys\n")
    _write(tmp_path, "broker/app.py", "from shared.state import store\n")
    _write(tmp_path, "producer/cli.py", "import workers.main\n")
    _write(tmp_path, WORKER_ENTRY, "from workers.main import run\n")
    found = violations(tmp_path)
    assert "shared.state imports shared.report: shared/state/store.py" in found
    assert "shared imports broker: shared/retrieval/cache.py" in found
    assert "broker imports shared.state: broker/app.py" in found
    assert "producer imports workers: producer/cli.py" in found  # the worker entry is allowed
    assert any({"shared.state", "shared.report"} <= set(c) for c in cycles(tmp_path))
