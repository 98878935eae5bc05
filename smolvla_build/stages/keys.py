"""Up-to-date keys (one config_changed per task over everything its output depends on) and the
actions that read them."""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

from doit.tools import config_changed

from ..fsutil import tree_digest

PACKAGE = Path(__file__).resolve().parents[1]
ROOT = PACKAGE.parent
PROJECT = ("smolvla_build", "smolvla_runtime")
RUNTIME = "../smolvla_runtime"      # the runtime package beside this one (code_digest paths are relative)


@functools.lru_cache(maxsize=None)
def module_file(name: str) -> Path | None:
    """The source file of a project module (`smolvla_build.passes.gemm`), or None if it is not one."""
    base = ROOT.joinpath(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+([.\w]+)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)", re.M)
IMPORT = re.compile(r"^[ \t]*import[ \t]+([^\n]+)", re.M)
WORD = re.compile(r"\w+")


@functools.lru_cache(maxsize=None)
def project_imports(name: str) -> frozenset[str]:
    """The project modules `name` imports, at module level or inside functions (the lazy imports a
    task action makes when it runs), with the packages whose __init__ each import executes. Read
    with two patterns rather than a parse (task generation is on the no-op path); a line in a
    docstring that looks like an import only adds a module, never loses one."""
    f = module_file(name)
    package = name if f.name == "__init__.py" else name.rpartition(".")[0]
    text = module_source(name).decode()
    targets = [t.strip().split(" ")[0] for m in IMPORT.finditer(text) for t in m.group(1).split(",")]
    for m in FROM_IMPORT.finditer(text):
        base = m.group(1)
        level = len(base) - len(base.lstrip("."))
        if level:
            parent = package.split(".")[: len(package.split(".")) - (level - 1)]
            rest = base[level:]
            base = ".".join(parent + ([rest] if rest else []))
        names = WORD.findall(m.group(2).split("#")[0] if "(" not in m.group(2) else m.group(2))
        targets += [base] + [f"{base}.{n}" for n in names if n != "as"]
    found = set()
    for t in targets:
        if t.split(".")[0] in PROJECT and module_file(t):
            parts = t.split(".")
            found |= {".".join(parts[: i + 1]) for i in range(len(parts)) if module_file(".".join(parts[: i + 1]))}
    return frozenset(found - {name})


@functools.lru_cache(maxsize=None)
def module_source(name: str) -> bytes:
    return module_file(name).read_bytes()         # read once per process: closures share modules


@functools.lru_cache(maxsize=None)
def closure_digest(name: str) -> str:
    h = hashlib.sha256()
    for m in import_closure(name):
        h.update(m.encode())
        h.update(module_source(m))
    return h.hexdigest()[:16]


def import_closure(name: str) -> list[str]:
    """`name` and every project module it can import, transitively."""
    seen, todo = set(), [name]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += project_imports(m)
    return sorted(seen)


def code_digest(*subpackages: str) -> str:
    """Digest of the package code a stage runs (a change rebuilds what that code made)."""
    return tree_digest(*(PACKAGE / s for s in subpackages))


class Action:
    """A task action named by its library module and function, imported only when it runs: task
    generation then loads no heavy library (onnx, onnxruntime, torch), which keeps a no-op `doit`
    fast. Picklable, for `doit -n 2`."""

    def __init__(self, module: str, function: str):
        self.module, self.function = module, function
        self.__name__ = function

    def __call__(self, *args, **kwargs):
        import importlib
        return getattr(importlib.import_module(self.module), self.function)(*args, **kwargs)

    def code(self) -> str:
        """Digest of every project module the action can run, derived from its imports (not a hand
        list): editing any of them makes the task stale."""
        return closure_digest(self.module)


def action(target: str) -> Action:
    """`action("passes.task:preprocess_task")`: the function, relative to the smolvla_build package."""
    module, function = target.split(":")
    return Action(f"smolvla_build.{module}", function)


def uptodate(kw: dict) -> list:
    # exactly one config_changed per task: doit stores its digest under one fixed key per task
    return [config_changed(kw)]
