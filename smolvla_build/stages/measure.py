"""measure: each HTP context against the fp32 reference, per model x precision.

The slow part of validation (smolvla_build/validation/measure.py), keyed on nothing but what it
measures: not on the gates, the fallback policy or the other precisions."""

from __future__ import annotations

from smolvla_runtime.model import LLM_BACKBONE, VISION_ENCODER, upstream

from ..toolchains.fingerprint import ort_qnn_fingerprint, passes_fingerprint
from ..validation.measure import MeasureSpec, UpstreamReference
from .keys import action, declare

FAMILY = "measure"
MEASURE = action("validation.measure:measure_task")


def gen_tasks(build):
    pipe, layout = build.pipe, build.layout
    feeders = {m: upstream(pipe.preset, m) for m in pipe.models}     # the stages whose references make m's inputs

    def reference(m):
        return UpstreamReference(layout.preprocessed(m), layout.io_sidecar(m))
    for m in pipe.models:
        needs_llm = LLM_BACKBONE in feeders[m] + [m]
        llm = reference(LLM_BACKBONE) if LLM_BACKBONE in feeders[m] else None
        vision = reference(VISION_ENCODER) if needs_llm and VISION_ENCODER in pipe.models else None
        for pname, precision in pipe.precisions.items():
            q = layout.qairt(m, pname)
            spec = MeasureSpec(model=m, precision=precision, soc=pipe.soc, performance=pipe.htp_performance,
                               preset=pipe.source["preset"],
                               seed=pipe.section("validation")["seed"], reference=layout.preprocessed(m),
                               sidecar=layout.io_sidecar(m), context=layout.context(m, pname),
                               qairt_io={"binary_info": q.binary_info, "net_json": q.net_json}
                               if build.toolchain == "qairt" else None,
                               embed_table=layout.embed_table if needs_llm else None, llm=llm, vision=vision,
                               out=layout.measurement(m, pname), arrays=layout.validation_arrays(m, pname))
            deps = [spec.reference, *layout.stage_cpu_files(m), *layout.context_files(m, pname)]
            deps += [layout.embed_table] if needs_llm else []
            deps += [f for name, r in ((LLM_BACKBONE, llm), (VISION_ENCODER, vision)) if r
                     for f in (r.model, *layout.stage_cpu_files(name))]
            yield declare(FAMILY, MEASURE, spec, name=f"{m}-{pname}", file_dep=deps, targets=[spec.out, spec.arrays],
                          tools={**ort_qnn_fingerprint(), **passes_fingerprint()},
                          doc=f"measure the {pname} HTP context of {m} ({build.toolchain}) against the fp32 reference")
