"""reference: the reference runtime's CPU copy of each preprocessed model (fused CPU ops, checked)."""

from __future__ import annotations

from ..toolchains.fingerprint import passes_fingerprint
from .keys import action, uptodate

FAMILY = "reference"
REFERENCE = action("cpu_passes.task:reference_task")


def gen_tasks(pipe, layout, toolchain):
    options = dict(pipe.section("reference"), seed=pipe.section("preprocess")["seed"])
    common = {"options": options, "tools": passes_fingerprint(),
              "code": REFERENCE.code()}
    for m in pipe.models:
        kw = dict(common, model_name=m, src=str(layout.preprocessed(m)), out=str(layout.reference_model(m)),
                  info=str(layout.reference_info(m)))
        yield {
            "basename": FAMILY,
            "name": m,
            "doc": f"the reference runtime's CPU copy of {m}: onnxruntime fused ops, checked against the unfused model",
            "actions": [(REFERENCE, [kw])],
            "file_dep": [str(layout.preprocessed(m))],
            "targets": [str(layout.reference_model(m)), str(layout.reference_info(m))],
            "uptodate": uptodate(kw),
            "clean": True,
        }
