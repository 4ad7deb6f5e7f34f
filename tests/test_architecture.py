"""The package's import graph is the pipeline's map: a ground floor (errors, run dirs, the command line,
the typed config and its checks) that imports nothing above it; three wings (data, training,
evaluation) that never import a stage; data that imports neither other wing; evaluation that runs on
any saved model, so never imports training; stages on top. No cycle, lazy imports included (a
function-level import does not hide one here)."""

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
    assert len(graph) > 40
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


GROUND_FLOOR = {f"reasoning_sft.{m}" for m in ("errors", "registry", "rundir", "cli", "sweep", "schema", "config")}
STAGES = {f"reasoning_sft.{m}" for m in ("prepare", "curate", "plan", "train", "train_worker", "evaluate", "grade",
                                         "report")}
WINGS = ("data", "training", "evaluation")


def wing(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 2 and parts[1] in WINGS:
        return parts[1]
    return "ground" if module in GROUND_FLOOR else "stage" if module in STAGES else "?"


def test_every_module_is_on_a_floor_or_in_a_wing():
    graph = import_graph()
    assert {m for m in graph if wing(m) == "?"} <= {"reasoning_sft"} | {f"reasoning_sft.{w}" for w in WINGS}


def test_the_ground_floor_imports_nothing_above_it():
    graph = import_graph()
    assert graph["reasoning_sft.errors"] == set()
    assert graph["reasoning_sft.registry"] <= {"reasoning_sft.errors"}
    assert graph["reasoning_sft.rundir"] <= {"reasoning_sft.errors"}
    assert graph["reasoning_sft.cli"] <= {"reasoning_sft.errors", "reasoning_sft.rundir"}
    assert not graph["reasoning_sft.config"] & {"reasoning_sft.rundir", "reasoning_sft.cli"}   # validation only
    for m in GROUND_FLOOR:
        assert graph[m] <= GROUND_FLOOR, (m, graph[m] - GROUND_FLOOR)


def test_wings_import_down_the_pipeline_and_never_a_stage():
    allowed = {"data": {"ground", "data"}, "evaluation": {"ground", "data", "evaluation"},
               # training evaluates after training (recipe.py); evaluation never needs training
               "training": {"ground", "data", "evaluation", "training"}}
    for m, deps in import_graph().items():
        if wing(m) in allowed:
            wrong = {d for d in deps if wing(d) not in allowed[wing(m)]}
            assert not wrong, f"{m} imports {sorted(wrong)}"


def test_the_readmes_layout_names_every_module_and_only_real_ones():
    """The README's tree, read by its indentation: `data/` then `  records.py` is data/records.py."""
    import re
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Layout: a map of the pipeline", 1)[1].split("```")[1]
    named, folders = set(), []          # folders: (indent, name) of the enclosing folders
    for line in layout.splitlines():
        m = re.match(r"^( *)([\w.]+/?)\s", line + " ")
        if not m or line.strip().startswith("#"):
            continue
        indent, name = len(m.group(1)), m.group(2)
        folders = [(i, f) for i, f in folders if i < indent]
        if name.endswith("/"):
            folders.append((indent, name))
        elif name.endswith(".py"):
            named.add("".join(f for _, f in folders) + name)
        named |= {"".join(f for _, f in folders) + n for n in re.findall(r"; ([\w]+\.py)", line)}
    modules = {"reasoning_sft/" + str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    named = {n for n in named if n.startswith("reasoning_sft/")}
    assert modules - named == set(), "modules the README's layout does not name"
    assert named - modules == set(), "files the README's layout names that do not exist"


def test_tests_mirror_the_wings():
    """tests/<wing>/ for each wing of the package, each with tests of its own; stage and house tests on top."""
    tests = ROOT / "tests"
    for w in WINGS:
        assert (PACKAGE / w).is_dir() and list((tests / w).glob("test_*.py")), w
    names = [p.name for p in tests.rglob("test_*.py")]
    assert len(names) == len(set(names)), "a test file name used twice (rootdir imports need unique names)"


def test_named_plugins_live_in_one_registry_each_filled_by_the_module_it_names():
    """registry.py's registries are the ground floor's only upward references: each names the module
    that fills it (imported by name when first read, as Hydra imports a `_target_`), which registers
    every plugin of its kind; the schema's allowed values are those names."""
    import reasoning_sft.registry as registry
    files = {str(p.relative_to(ROOT).with_suffix("")).replace("/", ".").removesuffix(".__init__"): p
             for p in PACKAGE.rglob("*.py")}
    for reg in registry.REGISTRIES:
        assert reg.provider in files and reg.names(), reg.kind
        fills = [p for m, p in files.items() if m == reg.provider or m.startswith(reg.provider + ".")]
        assert any("from reasoning_sft.registry import" in p.read_text() for p in fills), reg.provider
    schema = (PACKAGE / "schema.py").read_text()
    for kind in ("THINKING_STYLES", "PROMPTS", "GRADING_PROFILES", "BACKENDS", "LAUNCHERS", "REPORT_FIGURES",
                 "GRADE_TASKS"):
        assert f"{kind}.check(" in schema, kind   # the schema's allowed values are the registry's names


def _functions(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_the_wings_are_handed_their_own_groups_not_the_run_config():
    """Parse, don't validate: no function of data/ or evaluation/ takes the whole run config (`cfg`), in
    training/ only the recipe (which reads it once) and the launcher (which freezes it for the ranks)."""
    takers = []
    for w in WINGS:
        for path in (PACKAGE / w).rglob("*.py"):
            if w == "training" and path.name in ("recipe.py", "launch.py"):
                continue
            takers += [f"{path.relative_to(ROOT)}:{f.lineno} {f.name}" for f in _functions(path)
                       if "cfg" in [a.arg for a in f.args.args + f.args.kwonlyargs]]
    assert takers == []
    reads = sum(path.read_text().count("cfg.") for w in WINGS for path in (PACKAGE / w).rglob("*.py"))
    assert reads <= 40, reads


def test_no_module_is_longer_than_500_lines():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500}
    assert long == {}
