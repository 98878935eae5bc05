"""context: preprocessed ONNX -> real HTP context binary per precision (ort-qnn toolchain)."""

from __future__ import annotations

import logging

from ..toolchains.fingerprint import ort_qnn_fingerprint
from .keys import RUNTIME, code_digest, uptodate

FAMILY = "context"
log = logging.getLogger("smolvla_build.context")


def run_context(model_name: str, precision_name: str, src: str, out: str, info_path: str, soc: dict, precision: dict,
                quantized_info: str | None = None):
    import time
    from pathlib import Path

    from ..fsutil import write_json
    from ..toolchains.ort_qnn import build_context
    from ..toolchains.rss import peak_rss_mb

    t0 = time.time()
    log.info("context %s-%s: compiling for soc_model %s / v%s ...", model_name, precision_name,
             soc["soc_model"], soc["htp_arch"])
    from ..progress import heartbeat
    with heartbeat(f"context {model_name}-{precision_name}", log):
        info = build_context(Path(src), Path(out), soc, precision)
    info.update(model=model_name, precision=precision_name, seconds=round(time.time() - t0, 3),
                peak_rss_mb=peak_rss_mb(), toolchain="ort-qnn")
    if quantized_info:          # the integer precision's build = quantize + compile
        import json
        q = json.loads(Path(quantized_info).read_text())
        info.update(quantize_seconds=q["seconds"], calibration_seconds=q["calibration_seconds"],
                    peak_rss_mb=max(info["peak_rss_mb"], q["peak_rss_mb"]), seconds=round(info["seconds"] + q["seconds"], 3))
    write_json(info_path, info)
    log.info("context %s-%s: %.1f s, %.1f MB binary", model_name, precision_name, info["seconds"],
             info["context_bytes"] / 1e6)
    return True


def enabled(pipe, toolchain) -> bool:
    return toolchain == "ort-qnn"   # the qairt chain has its own context tasks (stages/qairt.py)


def gen_tasks(pipe, layout, toolchain):
    fp = ort_qnn_fingerprint(pipe.soc)
    code = code_digest("toolchains/ort_qnn.py", RUNTIME + "/htp.py")
    for m in pipe.models:
        for pname, precision in pipe.precisions.items():
            kw = {"precision": precision, "tools": fp, "code": code, "toolchain": toolchain}
            # an integer precision compiles its calibrated QDQ model (stages/quantize.py)
            quantized = "quantization" in precision
            src = layout.quantized(m, pname) if quantized else layout.preprocessed(m)
            qinfo = str(layout.quantized_info(m, pname)) if quantized else None
            yield {
                "basename": FAMILY,
                "name": f"{m}-{pname}",
                "doc": f"HTP context binary of {m} in {pname} ({toolchain})",
                "actions": [(run_context, [], {
                    "model_name": m, "precision_name": pname, "src": str(src), "quantized_info": qinfo,
                    "out": str(layout.ort_qnn_context(m, pname)), "info_path": str(layout.ort_qnn_context_info(m, pname)),
                    "soc": dict(pipe.soc), "precision": precision})],
                "file_dep": [str(src)] + ([qinfo] if qinfo else []),
                "targets": [str(layout.ort_qnn_context(m, pname)), str(layout.ort_qnn_context_bin(m, pname)),
                            str(layout.ort_qnn_context_info(m, pname))],
                "uptodate": uptodate(kw),
                "clean": True,
            }
