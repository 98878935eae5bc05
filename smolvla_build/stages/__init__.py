"""The doit task declarations, one module per task family (Nikola's shape).

Each family module's `gen_tasks(build)` yields plain doit task dicts made by `keys.declare`: one
action (a library function, named by `keys.action`) that receives one frozen spec, its file deps
and targets, and one up-to-date key over that spec, the code the action runs and the tools'
versions. Stage modules only declare: the pipeline is read here once (`Build`), the paths come from
the layout, and whatever needs looking up on the host (the SDK, the compilers) is looked up by a
library function, once. `dodo.py` only calls `load_tasks`.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import sys
from pathlib import Path

from ..config import ConfigError, Pipeline, load_pipeline
from ..layout import Layout
from ..toolchains import ToolchainError, select_toolchain
from . import (bundle, calibrate, context, divergence, eval, export, infer, measure, preprocess, proxy, qairt, quantize,
               reference, report, validate)

FAMILIES = [export, preprocess, reference, calibrate, quantize, context, qairt, measure, validate, proxy, report, infer,
            eval, divergence, bundle]


@dataclasses.dataclass(frozen=True)
class Build:
    """What every family declares its tasks for: the pipeline, where its artifacts live, the
    toolchain (`auto` resolved) and, for the qairt toolchain, the SDK (discovered once)."""
    pipe: Pipeline
    layout: Layout
    toolchain: str
    sdk: object | None = None            # toolchains.qairt.sdk.Sdk


# what the machine, not the project, refuses: a read-only folder, a full disk
USER_OS_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


class Guarded:
    """A task action whose user-facing errors (an unreadable model file, a bad setting) fail the task
    with their one-line message instead of a traceback, and whose success is written in the artifacts
    folder's ledger of what each task made (`made`: the task's name and its paths; smolvla_build/
    leftovers.py). A class, so `doit -n` can pickle it."""

    def __init__(self, fn, ledger: Path | None = None, made: dict | None = None):
        self.fn, self.ledger, self.made = fn, ledger, made
        self.__name__ = getattr(fn, "__name__", "action")

    def __call__(self, *args, **kwargs):
        from doit.exceptions import TaskFailed

        from smolvla_runtime.files import ModelFileError
        try:
            result = self.fn(*args, **kwargs)
            if self.ledger is not None and result is not False and not isinstance(result, TaskFailed):
                from ..ledger import record
                record(self.ledger, self.made)
            return result
        except (ModelFileError, ConfigError, ToolchainError) as exc:
            return TaskFailed(str(exc))
        except ModuleNotFoundError as exc:         # an extra this environment was installed without
            from ..extras import missing_module_line
            line = missing_module_line(exc.name)
            if line is None:
                raise
            return TaskFailed(line)
        except OSError as exc:
            if exc.errno not in USER_OS_ERRORS:
                raise
            return TaskFailed(f"{exc.filename or 'a file of this task'}: {exc.strerror} (the task is not recorded as done)")


def made_by(task: dict) -> dict:
    """What a declared task makes, as the ledger records it: its name and its targets and the folders
    it fills (`keys.declare(owns=...)`)."""
    name = f"{task['basename']}:{task['name']}" if "name" in task else task["basename"]
    return {"task": name, "paths": task.get("targets", []) + (task.get("meta") or {}).get("owns", [])}


def guarded(task: dict, ledger: Path | None = None) -> dict:
    made = made_by(task)
    task["actions"] = [(Guarded(a[0], ledger, made),) + tuple(a[1:]) if isinstance(a, tuple) and callable(a[0]) else a
                       for a in task.get("actions", [])]
    return task


def _family_creator(module, build: Build):
    def create():
        for task in module.gen_tasks(build):
            yield guarded(task, build.layout.made_ledger)
    create.__doc__ = (module.__doc__ or "").strip().splitlines()[0]
    create.__name__ = f"task_{module.FAMILY}"
    return create


def load_build(pipeline_path: str | Path) -> Build:
    """The pipeline, its toolchain and, for qairt, its SDK (layout and version policy checked)."""
    pipe = load_pipeline(pipeline_path)
    toolchain = select_toolchain(pipe)
    sdk = None
    if toolchain == "qairt":
        from ..toolchains.qairt.sdk import discover
        sdk = discover(pipe)
    return Build(pipe, pipe.layout(toolchain), toolchain, sdk)


# the `name=value` arguments `doit` accepts (doit takes any such argument as a variable, and reads
# only those dodo.py asks for: a misspelt one would silently build the default pipeline)
VARIABLES = {"pipeline": "the pipeline file (default: pipeline.yaml)"}


def refuse_unknown_variables(argv: list[str]) -> None:
    """End the process with one line if `argv` (doit's arguments) sets a variable not in VARIABLES;
    doit's own rule: an argument not starting with '-' that holds '='."""
    unknown = [a.split("=", 1)[0] for a in argv if not a.startswith("-") and "=" in a
               and a.split("=", 1)[0] not in VARIABLES]
    if unknown:
        known = ", ".join(f"{k}= ({v})" for k, v in VARIABLES.items())
        print(f"error: unknown doit variable {', '.join(repr(u + '=') for u in unknown)}: the known one is {known}",
              file=sys.stderr)
        raise SystemExit(2)


def load_tasks(pipeline_path: str | Path, lock: bool = False) -> tuple[dict, dict]:
    """(DOIT_CONFIG, {task_<family>: creator}) for a pipeline file. A bad pipeline file or an
    unusable toolchain ends the process with one line on stderr (no traceback). `lock` (doit's
    dodo.py): this process builds in the artifacts folder alone (smolvla_build/lock.py)."""
    build = _build_or_exit(pipeline_path)
    root = build.layout.root
    from ..lock import READ_ONLY, Busy, hold
    try:
        root.mkdir(parents=True, exist_ok=True)
        if lock:
            hold(root, sys.argv[1:])
    except Busy as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:                 # a read-only or full disk: the build could write nothing
        print(f"error: the artifacts folder {root}: {exc.strerror or exc}: doit writes every output there "
              f"(`artifacts:` in {pipeline_path}, relative to that file)", file=sys.stderr)
        raise SystemExit(2) from None
    if lock and not READ_ONLY & set(sys.argv[1:]):
        from ..interrupt import stop_on_interrupt
        stop_on_interrupt()
    from .keys import use_cache
    use_cache(root / ".doit.code-digests.json")
    families = _families(build)
    config = {
        "backend": "sqlite3",                      # shared safely by `doit -n 2` workers, unlike dbm
        "dep_file": str(root / ".doit.sqlite3"),
        "verbosity": 2,
        "default_tasks": [b for m in families if getattr(m, "DEFAULT", True) for b in getattr(m, "BASENAMES", [m.FAMILY])],
    }
    creators = {f"task_{m.FAMILY}": _family_creator(m, build) for m in families}
    return config, creators


def _build_or_exit(pipeline_path: str | Path) -> Build:
    """load_build for a front end: a bad pipeline file or an unusable toolchain ends the process with
    one line on stderr (no traceback)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return load_build(pipeline_path)
    except (ConfigError, ToolchainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _families(build: Build) -> list:
    return [m for m in FAMILIES if getattr(m, "enabled", lambda _b: True)(build)]


def declared(pipeline_path: str | Path) -> tuple[Build, list[dict]]:
    """(the build, what each of its tasks makes: `made_by`) of a pipeline file, read without running
    doit and without taking the build lock (`prune` lists with it)."""
    build = _build_or_exit(pipeline_path)
    return build, [made_by(task) for m in _families(build) for task in m.gen_tasks(build)]
