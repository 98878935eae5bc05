"""export: LeRobot SmolVLA (checkpoint, hub repo or random weights) -> three stage ONNX models."""

from __future__ import annotations

from ..export.export_task import ExportSpec, files_read
from ..toolchains.fingerprint import export_fingerprint
from .keys import action, declare

FAMILY = "export"
EXPORT = action("export.export_task:export_task")


def enabled(build) -> bool:
    return build.pipe.source["weights"] != "onnx"   # ONNX sources skip the export; preprocess checks their I/O


def gen_tasks(build):
    pipe, layout, src = build.pipe, build.layout, build.pipe.source
    spec = ExportSpec(out_dir=layout.export_dir, preset=src["preset"], weights=src["weights"],
                      seed=src["seed"] if src["weights"] == "random" else 0,
                      path=pipe.resolve(src["path"]) if "path" in src else None,
                      repo_id=src.get("repo_id"), revision=src.get("revision"), models=tuple(pipe.models),
                      tokenizer=pipe.resolve(src["tokenizer"]) if src.get("tokenizer") else None,
                      vision_position_ids=src.get("vision_position_ids"))
    yield declare(FAMILY, EXPORT, spec, doc=f"export the {src['preset']} SmolVLA ({src['weights']} weights) to ONNX",
                  file_dep=files_read(spec), targets=[layout.source_onnx(m) for m in pipe.models] + layout.export_side_files(),
                  tools=export_fingerprint())
