"""Up-to-date keys, and the actions that read them.

A task's key is one doit `config_changed` over its spec (the frozen value its action receives, and
nothing else), a digest of the project code the action can run, and the versions of the tools it
runs. The code digest covers the action module and every project module it can import,
transitively, lazy imports inside functions included: the import graph is one-way (pyproject.toml's
import-linter contracts), so that closure is what the task runs and no more. Each module counts by
its compiled code without docstrings and without line numbers: editing a comment or a docstring, or
moving code down a line, changes no key (docs/incremental.md).

Parsing and compiling a hundred modules on every `doit` would cost a third of a second, so each
module's imports and digest are kept in `<artifacts>/.doit.code-digests.json` (`use_cache`), valid
while the file's size and modification time, and the interpreter, are the same.
"""

from __future__ import annotations

import ast
import atexit
import dataclasses
import functools
import hashlib
import importlib
import json
import sys
from pathlib import Path

from doit.tools import config_changed

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("smolvla_build", "smolvla_runtime")


@functools.lru_cache(maxsize=None)
def module_file(name: str) -> Path | None:
    """The source file of a project module (`smolvla_build.passes.gemm`), or None if it is not one."""
    base = ROOT.joinpath(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _imported_names(tree: ast.AST, name: str, is_package: bool) -> list[str]:
    """Every module name an import statement anywhere in `tree` names (relative ones resolved),
    with the names a `from X import a, b` may mean as modules (X.a, X.b)."""
    package = name if is_package else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out += [base] + [f"{base}.{a.name}" for a in node.names]
    return out


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.fix_missing_locations(tree)


def _canonical(value) -> str:
    """A code object (or constant) as text without file names or line numbers, stable across runs
    (a frozenset's order depends on string hashing)."""
    if hasattr(value, "co_code"):
        return "code(" + "|".join([value.co_name, value.co_qualname, value.co_code.hex(), repr(value.co_names),
                                   repr(value.co_varnames), repr(value.co_freevars), repr(value.co_cellvars),
                                   repr((value.co_argcount, value.co_posonlyargcount, value.co_kwonlyargcount,
                                         value.co_flags)), value.co_exceptiontable.hex(),
                                   ",".join(_canonical(c) for c in value.co_consts)]) + ")"
    if isinstance(value, frozenset):
        return "frozenset(" + ",".join(sorted(_canonical(v) for v in value)) + ")"
    if isinstance(value, tuple):
        return "(" + ",".join(_canonical(v) for v in value) + ")"
    return f"{type(value).__name__}:{value!r}"


def _rules() -> str:
    """What the cached digests were computed under: this Python and this file's own rules (a change
    to how digests or imports are read must reach every module, touched or not)."""
    return sys.version + " " + hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


class _Cache:
    """{module: [mtime_ns, size, imports, digest]}, read from and written to `path` (if any)."""

    def __init__(self):
        self.path: Path | None = None
        self.entries: dict = {}
        self.dirty = False

    def load(self, path: Path) -> None:
        self.path = Path(path)
        try:
            data = json.loads(self.path.read_text())
            if data.get("rules") == _rules():
                self.entries.update(data["modules"])
        except (OSError, ValueError, KeyError, AttributeError):
            pass

    def save(self) -> None:
        if self.dirty and self.path is not None and self.path.parent.is_dir():
            from ..fsutil import write_json
            try:
                write_json(self.path, {"rules": _rules(), "modules": self.entries})
                self.dirty = False
            except OSError:
                pass                    # a read-only artifacts folder: the next doit computes them again


_cache = _Cache()
atexit.register(_cache.save)


def use_cache(path: Path) -> None:
    """Keep the modules' digests in `path` between runs (load_tasks: the artifacts folder's)."""
    _cache.load(path)


def _module(name: str) -> tuple[frozenset[str], str]:
    """(the project modules `name` imports, its code digest)."""
    f = module_file(name)
    st = f.stat()
    hit = _cache.entries.get(name)
    if hit and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
        return frozenset(hit[2]), hit[3]
    imports, digest = _parse(name, f)
    _cache.entries[name] = [st.st_mtime_ns, st.st_size, sorted(imports), digest]
    _cache.dirty = True
    return imports, digest


def _parse(name: str, f: Path) -> tuple[frozenset[str], str]:
    tree = ast.parse(f.read_bytes(), filename=str(f))
    found = set()
    for target in _imported_names(tree, name, f.name == "__init__.py"):
        parts = target.split(".")
        if parts[0] not in PROJECT:
            continue
        # importing a.b.c executes the __init__ of a and of a.b too
        found |= {".".join(parts[: i + 1]) for i in range(len(parts)) if module_file(".".join(parts[: i + 1]))}
    code = compile(_without_docstrings(tree), name, "exec", dont_inherit=True)
    return frozenset(found - {name}), hashlib.sha256(_canonical(code).encode()).hexdigest()


def project_imports(name: str) -> frozenset[str]:
    """The project modules `name` imports, at module level or inside functions."""
    return _module(name)[0]


def module_digest(name: str) -> str:
    """The digest of a module's code: comments, docstrings and line numbers do not count."""
    return _module(name)[1]


@functools.lru_cache(maxsize=None)            # one task generation: the sources do not change under it
def import_closure(name: str) -> tuple[str, ...]:
    """`name` and every project module it can import, transitively."""
    seen, todo = set(), [name]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += project_imports(m)
    return tuple(sorted(seen))


@functools.lru_cache(maxsize=None)
def closure_digest(name: str) -> str:
    h = hashlib.sha256()
    for m in import_closure(name):
        h.update(f"{m}:{module_digest(m)}\n".encode())
    return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Action:
    """A task action named by its library module and function, imported only when it runs: task
    generation then loads no heavy library (onnx, onnxruntime, torch), which keeps a no-op `doit`
    fast. Picklable, for `doit -n 2`."""

    module: str
    function: str

    @property
    def __name__(self) -> str:
        return self.function

    def __call__(self, spec):
        return getattr(importlib.import_module(self.module), self.function)(spec)

    def code(self) -> str:
        """Digest of every project module the action can run, derived from its imports (not a hand
        list): editing any of them, but for its comments and docstrings, makes the task stale."""
        return closure_digest(self.module)


def action(target: str) -> Action:
    """`action("passes.preprocess_task:preprocess_task")`: the function, relative to smolvla_build."""
    module, function = target.split(":")
    return Action(f"smolvla_build.{module}", function)


def serialized(value):
    """A spec as JSON values: dataclasses as dicts of their fields, paths as strings, tuples as lists
    (what dataclasses.asdict and json would make, in a third of its time: every `doit` keys every task)."""
    if dataclasses.is_dataclass(value):
        return {f.name: serialized(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): serialized(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [serialized(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def key(spec, act: Action, tools: dict | None = None) -> dict:
    """What a task's up-to-date check digests: its spec, the code its action runs, the tools' versions."""
    return {"spec": serialized(spec), "code": act.code(), "tools": tools or {}}


def declare(basename: str, act: Action, spec, *, doc: str, file_dep, targets, name: str | None = None,
            tools: dict | None = None, always: bool = False, verbosity: int | None = None, owns=()) -> dict:
    """One doit task whose action receives `spec` alone; its key is `key(spec, act, tools)`, unless
    it `always` runs (its up-to-date check is its own: eval and divergence, per episode). `owns`:
    folders the task fills beyond its targets (a bundle's files), which `prune` removes with them."""
    task = {"basename": basename, "doc": doc, "actions": [(act, [spec])],
            "file_dep": sorted({str(f) for f in file_dep}), "targets": [str(t) for t in targets],
            "uptodate": [False] if always else [config_changed(key(spec, act, tools))], "clean": True}
    if name is not None:
        task["name"] = name
    if verbosity is not None:
        task["verbosity"] = verbosity
    if owns:
        task["meta"] = {"owns": [str(d) for d in owns]}
    return task
