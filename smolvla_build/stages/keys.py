"""Up-to-date keys (one config_changed per task over everything its output depends on) and the
actions that read them."""

from __future__ import annotations

from pathlib import Path

from doit.tools import config_changed

from ..fsutil import tree_digest

PACKAGE = Path(__file__).resolve().parents[1]
RUNTIME = "../smolvla_runtime"      # the runtime package beside this one (code_digest paths are relative)


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


def action(target: str) -> Action:
    """`action("passes.task:preprocess_task")`: the function, relative to the smolvla_build package."""
    module, function = target.split(":")
    return Action(f"smolvla_build.{module}", function)


def uptodate(kw: dict) -> list:
    # exactly one config_changed per task: doit stores its digest under one fixed key per task
    return [config_changed(kw)]
