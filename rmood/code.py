"""The version of the code a step runs, for Snakemake's params: a job reruns when its step's code changes.

A step's code is the module of its function and every rmood module that module imports, transitively (imports
inside functions included: steps import their heavy dependencies lazily); a plugin method's training step counts
its own package's modules too (found where Python imports them from, so an edit of an editable install counts).
Each module counts by its syntax tree without docstrings, so an edit of a comment, a docstring or the layout
changes nothing; a change to a statement anywhere in those modules reruns the step. Read with `ast`, never
imported: cheap at parse time (no torch; every step's version in a fraction of a second). The digest follows
Python's own syntax tree, so another Python version reruns each job once.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent


@functools.cache
def module_file(name: str) -> Path | None:
    """The source file of module `name` (a module or a package's __init__), or None if there is none: rmood's
    from this checkout, another package's (a plugin method's) where Python would import it from."""
    if name.split(".")[0] != "rmood":
        try:
            spec = importlib.util.find_spec(name)  # (imports the packages above it)
        except (ImportError, ValueError):
            return None
        origin = Path(spec.origin) if spec is not None and spec.origin else None
        return origin if origin is not None and origin.suffix == ".py" and origin.is_file() else None
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


DEFINITIONS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


@functools.cache
def parsed(name: str) -> tuple[str, frozenset[str]]:
    """The digest of module `name`'s syntax tree (docstrings left out) and the modules it imports of rmood and of
    its own package."""
    path = module_file(name)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    imported = set()
    for node in ast.walk(tree):  # one pass: children are queued before a node's docstring is dropped
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module)
            imported |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from rmood.rm import score`
        elif isinstance(node, DEFINITIONS) and node.body and isinstance(node.body[0], ast.Expr) and \
                isinstance(node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str):
            node.body = node.body[1:] or [ast.Pass()]
    packages = {"rmood", name.split(".")[0]}  # rmood's modules, and a plugin's own
    imported = {m for m in imported if m.split(".")[0] in packages and m != name and module_file(m) is not None}
    for module in list(imported):  # a submodule runs its packages' __init__ first
        parts = module.split(".")
        imported |= {".".join(parts[:i]) for i in range(1, len(parts))}
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest(), frozenset(imported - {name})


def imported_by_name(name: str) -> frozenset[str]:
    """The modules rmood module `name` imports by a name held in data, not an import statement:
    `rmood.rm.auto.register_models` imports the modules of the methods' model classes (`rmood.rm.methods`)."""
    if name != "rmood.rm.auto":
        return frozenset()
    from rmood.rm.methods import registrations

    return frozenset(target.split(":")[0] for target in registrations())


def step_modules(target: str) -> list[str]:
    """The rmood modules whose code counts for a step target ("module:function"): its module and the rmood modules
    it imports, transitively."""
    module = target.split(":")[0].split(".")
    seen: set[str] = set()
    pending = [".".join(module[:i]) for i in range(1, len(module) + 1)]  # its packages' __init__ run first
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending += [*parsed(name)[1], *imported_by_name(name)]
    return sorted(seen)


@functools.cache
def code_version(target: str) -> str:
    """A short digest of the code a step target runs (`step_modules`), docstrings and comments left out."""
    return hashlib.sha256("".join(f"{name}={parsed(name)[0]}\n" for name in step_modules(target)).encode()
                          ).hexdigest()[:16]
