"""Up-to-date keys: one config_changed per task over everything its output depends on."""

from __future__ import annotations

from pathlib import Path

from doit.tools import config_changed

from ..fsutil import tree_digest

PACKAGE = Path(__file__).resolve().parents[1]
RUNTIME = "../smolvla_runtime"      # the runtime package beside this one (code_digest paths are relative)


def code_digest(*subpackages: str) -> str:
    """Digest of the package code a stage runs (a change rebuilds what that code made)."""
    return tree_digest(*(PACKAGE / s for s in subpackages))


def uptodate(kw: dict) -> list:
    # exactly one config_changed per task: doit stores its digest under one fixed key per task
    return [config_changed(kw)]
