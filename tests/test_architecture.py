"""The package's import graph: a ground floor (errors, rundir, cli) that imports nothing above it, and
no cycle, lazy imports included (a function-level import does not hide one here)."""

from __future__ import annotations

import ast

from conftest import ROOT

PACKAGE = ROOT / "reasoning_sft"


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports, at any depth of its code."""
    names = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
             for p in PACKAGE.rglob("*.py")}
    graph = {}
    for p in PACKAGE.rglob("*.py"):
        me = ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("reasoning_sft"):
                deps |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in names}
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in names}
        graph[me] = (deps & names) - {me, "reasoning_sft"}
    return graph


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30
    state: dict[str, int] = {}      # 1: on the current path, 2: done

    def visit(m, path):
        state[m] = 1
        for d in sorted(graph[m]):
            assert state.get(d) != 1, " -> ".join(path + [d])
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_the_ground_floor_imports_nothing_above_it():
    graph = import_graph()
    assert graph["reasoning_sft.errors"] == set()
    assert graph["reasoning_sft.rundir"] <= {"reasoning_sft.errors"}
    assert graph["reasoning_sft.cli"] <= {"reasoning_sft.errors", "reasoning_sft.rundir"}
    assert not graph["reasoning_sft.config"] & {"reasoning_sft.rundir", "reasoning_sft.cli"}   # validation only


def test_the_readmes_layout_names_every_module_and_only_real_ones():
    import re
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Layout: a map of the pipeline", 1)[1].split("```")[1]
    named = set(re.findall(r"([\w/]+\.py)", layout))
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    assert modules - named == set(), "modules the README's layout does not name"
    assert named - modules == set(), "files the README's layout names that do not exist"
