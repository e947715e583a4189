"""The layering of docs/ARCHITECTURE.md, checked on the code.

The import graph is read from the source (``ast``): every ``import`` and ``from ... import``, at module level and
inside functions, relative imports resolved; ``from pkg import name`` counts as importing ``pkg.name`` when that
is a module, else as importing ``pkg``. Imports under ``if TYPE_CHECKING:`` never run: they are left out of the
cycle check but count for the model core's dependencies.

The bench path is measured, not read: ``run.py bench --report`` runs on a one-image experiment under a profiler,
and a module of the orchestration layers (``harness.cli``, ``harness.config``, ``harness.bench``, ``reports``)
is on the path when one of its functions hands work to another module of the project that is neither a generic
piece (``harness.core``) nor a component (datasets, metrics, methods). Building the parser (every command's
``add_arguments``) is main's own work and not followed.
"""

from __future__ import annotations

import ast
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "methods", "reports")
MODEL_CORE = "methods.alignvar"
# torch, einops and numpy are the model's libraries; safetensors is the file format of its checkpoints
# (methods/alignvar/weights.py reads and writes them), a file format rather than a framework.
MODEL_CORE_THIRD_PARTY = {"torch", "einops", "numpy", "safetensors"}
ORCHESTRATION = ("harness.cli", "harness.config", "harness.bench", "reports")
NOT_ON_PATH = ("harness.core",)  # generic pieces; components are everything outside ORCHESTRATION


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported project module, or the top-level name of a third-party/stdlib module
    line: int
    in_project: bool
    type_checking: bool


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path = REPO, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(path, root)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``) blocks."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else None
            if name == "TYPE_CHECKING":
                for child in node.body:
                    inside.update(id(n) for n in ast.walk(child))
    return inside


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    guarded = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[Import] = []

    def add(target: str, node: ast.AST) -> None:
        if target in modules:
            out.append(Import(name, target, node.lineno, True, id(node) in guarded))
        else:  # the longest enclosing project module, or a third-party/stdlib top-level name
            parts = target.split(".")
            for i in range(len(parts) - 1, 0, -1):
                if ".".join(parts[:i]) in modules:
                    out.append(Import(name, ".".join(parts[:i]), node.lineno, True, id(node) in guarded))
                    return
            out.append(Import(name, parts[0], node.lineno, False, id(node) in guarded))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in modules else base, node)
    return out


def import_graph(modules: dict[str, Path]) -> dict[str, list[Import]]:
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, list[Import]]) -> list[list[str]]:
    """One concrete cycle (``[a, b, ..., a]``) per strongly connected component that has one (Tarjan)."""
    edges = {
        m: sorted({i.target for i in imps if i.in_project and not i.type_checking and i.target in graph})
        for m, imps in graph.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges[v]:
                components.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)

    cycles = []
    for component in components:  # shortest cycle through the component's first module (breadth-first)
        members, start = set(component), component[0]
        previous: dict[str, str] = {}
        frontier, seen = [start], {start}
        while frontier and start not in previous:
            nxt = []
            for v in frontier:
                for w in edges[v]:
                    if w == start and start not in previous:
                        previous[start] = v
                    elif w in members and w not in seen:
                        seen.add(w)
                        previous[w] = v
                        nxt.append(w)
            frontier = nxt
        path, v = [start], previous[start]
        while v != start:
            path.append(v)
            v = previous[v]
        cycles.append([start, *reversed(path[1:]), start])
    return cycles


# ----------------------------------------------------------------------------------------------- the graph
@pytest.fixture(scope="module")
def graph() -> dict[str, list[Import]]:
    return import_graph(project_modules())


def test_the_graph_sees_module_and_function_level_imports(graph):
    """The reader finds what the checks below rely on: a function-level import, a ``from pkg import
    submodule`` edge, and the lazy imports of the notebook API in ``harness/__init__``."""
    main = {i.target for i in graph["harness.cli.main"]}
    assert "harness.core.mapping" in main  # imported inside main()
    facade = {i.target for i in graph["harness"]}
    assert {"harness.config.experiment", "harness.bench.runner", "reports.bench"} <= facade
    # `from harness.core import registry`, inside run()
    assert any(i.target == "harness.core.registry" for i in graph["harness.cli.list_cmd"])


