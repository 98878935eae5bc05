"""quantize: preprocessed fp32 model -> calibrated QDQ model per integer precision (ort-qnn).

The context task then compiles the QDQ model like any other (CPU fallback disabled); the qairt
chain quantizes inside its converter instead (stages/qairt.py)."""

from __future__ import annotations

from .keys import action, uptodate

FAMILY = "quantize"
QUANTIZE = action("toolchains.ort_qnn:quantize_task")


def enabled(pipe, toolchain) -> bool:
    return toolchain == "ort-qnn" and bool(pipe.quantized_precisions())


def gen_tasks(pipe, layout, toolchain):
    from ..toolchains.fingerprint import package_version
    code = QUANTIZE.code()
    for m in pipe.models:
        for pname in pipe.quantized_precisions():
            q, n = pipe.precisions[pname].quantization, pipe.precisions[pname].calibration_samples
            kw = {"model_name": m, "precision_name": pname, "src": str(layout.preprocessed(m)),
                  "calibration": str(layout.calibration_set(n, m)), "calibration_info": str(layout.calibration_info(n)),
                  "out": str(layout.quantized(m, pname)), "info_path": str(layout.quantized_info(m, pname)),
                  "quantization": q, "code": code, "onnxruntime": package_version("onnxruntime")}
            yield {
                "basename": FAMILY,
                "name": f"{m}-{pname}",
                "doc": f"QDQ model of {m} in {pname} (onnxruntime QNN quantizer, {n} calibration samples)",
                "actions": [(QUANTIZE, [kw])],
                "file_dep": [str(layout.preprocessed(m)), str(layout.calibration_set(n, m)), str(layout.calibration_info(n))],
                "targets": [str(layout.quantized(m, pname)), str(layout.quantized_info(m, pname))],
                "uptodate": uptodate(kw),
                "clean": True,
            }
