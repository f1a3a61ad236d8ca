"""The package's layers import downward only, with no cycles and no hidden imports: models and
data at the bottom, training above both, envs without learning, policies on models and the
checkpoint reader (never training), eval on envs and policies, the command line on top.

Read from the source with ``ast`` (nothing is imported), so a violation names the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Source folder -> the package it is installed as (pyproject's package-dir).
FOLDERS = {
    "vw_robot": "vw_robot",
    "envs": "vw_robot.envs",
    "policies": "vw_robot.policies",
    "eval": "vw_robot.eval",
}
# Each layer and the layers it may import (besides itself). The bottom modules need nothing
# but the standard library and third-party packages.
BOTTOM = {
    "vw_robot",
    "vw_robot.errors",
    "vw_robot.io",
    "vw_robot.device",
    "vw_robot.provenance",
    "vw_robot.checkpoint",
    "vw_robot.processes",
    "vw_robot.heads",
}
ALLOWED = {
    "bottom": set(),
    "models": {"bottom"},
    "data": {"bottom"},
    "envs": {"bottom"},
    "training": {"bottom", "models", "data"},
    "policies": {"bottom", "models", "envs"},
    "eval": {"bottom", "models", "data", "envs", "policies"},
    "serving": {"bottom", "policies"},
    "config": {"bottom", "models", "data", "envs", "policies", "training"},
    "pipeline": {"bottom", "models", "data", "envs", "policies", "training", "eval", "config"},
    "jobs": {
        "bottom",
        "models",
        "data",
        "envs",
        "policies",
        "training",
        "eval",
        "serving",
        "config",
        "pipeline",
    },
    "study": {
        "bottom",
        "models",
        "data",
        "envs",
        "policies",
        "training",
        "eval",
        "config",
        "pipeline",
        "jobs",
    },
    "launch": {"bottom", "config", "jobs"},
    "cli": {"bottom", "config", "jobs", "launch", "study"},
}
# Function-level imports of the package's own modules that a heavy optional dependency
# justifies (each has a comment at the import saying why): file -> imported modules.
LAZY_ALLOWED = {
    "envs/registry.py": {"vw_robot.envs.metaworld_suite", "vw_robot.envs.robosuite_suite"},
}


def layer_of(module: str) -> str:
    if module in BOTTOM:
        return "bottom"
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else ""
    if name in ("models", "data", "envs", "training", "policies", "eval", "serving"):
        return name
    if name in ("config", "pipeline", "jobs", "study", "launch", "cli"):
        return name
    raise AssertionError(f"{module}: no layer assigned; add it to tests/test_layers.py")


def module_name(path: Path) -> str:
    folder, *rest = path.relative_to(REPO).with_suffix("").parts
    parts = [FOLDERS[folder], *rest]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts).replace("vw_robot.vw_robot", "vw_robot")


def sources() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (REPO / folder).rglob("*.py"))


def own_imports(tree: ast.AST, module: str) -> list[tuple[int, str, bool]]:
    """(line, imported vw_robot module, inside a function) for every import in ``tree``."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend(
                    (child.lineno, a.name, in_function)
                    for a in child.names
                    if a.name.split(".")[0] == "vw_robot"
                )
            elif isinstance(child, ast.ImportFrom) and child.module:
                if child.level:  # relative import: resolve against this module's package
                    base = module.split(".")[: -child.level]
                    target = ".".join([*base, child.module])
                else:
                    target = child.module
                if target.split(".")[0] == "vw_robot":
                    # `from vw_robot.envs import metaworld_suite` imports a submodule
                    found.extend(
                        (child.lineno, f"{target}.{a.name}", in_function) for a in child.names
                    )
            visit(child, inside)

    visit(tree, False)
    return found


def resolve(name: str, modules: set[str]) -> str:
    """The longest prefix of ``name`` that is one of our modules."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return "vw_robot"


def import_graph() -> tuple[dict[str, set[str]], list[str], list[str]]:
    modules = {module_name(p): p for p in sources()}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    upward, lazy = [], []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        lines = path.read_text().splitlines()
        rel = path.relative_to(REPO).as_posix()
        for line, name, in_function in own_imports(tree, module):
            target = resolve(name, set(modules))
            if target == module:
                continue
            if in_function:
                text = lines[line - 1] + (lines[line - 2] if line > 1 else "")
                if target not in LAZY_ALLOWED.get(rel, set()) or "#" not in text:
                    lazy.append(f"{rel}:{line}: function-level import of {target}")
                continue
            graph[module].add(target)
            source_layer, target_layer = layer_of(module), layer_of(target)
            if source_layer != target_layer and target_layer not in ALLOWED[source_layer]:
                upward.append(f"{rel}:{line}: {source_layer} imports {target} ({target_layer})")
    return graph, upward, lazy


def test_layers_import_downward_only() -> None:
    _, upward, _ = import_graph()
    assert not upward, "\n".join(upward)


def test_no_function_level_imports_of_our_own_modules() -> None:
    _, _, lazy = import_graph()
    assert not lazy, "\n".join(lazy)


def test_no_import_cycles() -> None:
    graph, _, _ = import_graph()
    # A package imports its submodules and they import each other through it; what must not
    # happen is a module reaching itself through other modules.
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start and len(path) > 1 and not _through_own_package(path):
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, "\n".join(sorted(set(cycles))[:10])


def _through_own_package(path: list[str]) -> bool:
    """A package ``__init__`` re-exporting its own submodules is not a cycle."""
    return any(
        other.startswith(node + ".") or node.startswith(other + ".")
        for node in path
        for other in path
        if other != node
    )


@pytest.mark.parametrize("module", ["vw_robot.policies", "vw_robot.models.registry"])
def test_acting_never_imports_training(module: str) -> None:
    graph, _, _ = import_graph()
    reached, todo = set(), [module]
    while todo:
        node = todo.pop()
        for nxt in graph.get(node, ()):
            if nxt not in reached:
                reached.add(nxt)
                todo.append(nxt)
    assert not [m for m in reached if m.startswith("vw_robot.training")], sorted(reached)


# Scripts that sit on top of the package and that nothing imports: benchmarks and doc builders.
SCRIPTS = ("benchmarks", "docs")


def script_imports() -> list[tuple[str, int, str, str | None]]:
    """(script, line, vw_robot module, imported name or None) for every import of the package
    in benchmarks/*.py and docs/*.py, module level or not."""
    found = []
    for folder in SCRIPTS:
        for path in sorted((REPO / folder).glob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    found += [
                        (rel, node.lineno, a.name, None)
                        for a in node.names
                        if a.name.split(".")[0] == "vw_robot"
                    ]
                elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "vw_robot"
                ):
                    found += [(rel, node.lineno, node.module, a.name) for a in node.names]
    return found


def test_scripts_import_only_what_the_package_has() -> None:
    """A benchmark or doc script that imports a module or name the package no longer has (after
    a refactor) fails here, naming the line, instead of when someone next runs it."""
    import importlib

    missing = []
    for rel, line, module, name in script_imports():
        try:
            imported = importlib.import_module(module)
        except ImportError as exc:
            missing.append(f"{rel}:{line}: {module}: {exc}")
            continue
        if name is not None and not hasattr(imported, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"{rel}:{line}: {module} has no {name!r}")
    assert script_imports(), "no script imports found: the scan is broken"
    assert not missing, "\n".join(missing)


def test_nothing_in_the_package_imports_a_script() -> None:
    offenders = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in (*SCRIPTS, "tests"):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: imports {name}")
    assert not offenders, "\n".join(offenders)
