"""reference: the reference runtime's CPU copy of each preprocessed model (fused CPU ops, checked)."""

from __future__ import annotations

from ..cpu_passes.reference_task import ReferenceSpec
from ..toolchains.fingerprint import passes_fingerprint
from .keys import action, declare

FAMILY = "reference"
REFERENCE = action("cpu_passes.reference_task:reference_task")


def gen_tasks(build):
    pipe, layout = build.pipe, build.layout
    options = pipe.section("reference")
    for m in pipe.models:
        spec = ReferenceSpec(model=m, src=layout.preprocessed(m), out=layout.reference_model(m),
                             info=layout.reference_info(m), cpu_fusions=options["cpu_fusions"],
                             max_relative_error=options["max_relative_error"], seed=pipe.section("preprocess")["seed"])
        yield declare(FAMILY, REFERENCE, spec, name=m, file_dep=[spec.src], targets=[spec.out, spec.info],
                      tools=passes_fingerprint(),
                      doc=f"the reference runtime's CPU copy of {m}: onnxruntime fused ops, checked against the unfused model")
