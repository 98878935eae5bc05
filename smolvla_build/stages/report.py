"""report: report.md and report.json over every model x precision (smolvla_build/build_report.py)."""

from __future__ import annotations

from ..build_report import ReportSpec
from .keys import action, declare

FAMILY = "report"
REPORT = action("build_report:write_report")


def gen_tasks(build):
    pipe, layout = build.pipe, build.layout
    models, precisions, src, suite = pipe.models, list(pipe.precisions), pipe.source, pipe.calibration_suite()
    spec = ReportSpec(
        models=tuple(models), precisions=tuple(precisions),
        contexts={m: {p: layout.context_info(m, p) for p in precisions} for m in models},
        validations={m: {p: layout.validation(m, p) for p in precisions} for m in models},
        calibrations={p: layout.calibration_info(suite, pipe.precisions[p].calibration_samples)
                      for p in pipe.precisions.quantized()},
        wanted=pipe.requested_precisions(),
        computes_in={p: pipe.precisions[p].computes_in for p in precisions},
        meta={"pipeline": str(pipe.path), "preset": src["preset"], "weights": src["weights"],
              "toolchain": build.toolchain, "soc": pipe.soc.to_dict()},
        export_info=None if layout.onnx_source is not None else layout.export_info,
        md=layout.report_md, js=layout.report_json, chart=layout.report_chart)
    deps = [f for m in models for p in precisions for f in (spec.contexts[m][p], spec.validations[m][p])]
    deps += list(spec.calibrations.values()) + ([spec.export_info] if spec.export_info else [])
    yield declare(FAMILY, REPORT, spec, file_dep=deps, targets=[spec.md, spec.js, spec.chart],
                  doc=f"write {layout.report_md} and report.json (sizes, build times, validation, fallbacks)")
