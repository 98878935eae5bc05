"""quantize: preprocessed fp32 model -> calibrated QDQ model per integer precision (ort-qnn).

The context task then compiles the QDQ model like any other (CPU fallback disabled); the qairt
chain quantizes inside its converter instead (stages/qairt.py)."""

from __future__ import annotations

from ..toolchains.fingerprint import package_version
from ..toolchains.ort_qnn import QuantizeSpec
from .keys import action, declare

FAMILY = "quantize"
QUANTIZE = action("toolchains.ort_qnn:quantize_task")


def enabled(build) -> bool:
    return build.toolchain == "ort-qnn" and bool(build.pipe.precisions.quantized())


def gen_tasks(build):
    pipe, layout, suite = build.pipe, build.layout, build.pipe.calibration_suite()
    for m in pipe.models:
        for pname in pipe.precisions.quantized():
            precision = pipe.precisions[pname]
            n = precision.calibration_samples
            spec = QuantizeSpec(model=m, precision=pname, quantization=precision.quantization, src=layout.preprocessed(m),
                                calibration=layout.calibration_set(suite, n, m),
                                calibration_info=layout.calibration_info(suite, n),
                                out=layout.quantized(m, pname), info=layout.quantized_info(m, pname))
            yield declare(FAMILY, QUANTIZE, spec, name=f"{m}-{pname}",
                          file_dep=[spec.src, spec.calibration, spec.calibration_info], targets=[spec.out, spec.info],
                          tools={"onnxruntime": package_version("onnxruntime")},
                          doc=f"QDQ model of {m} in {pname} (onnxruntime QNN quantizer, {n} calibration samples)")
