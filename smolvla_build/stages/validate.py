"""validate: each measurement against its precision's gates, and the decision: pass, fallback, warn, fail.

validation.on_saturation decides what a miss does (smolvla_build/validation/verdict.py); a cheap
step of its own, rerun alone when a gate, the policy or the fallback order changes."""

from __future__ import annotations

from ..validation.verdict import VerdictSpec
from .keys import action, declare

FAMILY = "validate"
VALIDATE = action("validation.verdict:validate_task")


def gen_tasks(build):
    pipe, layout = build.pipe, build.layout
    v = pipe.section("validation")
    targets = pipe.precisions.fallback_targets()
    for m in pipe.models:
        for pname in pipe.precisions:
            spec = VerdictSpec(model=m, precision=pname, measured=layout.measurement(m, pname), gates=pipe.gates(pname),
                               on_saturation=v["on_saturation"], on_fallback_miss=v["on_fallback_miss"],
                               fallback_to=pipe.precisions.fallback(pname), fallback_target=pname in targets,
                               out=layout.validation(m, pname))
            yield declare(FAMILY, VALIDATE, spec, name=f"{m}-{pname}", file_dep=[spec.measured], targets=[spec.out],
                          doc=f"judge {m} in {pname} against its gates (validation: in pipeline.yaml)")
