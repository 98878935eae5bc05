"""context: preprocessed ONNX -> real HTP context binary per precision (ort-qnn toolchain)."""

from __future__ import annotations

from ..toolchains.fingerprint import ort_qnn_fingerprint
from ..toolchains.ort_qnn import ContextSpec
from .keys import action, declare

FAMILY = "context"
CONTEXT = action("toolchains.ort_qnn:context_task")


def enabled(build) -> bool:
    return build.toolchain == "ort-qnn"   # the qairt chain has its own context tasks (stages/qairt.py)


def gen_tasks(build):
    pipe, layout = build.pipe, build.layout
    for m in pipe.models:
        for pname, precision in pipe.precisions.items():
            # an integer precision compiles its calibrated QDQ model (stages/quantize.py)
            quantized = precision.quantized
            spec = ContextSpec(model=m, precision=precision, soc=pipe.soc,
                               src=layout.quantized(m, pname) if quantized else layout.preprocessed(m),
                               quantized_info=layout.quantized_info(m, pname) if quantized else None,
                               out=layout.ort_qnn_context(m, pname), info=layout.ort_qnn_context_info(m, pname))
            yield declare(FAMILY, CONTEXT, spec, name=f"{m}-{pname}",
                          file_dep=[spec.src] + ([spec.quantized_info] if quantized else []),
                          targets=[spec.out, layout.ort_qnn_context_bin(m, pname), spec.info],
                          tools=ort_qnn_fingerprint(), doc=f"HTP context binary of {m} in {pname} (ort-qnn)")
