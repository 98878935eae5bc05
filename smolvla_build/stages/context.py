"""context: preprocessed ONNX -> real HTP context binary per precision (ort-qnn toolchain)."""

from __future__ import annotations

from ..toolchains.fingerprint import ort_qnn_fingerprint
from .keys import action, uptodate

FAMILY = "context"
CONTEXT = action("toolchains.ort_qnn:context_task")


def enabled(pipe, toolchain) -> bool:
    return toolchain == "ort-qnn"   # the qairt chain has its own context tasks (stages/qairt.py)


def gen_tasks(pipe, layout, toolchain):
    fp = ort_qnn_fingerprint(pipe.soc)
    code = CONTEXT.code()
    for m in pipe.models:
        for pname, precision in pipe.precisions.items():
            # an integer precision compiles its calibrated QDQ model (stages/quantize.py)
            quantized = precision.quantized
            src = layout.quantized(m, pname) if quantized else layout.preprocessed(m)
            qinfo = str(layout.quantized_info(m, pname)) if quantized else None
            kw = {"model_name": m, "precision_name": pname, "src": str(src), "quantized_info": qinfo,
                  "out": str(layout.ort_qnn_context(m, pname)), "info_path": str(layout.ort_qnn_context_info(m, pname)),
                  "soc": dict(pipe.soc), "precision": precision.settings, "tools": fp, "code": code, "toolchain": toolchain}
            yield {
                "basename": FAMILY,
                "name": f"{m}-{pname}",
                "doc": f"HTP context binary of {m} in {pname} ({toolchain})",
                "actions": [(CONTEXT, [kw])],
                "file_dep": [str(src)] + ([qinfo] if qinfo else []),
                "targets": [str(layout.ort_qnn_context(m, pname)), str(layout.ort_qnn_context_bin(m, pname)),
                            str(layout.ort_qnn_context_info(m, pname))],
                "uptodate": uptodate(kw),
                "clean": True,
            }
