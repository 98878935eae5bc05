"""report: artifacts/report.md and report.json over every model x precision (smolvla_build/report.py)."""

from __future__ import annotations

from .keys import action, uptodate

FAMILY = "report"
REPORT = action("report:write_report")


def gen_tasks(pipe, layout, toolchain):
    models, precisions = pipe.models, list(pipe.precisions)
    contexts = {m: {p: str(layout.context_info(m, p)) for p in precisions} for m in models}
    validations = {m: {p: str(layout.validation(m, p)) for p in precisions} for m in models}
    src = pipe.source
    meta = {"pipeline": str(pipe.path), "preset": src["preset"], "weights": src["weights"], "toolchain": toolchain,
            "soc": dict(pipe.soc)}
    wanted = pipe.requested_precisions()
    calibrations = {p: str(layout.calibration_info(pipe.precisions[p].calibration_samples))
                    for p in pipe.quantized_precisions()}
    chart = str(layout.report_chart)
    export_info = None if src["weights"] == "onnx" else str(layout.export_dir / "export_info.json")
    kw = {"export_info": export_info, "models": models, "precisions": precisions, "contexts": contexts, "validations": validations,
          "md": str(layout.report_md), "js": str(layout.report_json), "wanted": wanted, "meta": meta,
          "calibrations": calibrations, "chart": chart, "code": REPORT.code()}
    yield {
        "basename": FAMILY,
        "doc": "write artifacts/report.md and report.json (sizes, build times, validation, fallbacks)",
        "actions": [(REPORT, [kw])],
        "file_dep": [f for m in models for p in precisions for f in (contexts[m][p], validations[m][p])]
                    + sorted(set(calibrations.values())) + ([export_info] if export_info else []),
        "targets": [str(layout.report_md), str(layout.report_json), chart],
        "uptodate": uptodate(kw),
        "clean": True,
    }
