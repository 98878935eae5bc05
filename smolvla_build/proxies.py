"""CPU proxies of the HTP precisions, for closed-loop episodes at episode speed (docs/runtimes.md,
"CPU proxies").

HTP emulation runs a full vision call in 90-130 s, far too slow for episodes. A proxy computes what
a precision's context computes, on onnxruntime's CPU EP (which one: `Precision.cpu_proxy`): the QDQ
model an integer precision's context is compiled from, the HTP graph with every weight and
activation rounded to fp16 (cpu_passes/fp16_rounding.py), or the fp32 graph itself.

A proxy is trusted only as far as it is measured: the `proxy` task runs it on validation's own
inputs and compares it with the HTP output validation recorded. Its distance to the HTP (RMS of the
difference) over the HTP's own distance to the fp32 reference is the proxy's ratio; the proxy
runtime refuses a stage whose ratio exceeds `evaluation.proxy_max_ratio`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from .model_files import ModelFileError

log = logging.getLogger("smolvla_build.proxy")


class ProxyError(ModelFileError):
    """A proxy that cannot be used; str() names its fidelity file and says why, in one line."""


def rms_distance(a: np.ndarray, b: np.ndarray) -> float:
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return float(np.sqrt(np.mean(d * d))) if np.isfinite(d).all() else float("inf")


def fidelity(reference: np.ndarray, htp: np.ndarray, proxy: np.ndarray) -> dict:
    """How close the proxy is to the HTP, against how far the HTP is from fp32."""
    from .compare import compare
    to_htp, htp_to_ref = rms_distance(proxy, htp), rms_distance(htp, reference)
    ratio = 0.0 if to_htp == 0 else (to_htp / htp_to_ref if htp_to_ref > 0 else float("inf"))
    strip = ("saturation",)
    return {"ratio": ratio, "rms_proxy_to_htp": to_htp, "rms_htp_to_reference": htp_to_ref,
            "rms_proxy_to_reference": rms_distance(proxy, reference),
            "proxy_vs_htp": {k: v for k, v in compare(htp, proxy).items() if k not in strip},
            "htp_vs_reference": {k: v for k, v in compare(reference, htp).items() if k not in strip}}


def run_stage(model_path, sidecar, model: str, arrays: dict) -> tuple[np.ndarray, float]:
    """The stage's judged output on validation's recorded inputs (the action head: its rollout),
    and the seconds per call."""
    from .runtime import ReferenceRunner, StageRunner
    from .validation import rollout
    stage = StageRunner(ReferenceRunner(model_path), sidecar).activate()
    feeds = {k[len("in/"):]: v for k, v in arrays.items() if k.startswith("in/")}
    if model == "action_head":
        base = {k: v for k, v in feeds.items() if k not in ("x_t", "timestep")}
        out, _ = rollout(stage, base, feeds["x_t"])
    else:
        out = stage.infer(feeds)[stage.runner.output_names[0]]
    return out, float(np.median(stage.inference_times))


def proxy_task(kw: dict):
    """The `proxy` action. kw: model, precision_name, kind, src (the graph the context is compiled
    from), out (the fp16-rounded model, or None: the proxy is `src` itself), sidecar, arrays
    (validation's recorded inputs and outputs), reference (the fp32 graph, timed beside the proxy),
    fidelity (the JSON written)."""
    from . import onnx_io
    from .cpu_passes.fp16_rounding import round_to_fp16
    from .fsutil import write_json
    from .model_files import load_npz
    from .progress import heartbeat
    label = f"{kw['model']}-{kw['precision_name']}"
    model_path = kw["src"]
    if kw["out"]:
        with heartbeat(f"proxy {label}: rounding the graph to fp16", log):
            onnx_io.save(round_to_fp16(onnx_io.load(kw["src"])), kw["out"])
        model_path = kw["out"]
    arrays = load_npz(kw["arrays"])
    with heartbeat(f"proxy {label}: running the proxy and the fp32 reference on validation's inputs", log):
        t0 = time.time()
        got, proxy_s = run_stage(model_path, kw["sidecar"], kw["model"], arrays)
        _, reference_s = run_stage(kw["reference"], kw["sidecar"], kw["model"], arrays)
    result = dict(model=kw["model"], precision=kw["precision_name"], kind=kw["kind"], proxy=str(model_path),
                  **fidelity(arrays["reference"], arrays["htp"], got),
                  proxy_seconds_per_call=proxy_s, reference_seconds_per_call=reference_s,
                  seconds=round(time.time() - t0, 2))
    write_json(kw["fidelity"], result)
    log.info("proxy %s (%s): distance to the HTP %.3g = %.1f%% of the HTP's distance to fp32 (%.3g); %.3f s per call, "
             "fp32 %.3f s", label, kw["kind"], result["rms_proxy_to_htp"], 100 * result["ratio"],
             result["rms_htp_to_reference"], proxy_s, reference_s)
    return True


def proxy_model(layout, model: str, precision: str, max_ratio: float) -> Path:
    """The model the proxy runtime runs for `model` in `precision`, checked against its measured
    fidelity (ProxyError when it was not measured, or is farther from the HTP than `max_ratio` of
    the HTP's own distance to fp32)."""
    info = layout.proxy_fidelity(model, precision)
    if not info.is_file():
        raise ProxyError(f"{info}: missing; the proxy runtime runs what `doit proxy:{model}-{precision}` measured")
    f = json.loads(info.read_text())
    if not f["ratio"] <= max_ratio:
        raise ProxyError(f"{info}: the {f['kind']} proxy of {model} in {precision} is {100 * f['ratio']:.0f}% of the "
                         f"HTP's own distance to fp32 away from the HTP, over evaluation.proxy_max_ratio {max_ratio}: "
                         "run this precision on ort-qnn")
    return Path(f["proxy"])
