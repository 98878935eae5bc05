"""The `export` task's action: a LeRobot SmolVLA (checkpoint, hub repo or random weights) to the
three stage ONNX models and the runtime's side files. Imports nothing heavy until it runs, so task
generation stays light; torch and transformers come with the `export` extra."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("smolvla_build.export")


def export_task(kw: dict):
    """kw: out_dir, preset, weights, seed, path, repo_id, revision, models, tokenizer, vision_position_ids."""
    from doit.exceptions import TaskFailed
    try:
        from .checkpoint import CheckpointError
        from .onnx_export import export_all
    except ImportError as exc:
        return TaskFailed(f"export needs the `export` extra (torch, transformers): pip install -e '.[export]' ({exc})")
    try:
        info = export_all(Path(kw["out_dir"]), kw["preset"], kw["weights"], kw["seed"], kw["path"], kw["repo_id"],
                          kw["revision"], stages=kw["models"], tokenizer=kw["tokenizer"],
                          vision_position_ids=kw["vision_position_ids"])
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        return TaskFailed(str(exc))
    log.info("export: %s preset, %s weights, %.1f s", kw["preset"], kw["weights"], info["seconds"])
    return True
