"""The validation verdict: a measurement (validation/measure.py) against its precision's gates (the
rules, smolvla_runtime.compare.judge, are the ones a device's `check` applies), and what follows
from a miss under validation.on_saturation: pass, fallback (to the precision the fallback rule
names), warn, or fail (the task fails). Pure Python over the measurement's JSON."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

log = logging.getLogger("smolvla_build.validate")


@dataclasses.dataclass(frozen=True)
class VerdictSpec:
    model: str
    precision: str
    measured: Path                 # the measurement's JSON
    gates: dict                    # cosine_min, max_abs, max_relative: the precision's, defaults merged once
    on_saturation: str             # fail | fallback-fp32 | warn
    on_fallback_miss: str          # fail | warn
    fallback_to: str | None        # the precision a miss falls back to (smolvla_build.precisions)
    fallback_target: bool          # some other precision falls back to this one
    out: Path                      # the verdict (JSON): the measurement, the gates, the reasons, the status


def decide(reasons: list[str], on_saturation: str, on_fallback_miss: str, fallback_to: str | None,
           is_fallback_target: bool) -> str:
    """pass | fallback | warn | fail for a stage that missed `reasons` (none: pass), under
    validation.on_saturation and on_fallback_miss."""
    if not reasons:
        return "pass"
    if on_saturation == "fallback-fp32" and fallback_to:
        return "fallback"
    if on_saturation == "warn":
        return "warn"
    if on_saturation == "fallback-fp32" and on_fallback_miss == "warn" and is_fallback_target:
        return "warn"          # nothing left to fall back to: use it, say so (report, log)
    return "fail"


def validate_task(spec: VerdictSpec):
    """The `validate` action: judge the measurement, decide, write the verdict; a `fail` fails the task."""
    from doit.exceptions import TaskFailed

    from ..fsutil import write_json
    report = json.loads(Path(spec.measured).read_text())
    from smolvla_runtime.compare import judge      # numpy's module: not at task generation (stages only declare)
    reasons = judge(report["metrics"], report["intermediates_beyond_fp16"], spec.model, spec.gates)
    status = decide(reasons, spec.on_saturation, spec.on_fallback_miss, spec.fallback_to, spec.fallback_target)
    report.update(gates=spec.gates, reasons=reasons, status=status,
                  policy={"on_saturation": spec.on_saturation, "on_fallback_miss": spec.on_fallback_miss})
    if status == "fallback":
        report["fallback_to"] = spec.fallback_to
    write_json(spec.out, report)
    metrics, label = report["metrics"], f"{spec.model}-{spec.precision}"
    msg = (f"validate {label}: {status}, cosine {metrics['cosine']:.6f}, "
           f"max abs {metrics['max_abs']:.3g}, PSNR {metrics['psnr_db']:.1f} dB")
    if reasons:
        msg += "; " + "; ".join(reasons)
        if status == "fallback":
            msg += f" -> using {spec.fallback_to} for {spec.model}"
    (log.warning if reasons else log.info)(msg)
    if status == "fail":
        return TaskFailed(msg + f" (on_saturation: {spec.on_saturation}; report: {spec.out})")
    return True
