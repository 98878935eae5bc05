"""The `reference` task: the reference runtime's CPU copy of a preprocessed model (fused onnxruntime
ops where they are checked to match, else the model itself). Light at import."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

log = logging.getLogger("smolvla_build.reference")


@dataclasses.dataclass(frozen=True)
class ReferenceSpec:
    model: str
    src: Path                   # the preprocessed model
    out: Path                   # its CPU copy
    info: Path                  # what was fused, checked and timed (JSON)
    cpu_fusions: bool
    max_relative_error: float
    seed: int


def reference_task(spec: ReferenceSpec):
    import time

    from ..fsutil import link_or_copy, write_json
    from ..model_files import load_onnx, save_onnx
    from ..progress import heartbeat
    from .cpu_copy import CpuCopy, cpu_copy
    src, out = Path(spec.src), Path(spec.out)
    t0 = time.perf_counter()
    if spec.cpu_fusions:
        with heartbeat(f"reference {spec.model}", log):
            result = cpu_copy(load_onnx(src), spec.max_relative_error, spec.seed)
    else:                                                # nothing to try: the copy is the model itself
        result = CpuCopy(None, {"fusions": {}, "max_relative_error": spec.max_relative_error, "uses": "unfused",
                                "reason": "reference.cpu_fusions is false"})
    report = dict(result.report, model=spec.model, source=str(src), seconds=round(time.perf_counter() - t0, 2))
    out.with_name(out.name + ".data").unlink(missing_ok=True)          # a previous copy's external weights
    if result.model is not None:
        save_onnx(result.model, out)
    else:
        link_or_copy(src, out)
        if src.with_name(src.name + ".data").exists():
            link_or_copy(src.with_name(src.name + ".data"), out.with_name(out.name + ".data"))
    write_json(spec.info, report)
    if report["uses"] == "fused":
        errs, secs = report["relative_error"], report["seconds_per_call"]
        log.info("reference %s: fused %s; max relative error %.1e; %.3f -> %.3f s per call", spec.model,
                 ", ".join(f"{n} {op}" for op, n in report["fusions"].items() if n), max(errs.values()),
                 secs["unfused"], secs["fused"])
    elif report["reason"].startswith("fused copy"):
        log.warning("reference %s: %s; the reference runtime runs the unfused model", spec.model, report["reason"])
    else:
        log.info("reference %s: %s; the reference runtime runs the preprocessed model", spec.model, report["reason"])
    return True
