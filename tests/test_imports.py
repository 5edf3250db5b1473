"""rmood's imports go one way (no cycle, function-level imports included), and the light entry points (the config,
the command line, every error class) never load torch.

`python tests/test_imports.py` prints the import graph's layers: layer 0 imports no other rmood module, layer k
only modules of lower layers.
"""

from __future__ import annotations

import ast
import builtins
import graphlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "rmood"
HEAVY = ("torch", "transformers")


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its __init__.py)."""
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The rmood modules that module `name` imports anywhere in its body (module level, in functions, under
    TYPE_CHECKING): `from a.b import c` counts as a.b.c when c is a module, else as a.b."""

    def known_prefix(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {known_prefix(alias.name) for alias in node.names if alias.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                member = f"{source}.{alias.name}"
                found.add(member if member in known else known_prefix(source))
    return found - {None}


def import_graph() -> dict[str, set[str]]:
    """Module -> the rmood modules importing it runs first: what it imports, and its parent packages (importing
    a.b.c runs a/__init__.py and a/b/__init__.py)."""
    known = modules()
    graph = {}
    for name, path in known.items():
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = (imported(name, path, known) | parents) - {name}
    return graph


def layers(graph: dict[str, set[str]]) -> list[list[str]]:
    """The topological layering: each module in the first layer after all of its imports."""
    sorter = graphlib.TopologicalSorter(graph)
    sorter.prepare()
    result = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        result.append(ready)
        sorter.done(*ready)
    return result


def error_modules() -> dict[str, list[str]]:
    """Module -> the exception classes it defines (a class whose base is a builtin exception or ends in Error)."""
    exceptions = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}
    found: dict[str, list[str]] = {}
    for name, path in modules().items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in getattr(node, "bases", [])}
            if isinstance(node, ast.ClassDef) and any(b in exceptions or b.endswith("Error") for b in bases):
                found.setdefault(name, []).append(node.name)
    return found


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None
    assert set(order) == set(graph)


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    graph = import_graph()
    assert "rmood.rm.ensemble" in graph["rmood.rm.score"]  # imported inside load_reward_model only
    assert "rmood.rm.methods" in graph["rmood.rm.auto"]  # inside register_models only
    assert "rmood.rm" in graph["rmood.rm.score"] and "rmood" in graph["rmood.rm"]  # parent packages
    code = "def f():\n    from .b import g\n    from . import c\n    import rmood.x.d\n"
    (tmp_path / "a.py").write_text(code)
    known = dict.fromkeys(("rmood.x", "rmood.x.a", "rmood.x.b", "rmood.x.c", "rmood.x.d"), tmp_path / "a.py")
    assert imported("rmood.x.a", tmp_path / "a.py", known) == {"rmood.x.b", "rmood.x.c", "rmood.x.d"}


def test_error_classes_the_config_and_the_command_line_do_not_load_torch():
    errors = error_modules()
    assert {"rmood.io", "rmood.config", "rmood.rm.score", "rmood.labeling.judge"} <= errors.keys()
    imports = [f"from {module} import {', '.join(names)}" for module, names in sorted(errors.items())]
    code = "\n".join(["import sys", "import rmood.config, rmood.cli, rmood.runner, rmood.steps", *imports,
                      f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"])
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"heavy modules loaded: {result.stdout}"


if __name__ == "__main__":
    for depth, layer in enumerate(layers(import_graph())):
        print(f"{depth}: {' '.join(layer)}")
