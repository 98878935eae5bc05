"""CPU proxies of the HTP precisions, for closed-loop episodes at episode speed (docs/runtimes.md,
"CPU proxies").

HTP emulation runs a full vision call in 90-130 s, far too slow for episodes. A proxy computes what
a precision's context computes, on onnxruntime's CPU EP (which one: `Precision.cpu_proxy`): the QDQ
model an integer precision's context is compiled from, the HTP graph with every weight and
activation rounded to fp16 (cpu_passes/fp16_rounding.py), or the fp32 graph itself.

A proxy is trusted only as far as it is measured: the `proxy` task runs it on validation's own
inputs and compares it with the HTP output validation recorded. Its distance to the HTP (RMS of the
difference) over the HTP's own distance to the fp32 reference is the proxy's ratio; the proxy
runtime (smolvla_build.runtime.artifacts.proxy_model) refuses a stage whose ratio exceeds
`evaluation.proxy_max_ratio`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

log = logging.getLogger("smolvla_build.proxy")


@dataclasses.dataclass(frozen=True)
class ProxySpec:
    model: str
    precision: str
    kind: str                  # qdq | fp16-rounded | fp32 (Precision.cpu_proxy)
    preset: str
    src: Path                  # the graph the context is compiled from
    out: Path | None           # the fp16-rounded model written; None: the proxy is `src` itself
    sidecar: Path
    arrays: Path               # validation's recorded inputs and outputs
    reference: Path            # the fp32 graph, timed beside the proxy
    fidelity: Path             # the JSON written


def rms_distance(a, b) -> float:
    import numpy as np
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return float(np.sqrt(np.mean(d * d))) if np.isfinite(d).all() else float("inf")


def fidelity(reference, htp, proxy) -> dict:
    """How close the proxy is to the HTP, against how far the HTP is from fp32."""
    from smolvla_runtime.compare import compare
    to_htp, htp_to_ref = rms_distance(proxy, htp), rms_distance(htp, reference)
    ratio = 0.0 if to_htp == 0 else (to_htp / htp_to_ref if htp_to_ref > 0 else float("inf"))
    strip = ("saturation",)
    return {"ratio": ratio, "rms_proxy_to_htp": to_htp, "rms_htp_to_reference": htp_to_ref,
            "rms_proxy_to_reference": rms_distance(proxy, reference),
            "proxy_vs_htp": {k: v for k, v in compare(htp, proxy).items() if k not in strip},
            "htp_vs_reference": {k: v for k, v in compare(reference, htp).items() if k not in strip}}


def run_stage(model_path, sidecar, model: str, arrays: dict, num_steps: int) -> tuple:
    """The stage's judged output on validation's recorded inputs (a rolled-out stage: its rollout),
    and the seconds per call."""
    import numpy as np
    from smolvla_runtime.model import STAGES
    from smolvla_runtime.runners import ReferenceRunner
    from smolvla_runtime.stage import StageRunner, rollout_from_feeds
    stage = StageRunner(ReferenceRunner(model_path), sidecar).activate()
    feeds = {k[len("in/"):]: v for k, v in arrays.items() if k.startswith("in/")}
    if STAGES[model].rolled_out:
        out, _ = rollout_from_feeds(stage, feeds, num_steps)
    else:
        out = stage.infer(feeds)[stage.runner.output_names[0]]
    return out, float(np.median(stage.inference_times))


def proxy_task(spec: ProxySpec):
    """The `proxy` action: make the proxy (the fp16-rounded graph) if it is not the source itself,
    run it and the fp32 reference on validation's inputs, and write its fidelity."""
    from smolvla_runtime.model import get_preset

    from .cpu_passes.fp16_rounding import round_to_fp16
    from .fsutil import write_json
    from smolvla_runtime.files import load_npz

    from .model_files import load_onnx, save_onnx
    from .progress import heartbeat
    label = f"{spec.model}-{spec.precision}"
    model_path = spec.src
    if spec.out:
        with heartbeat(f"proxy {label}: rounding the graph to fp16", log):
            save_onnx(round_to_fp16(load_onnx(spec.src)), spec.out)
        model_path = spec.out
    arrays = load_npz(spec.arrays)
    num_steps = get_preset(spec.preset).num_steps
    with heartbeat(f"proxy {label}: running the proxy and the fp32 reference on validation's inputs", log):
        t0 = time.time()
        got, proxy_s = run_stage(model_path, spec.sidecar, spec.model, arrays, num_steps)
        _, reference_s = run_stage(spec.reference, spec.sidecar, spec.model, arrays, num_steps)
    result = dict(model=spec.model, precision=spec.precision, kind=spec.kind, proxy=str(model_path),
                  **fidelity(arrays["reference"], arrays["htp"], got),
                  proxy_seconds_per_call=proxy_s, reference_seconds_per_call=reference_s,
                  seconds=round(time.time() - t0, 2))
    write_json(spec.fidelity, result)
    log.info("proxy %s (%s): distance to the HTP %.3g = %.1f%% of the HTP's distance to fp32 (%.3g); %.3f s per call, "
             "fp32 %.3f s", label, spec.kind, result["rms_proxy_to_htp"], 100 * result["ratio"],
             result["rms_htp_to_reference"], proxy_s, reference_s)
    return True
