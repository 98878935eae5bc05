"""The `export` task: a LeRobot SmolVLA (checkpoint, hub repo or random weights) to the three stage
ONNX models and the runtime's side files. Light at import: torch and transformers (the `export`
extra) load when the action runs."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

log = logging.getLogger("smolvla_build.export")


@dataclasses.dataclass(frozen=True)
class ExportSpec:
    out_dir: Path
    preset: str
    weights: str                        # random | checkpoint | hub
    seed: int                           # random weights only (0 otherwise)
    path: Path | None                   # a checkpoint folder
    repo_id: str | None
    revision: str | None
    models: tuple[str, ...]
    tokenizer: Path | None              # source.tokenizer
    vision_position_ids: str | None     # None: from the checkpoint's files (docs/lerobot-versions.md)


def files_read(spec: ExportSpec) -> list[Path]:
    """The files of the checkpoint (and its VLM folder and tokenizer) the export reads: its file deps."""
    from .conventions import evidence_files
    from .tokenizer import local_vlm_folder
    found: list[Path] = []
    if spec.weights == "checkpoint":
        ckpt = Path(spec.path)
        found += sorted(ckpt.glob("*.json")) + sorted(ckpt.glob("*.safetensors")) + sorted(ckpt.glob("tokenizer/*.json"))
        # what the export reads of the VLM's folder: its tokenizer, and the transformers version
        vlm = local_vlm_folder(ckpt)
        found += sorted(vlm.glob("tokenizer*.json")) if vlm else []
        found += [p for p in evidence_files(ckpt, vlm) if p.is_file() and p not in found]
    if spec.tokenizer is not None:
        tok = Path(spec.tokenizer)
        found += [tok] if tok.is_file() else sorted(tok.glob("*.json"))
    return found


def export_task(spec: ExportSpec):
    from doit.exceptions import TaskFailed
    try:
        from .checkpoint import CheckpointError
        from .onnx_export import export_all
    except ImportError as exc:
        return TaskFailed(f"export needs the `export` extra (torch, transformers): pip install -e '.[export]' ({exc})")
    try:
        info = export_all(Path(spec.out_dir), spec.preset, spec.weights, spec.seed,
                          str(spec.path) if spec.path else None, spec.repo_id, spec.revision,
                          stages=list(spec.models), tokenizer=str(spec.tokenizer) if spec.tokenizer else None,
                          vision_position_ids=spec.vision_position_ids)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        return TaskFailed(str(exc))
    log.info("export: %s preset, %s weights, %.1f s", spec.preset, spec.weights, info["seconds"])
    return True
