"""export: LeRobot SmolVLA (checkpoint, hub repo or random weights) -> three stage ONNX models."""

from __future__ import annotations

import logging

from doit.exceptions import TaskFailed

from ..toolchains.fingerprint import export_fingerprint
from .keys import code_digest, uptodate

FAMILY = "export"
log = logging.getLogger("smolvla_build.export")


def run_export(out_dir: str, preset: str, weights: str, seed: int, path, repo_id, revision, models: list,
               tokenizer=None):
    from pathlib import Path
    try:
        from ..export.checkpoint import CheckpointError
        from ..export.onnx_export import export_all
    except ImportError as exc:
        return TaskFailed(f"export needs the `export` extra (torch, transformers): pip install -e '.[export]' ({exc})")
    try:
        info = export_all(Path(out_dir), preset, weights, seed, path, repo_id, revision, stages=models,
                          tokenizer=tokenizer)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        return TaskFailed(str(exc))
    log.info("export: %s preset, %s weights, %.1f s", preset, weights, info["seconds"])
    return True


def enabled(pipe, toolchain) -> bool:
    return pipe.source["weights"] != "onnx"   # ONNX sources skip the export; preprocess checks their I/O


def gen_tasks(pipe, layout, toolchain):
    src = pipe.source
    file_dep = []
    if src["weights"] == "checkpoint":
        ckpt = pipe.resolve(src["path"])
        file_dep = [str(p) for p in sorted(ckpt.glob("*.json")) + sorted(ckpt.glob("*.safetensors"))
                    + sorted(ckpt.glob("tokenizer/*.json"))]
    if src.get("tokenizer"):
        tok = pipe.resolve(src["tokenizer"])
        file_dep += [str(p) for p in ([tok] if tok.is_file() else sorted(tok.glob("*.json")))]
    kw = {
        "preset": src["preset"], "weights": src["weights"], "seed": src["seed"] if src["weights"] == "random" else None,
        "path": str(pipe.resolve(src["path"])) if "path" in src else None,
        "repo_id": src.get("repo_id"), "revision": src.get("revision"), "models": pipe.models,
        "tokenizer": str(pipe.resolve(src["tokenizer"])) if src.get("tokenizer") else None,
        "tools": export_fingerprint(), "code": code_digest("export"),
    }
    yield {
        "basename": FAMILY,
        "doc": f"export the {src['preset']} SmolVLA ({src['weights']} weights) to ONNX",
        "actions": [(run_export, [], {"out_dir": str(layout.export_dir), "preset": kw["preset"], "weights": kw["weights"],
                                      "seed": src["seed"], "path": kw["path"], "repo_id": kw["repo_id"],
                                      "revision": kw["revision"], "models": pipe.models,
                                      "tokenizer": kw["tokenizer"]})],
        "file_dep": file_dep,
        "targets": [str(layout.source_onnx(m)) for m in pipe.models] + [str(p) for p in layout.export_side_files()],
        "uptodate": uptodate(kw),
        "clean": True,
    }