def test_relative_imports_and_submodule_names_are_resolved(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\nfrom .sub import c\nfrom .sub.c import VALUE\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n    import numpy.linalg\n")
    (pkg / "sub" / "__init__.py").write_text("from .. import b\n")
    (pkg / "sub" / "c.py").write_text("from ..b import f\nVALUE = 1\n")
    modules = project_modules(tmp_path, ("pkg",))
    found = import_graph(modules)
    assert [i.target for i in found["pkg.a"]] == ["pkg.b", "pkg.sub.c", "pkg.sub.c"]
    assert [(i.target, i.in_project) for i in found["pkg.b"]] == [("pkg.a", True), ("numpy", False)]
    assert [i.target for i in found["pkg.sub"]] == ["pkg.b"]
    assert [i.target for i in found["pkg.sub.c"]] == ["pkg.b"]
    assert find_cycles(found) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_a_cycle_hidden_by_a_function_level_import_is_reported(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "x.py").write_text("import pkg.y\n")
    (pkg / "y.py").write_text("from pkg import z\n")
    (pkg / "z.py").write_text("def late():\n    from pkg.x import thing\n")
    (pkg / "t.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.t2 import T\n")
    (pkg / "t2.py").write_text("from pkg.t import anything\n")  # a TYPE_CHECKING cycle never runs
    assert find_cycles(import_graph(project_modules(tmp_path, ("pkg",)))) == [["pkg.x", "pkg.y", "pkg.z", "pkg.x"]]


def test_no_import_cycles(graph):
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (module-level or function-level):\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_model_core_imports_only_torch_einops_numpy_safetensors_and_itself(graph):
    stdlib = set(sys.stdlib_module_names)
    core = {m: imps for m, imps in graph.items() if m == MODEL_CORE or m.startswith(MODEL_CORE + ".")}
    assert len(core) > 10, sorted(core)  # the reader found the model core
    wrong = [
        f"{i.source}:{i.line} imports {i.target}"
        for imps in core.values()
        for i in imps
        if (i.in_project and not (i.target == MODEL_CORE or i.target.startswith(MODEL_CORE + ".")))
        or (not i.in_project and i.target not in stdlib | MODEL_CORE_THIRD_PARTY)
    ]
    assert not wrong, "the model core must not import these:\n" + "\n".join(wrong)


# ----------------------------------------------------------------------------------------------- bench path
def documented_bench_path() -> list[str]:
    """The modules in the table under '## Following `run.py bench`' of docs/ARCHITECTURE.md."""
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    section = text.split("## Following `run.py bench`", 1)[1].split("\n## ", 1)[0]
    paths = re.findall(r"^\| `([\w/]+\.py)` \|", section, flags=re.MULTILINE)
    return [p.removesuffix(".py").replace("/", ".") for p in paths]


def test_the_documented_bench_path_has_at_most_eight_modules_that_exist():
    path = documented_bench_path()
    assert 1 < len(path) <= 8, path
    assert len(set(path)) == len(path), path
    modules = project_modules()
    assert [m for m in path if m not in modules] == []


def _layer(module: str, layers: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in layers)


def test_run_py_bench_passes_through_exactly_the_documented_modules(tmp_path, monkeypatch):
    from harness.cli import main as cli_main

    exp = tmp_path / "one_image.yaml"
    exp.write_text(
        "name: one_image\n"
        f"output_root: {tmp_path / 'runs'}\n"
        "datasets: [{type: bundled, name: bundled, hr_size: 64, scale: 4, count: 1}]\n"
        "methods: [bicubic]\n"
        "metrics: [psnr_rgb]\n"
        "bench: {device: cpu, bootstrap_samples: 100}\n"
    )
    handing_on: set[str] = set()  # orchestration modules whose functions called another module's
    building = []  # non-empty while main builds its parser: every command's add_arguments, not the bench path
    build_parser = cli_main.build_parser

    def build_parser_unrecorded():
        building.append(True)
        try:
            return build_parser()
        finally:
            building.pop()

    monkeypatch.setattr(cli_main, "build_parser", build_parser_unrecorded)

    def profile(frame, event, arg):
        if event != "call" or building:
            return
        callee = frame.f_globals.get("__name__", "")
        if not _layer(callee, PACKAGES) or _layer(callee, NOT_ON_PATH):
            return
        caller = frame.f_back
        while caller is not None and not _layer(caller.f_globals.get("__name__", ""), PACKAGES):
            caller = caller.f_back
        if caller is None or caller.f_code.co_name == "<module>":  # import-time code is not the path
            return
        name = caller.f_globals["__name__"]
        if name != callee and _layer(name, ORCHESTRATION):
            handing_on.add(name)

    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        code = cli_main.main(["bench", str(exp), "--report", "--no-progress"])
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    assert code == 0
    assert (tmp_path / "runs" / "one_image" / "report.html").is_file()
    documented = set(documented_bench_path())
    assert (sorted(handing_on - documented), sorted(documented - handing_on)) == ([], []), (
        "run.py bench passes through modules docs/ARCHITECTURE.md does not list (first list), or the doc lists "
        "modules it no longer passes through (second list)"
    )
