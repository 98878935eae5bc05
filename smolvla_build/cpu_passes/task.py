"""The `reference` task's action: the reference runtime's CPU copy of a preprocessed model
(fused onnxruntime ops where they are checked to match, else the model itself)."""

from __future__ import annotations

import logging

log = logging.getLogger("smolvla_build.reference")


def reference_task(kw: dict):
    """kw: model_name, src, out, info, options (cpu_fusions, max_relative_error, seed)."""
    import time
    from pathlib import Path

    from .. import onnx_io
    from ..fsutil import link_or_copy, write_json
    from ..progress import heartbeat
    from . import CpuCopy, cpu_copy
    model_name, src, out, info, options = (kw[k] for k in ("model_name", "src", "out", "info", "options"))
    t0 = time.perf_counter()
    if options["cpu_fusions"]:
        with heartbeat(f"reference {model_name}", log):
            result = cpu_copy(onnx_io.load(src), options["max_relative_error"], options["seed"])
    else:                                                # nothing to try: the copy is the model itself
        result = CpuCopy(None, {"fusions": {}, "max_relative_error": options["max_relative_error"], "uses": "unfused",
                                "reason": "reference.cpu_fusions is false"})
    report = dict(result.report, model=model_name, source=src, seconds=round(time.perf_counter() - t0, 2))
    Path(out + ".data").unlink(missing_ok=True)          # a previous copy's external weights
    if result.model is not None:
        onnx_io.save(result.model, out)
    else:
        link_or_copy(src, out)
        if Path(src + ".data").exists():
            link_or_copy(src + ".data", out + ".data")
    write_json(info, report)
    if report["uses"] == "fused":
        errs, secs = report["relative_error"], report["seconds_per_call"]
        log.info("reference %s: fused %s; max relative error %.1e; %.3f -> %.3f s per call", model_name,
                 ", ".join(f"{n} {op}" for op, n in report["fusions"].items() if n), max(errs.values()),
                 secs["unfused"], secs["fused"])
    elif report["reason"].startswith("fused copy"):
        log.warning("reference %s: %s; the reference runtime runs the unfused model", model_name, report["reason"])
    else:
        log.info("reference %s: %s; the reference runtime runs the preprocessed model", model_name, report["reason"])
    return True
