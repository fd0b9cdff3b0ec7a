"""The house, drawn from the imports: the core at the bottom, metrics and report above it, the
method folders above those, the jobs above them and the CLI on top. No arrow runs back up, no
method folder imports another, no import cycle; no function over 60 lines (but the CLI's
argument table) and no file over 350 lines."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "attndiff"
CORE_FILES = {"__init__", "config", "checkpoint", "distributed", "seeding", "precision", "paths", "fsutil", "run",
              "progress", "onnx_runtime"}
FLOORS = {"core": 0, "data": 1, "diffusion": 2, "metrics": 3, "report": 3,
          "sfbd": 4, "symmetry": 4, "attention": 4, "audio": 4, "jobs": 5, "cli": 6}


def unit(module: str) -> str:
    """'attndiff.jobs.sfbd' -> 'jobs'; the ground-floor files are all 'core'."""
    head = module.split(".")[1] if "." in module else "__init__"
    return "core" if head in CORE_FILES else "cli" if head == "__main__" else head


def modules() -> dict[str, set[str]]:
    """Every module of the package and the attndiff modules it imports (at any depth in the file)."""
    graph = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__") if rel.name == "__init__" else ".".join(rel.parts)
        imports = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("attndiff"):
                imports.add(node.module)
                imports.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                imports.update(a.name for a in node.names if a.name.startswith("attndiff"))
        graph[name] = imports
    return {m: {i for i in imps if i in graph} for m, imps in graph.items()}


def test_every_unit_has_a_floor():
    assert {unit(m) for m in modules()} <= set(FLOORS)


def wrong_arrows(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, imports in graph.items():
        here = unit(module)
        for imported in imports:
            there = unit(imported)
            if there != here and (FLOORS[there] > FLOORS[here] or (FLOORS[there] == FLOORS[here] and here != "core")):
                wrong.append(f"{module} -> {imported}")
    return wrong


def test_imports_point_down_and_methods_do_not_import_each_other():
    assert not wrong_arrows(modules())


def test_the_checker_sees_wrong_arrows():
    assert wrong_arrows({"attndiff.seeding": {"attndiff.jobs.train"}}) == ["attndiff.seeding -> attndiff.jobs.train"]
    assert wrong_arrows({"attndiff.sfbd.loop": {"attndiff.symmetry.recipes"}})
    assert wrong_arrows({"attndiff.diffusion.training": {"attndiff.metrics.fid"}})
    assert not wrong_arrows({"attndiff.jobs.sfbd": {"attndiff.symmetry.recipes", "attndiff.run"}})


def test_no_import_cycles_between_modules():
    graph = modules()
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(m, path):
        state[m] = 1
        for n in graph[m]:
            if n == m or n == m.rsplit(".", 1)[0]:
                continue  # a package's own module, or a module naming its package
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path, m, n]))
            if n not in state:
                visit(n, [*path, m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_functions_and_files_stay_small():
    long = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        if len(text.splitlines()) > 350:
            long.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name != "build_parser":
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{path.name}:{node.name}: {lines} lines")
    assert not long, long
