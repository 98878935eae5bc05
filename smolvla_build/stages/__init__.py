"""doit task generators, one module per task family (Nikola's shape).

Each module's `gen_tasks(pipe, layout)` yields plain doit task dicts; the family name is the doit
`basename`, every task has `file_dep`, `targets`, `clean: True` and one `config_changed` over a
dict `kw` holding exactly what its action reads plus the fingerprint of the tools it runs.
`dodo.py` only calls `load_tasks`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from ..config import ConfigError, load_pipeline
from ..toolchains import ToolchainError, select_toolchain
from . import (bundle, calibrate, context, divergence, eval, export, infer, preprocess, proxy, qairt, quantize, reference,
               report, validate)
from ..layout import Layout

FAMILIES = [export, preprocess, reference, calibrate, quantize, context, qairt, validate, proxy, report, infer, eval, divergence,
            bundle]


class Guarded:
    """A task action whose user-facing errors (an unreadable model file, a bad setting) fail the task
    with their one-line message instead of a traceback. A class, so `doit -n` can pickle it."""

    def __init__(self, fn):
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", "action")

    def __call__(self, *args, **kwargs):
        from doit.exceptions import TaskFailed

        from ..model_files import ModelFileError
        try:
            return self.fn(*args, **kwargs)
        except (ModelFileError, ConfigError, ToolchainError) as exc:
            return TaskFailed(str(exc))


def guarded(task: dict) -> dict:
    task["actions"] = [(Guarded(a[0]),) + tuple(a[1:]) if isinstance(a, tuple) and callable(a[0]) else a
                       for a in task.get("actions", [])]
    return task


def _family_creator(module, pipe, layout, toolchain):
    def create():
        for task in module.gen_tasks(pipe, layout, toolchain):
            yield guarded(task)
    create.__doc__ = (module.__doc__ or "").strip().splitlines()[0]
    create.__name__ = f"task_{module.FAMILY}"
    return create


def load_tasks(pipeline_path: str | Path, lock: bool = False) -> tuple[dict, dict]:
    """(DOIT_CONFIG, {task_<family>: creator}) for a pipeline file. A bad pipeline file or an
    unusable toolchain ends the process with one line on stderr (no traceback). `lock` (doit's
    dodo.py): this process builds in the artifacts folder alone (smolvla_build/lock.py)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        pipe = load_pipeline(pipeline_path)
        toolchain = select_toolchain(pipe)
        if toolchain == "qairt":
            from ..toolchains.qairt.sdk import discover
            discover(pipe)            # SDK layout and version policy: fail at once, in one line
    except (ConfigError, ToolchainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    layout = Layout(pipe, toolchain)
    layout.root.mkdir(parents=True, exist_ok=True)
    if lock:
        from ..lock import Busy, hold
        try:
            hold(layout.root, sys.argv[1:])
        except Busy as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    families = [m for m in FAMILIES if getattr(m, "enabled", lambda _p, _t: True)(pipe, toolchain)]
    config = {
        "backend": "sqlite3",                      # shared safely by `doit -n 2` workers, unlike dbm
        "dep_file": str(layout.root / ".doit.sqlite3"),
        "verbosity": 2,
        "default_tasks": [b for m in families if getattr(m, "DEFAULT", True) for b in getattr(m, "BASENAMES", [m.FAMILY])],
    }
    creators = {f"task_{m.FAMILY}": _family_creator(m, pipe, layout, toolchain) for m in families}
    return config, creators
