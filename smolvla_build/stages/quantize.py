"""quantize: preprocessed fp32 model -> calibrated QDQ model per integer precision (ort-qnn).

The context task then compiles the QDQ model like any other (CPU fallback disabled); the qairt
chain quantizes inside its converter instead (stages/qairt.py)."""

from __future__ import annotations

import logging

from .keys import code_digest, uptodate

FAMILY = "quantize"
log = logging.getLogger("smolvla_build.quantize")


def run_quantize(model_name: str, precision_name: str, src: str, calibration: str, out: str, info_path: str,
                 quantization: dict, calibration_info: str):
    import json
    import time

    from ..fsutil import write_json
    from ..progress import heartbeat
    from ..toolchains.ort_qnn import quantize_qdq
    from ..toolchains.rss import peak_rss_mb

    q = quantization
    log.info("quantize %s-%s: W%dA%d%s, calibrated on %s ...", model_name, precision_name, q["weights"],
             q["activations"], " per channel" if q["per_channel"] else "", calibration)
    t0 = time.time()
    with heartbeat(f"quantize {model_name}-{precision_name}", log):
        info = quantize_qdq(src, out, calibration, quantization)
    cal = json.loads(open(calibration_info).read())
    info.update(model=model_name, precision=precision_name, seconds=round(time.time() - t0, 3), peak_rss_mb=peak_rss_mb(),
                calibration_seconds=cal["seconds"], calibration_peak_rss_mb=cal["peak_rss_mb"])
    write_json(info_path, info)
    log.info("quantize %s-%s: %.1f s, QDQ model %.1f MB", model_name, precision_name, info["seconds"],
             info["qdq_bytes"] / 1e6)
    return True


def enabled(pipe, toolchain) -> bool:
    return toolchain == "ort-qnn" and bool(pipe.quantized_precisions())


def gen_tasks(pipe, layout, toolchain):
    from ..toolchains.fingerprint import package_version
    code = code_digest("toolchains/ort_qnn.py", "calibration.py", "stages/quantize.py")
    for m in pipe.models:
        for pname in pipe.quantized_precisions():
            q = pipe.precisions[pname]["quantization"]
            n = q["calibration"]["samples"]
            kw = {"quantization": q, "code": code, "onnxruntime": package_version("onnxruntime")}
            yield {
                "basename": FAMILY,
                "name": f"{m}-{pname}",
                "doc": f"QDQ model of {m} in {pname} (onnxruntime QNN quantizer, {n} calibration samples)",
                "actions": [(run_quantize, [], {
                    "model_name": m, "precision_name": pname, "src": str(layout.preprocessed(m)),
                    "calibration": str(layout.calibration_set(n, m)), "calibration_info": str(layout.calibration_info(n)),
                    "out": str(layout.quantized(m, pname)), "info_path": str(layout.quantized_info(m, pname)),
                    "quantization": q})],
                "file_dep": [str(layout.preprocessed(m)), str(layout.calibration_set(n, m)), str(layout.calibration_info(n))],
                "targets": [str(layout.quantized(m, pname)), str(layout.quantized_info(m, pname))],
                "uptodate": uptodate(kw),
                "clean": True,
            }
