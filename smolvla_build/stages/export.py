"""export: LeRobot SmolVLA (checkpoint, hub repo or random weights) -> three stage ONNX models."""

from __future__ import annotations

from ..toolchains.fingerprint import export_fingerprint
from .keys import action, uptodate

FAMILY = "export"
EXPORT = action("export.task:export_task")


def enabled(pipe, toolchain) -> bool:
    return pipe.source["weights"] != "onnx"   # ONNX sources skip the export; preprocess checks their I/O


def gen_tasks(pipe, layout, toolchain):
    src = pipe.source
    file_dep = []
    if src["weights"] == "checkpoint":
        from ..export.conventions import evidence_files
        from ..export.tokenizer import local_vlm_folder
        ckpt = pipe.resolve(src["path"])
        file_dep = [str(p) for p in sorted(ckpt.glob("*.json")) + sorted(ckpt.glob("*.safetensors"))
                    + sorted(ckpt.glob("tokenizer/*.json"))]
        # what the export reads of the VLM's folder: its tokenizer, and the transformers version
        vlm = local_vlm_folder(ckpt)
        file_dep += [str(p) for p in sorted(vlm.glob("tokenizer*.json"))] if vlm else []
        file_dep += [str(p) for p in evidence_files(ckpt, vlm) if p.is_file() and str(p) not in file_dep]
    if src.get("tokenizer"):
        tok = pipe.resolve(src["tokenizer"])
        file_dep += [str(p) for p in ([tok] if tok.is_file() else sorted(tok.glob("*.json")))]
    kw = {
        "out_dir": str(layout.export_dir),
        "preset": src["preset"], "weights": src["weights"], "seed": src["seed"] if src["weights"] == "random" else 0,
        "path": str(pipe.resolve(src["path"])) if "path" in src else None,
        "repo_id": src.get("repo_id"), "revision": src.get("revision"), "models": pipe.models,
        "tokenizer": str(pipe.resolve(src["tokenizer"])) if src.get("tokenizer") else None,
        "vision_position_ids": src.get("vision_position_ids"),     # None: from the checkpoint's files
        "tools": export_fingerprint(), "code": EXPORT.code(),
    }
    yield {
        "basename": FAMILY,
        "doc": f"export the {src['preset']} SmolVLA ({src['weights']} weights) to ONNX",
        "actions": [(EXPORT, [kw])],
        "file_dep": file_dep,
        "targets": [str(layout.source_onnx(m)) for m in pipe.models] + [str(p) for p in layout.export_side_files()],
        "uptodate": uptodate(kw),
        "clean": True,
    }
