"""Scenario 9: the integer precisions on the full preset (ort-qnn): per model and precision the
context size, quantize and build time, peak memory, validation metrics (10-step rollout for the
action head) and HTP-emulated seconds per call; the calibration set's time and peak memory.

Uses the full default pipeline build of scenario 7 (artifacts/bench-bundle) with the integer
precisions added after the default pipeline's float ones, each task in its own `doit` process so its peak RSS is its own.
`python -m bench.quantization` runs it alone and merges it into bench/results.json and BENCHMARKS.md.
"""

from __future__ import annotations

import json
import sys

import yaml

from .common import ROOT, doit_cmd, run_measured

from smolvla_runtime.model import MODELS
INTEGER = {"w8a8": {"weights": 8, "activations": 8}, "w8a16": {"weights": 8, "activations": 16},
           "w16a16": {"weights": 16, "activations": 16}}


def built(root, model: str, precision: str) -> dict:
    """What the build's own files say of one model x precision: its context and its validation."""
    v = json.loads((root / "validation" / f"{model}-{precision}.json").read_text())
    c = json.loads((root / "ort-qnn" / precision / f"{model}_ctx.json").read_text())
    return {"context_mb": c["context_bytes"] / 1e6, "compile_seconds": c["compile_seconds"],
            "metrics": {k: v["metrics"][k] for k in ("cosine", "max_abs", "psnr_db")}, "status": v["status"],
            "reasons": v["reasons"], "htp_seconds_per_call": v["htp_seconds_per_call"]}


def quantization(log, precisions=("w8a16", "w8a8", "w16a16")) -> dict:
    from .build import write_pipeline
    folder = ROOT / "artifacts" / "bench-bundle"
    pipe_path = write_pipeline(folder)
    data = yaml.safe_load(pipe_path.read_text())
    floats = list(data["precisions"])                   # the default pipeline's own (fp16)
    for p in precisions:
        data["precisions"][p] = {"quantization": dict(INTEGER[p], per_channel=True, calibration={"samples": 32})}
    data["evaluation"]["precision"] = "fp16"
    pipe_path.write_text(yaml.safe_dump(data, sort_keys=False))
    root = folder / "artifacts"
    out = {"pipeline": str(pipe_path.relative_to(ROOT)), "models": {}, "precisions": list(data["precisions"])}
    base = run_measured(doit_cmd(pipe_path, *[f"validate:{m}-{p}" for p in floats for m in MODELS]))
    log(f"  {'/'.join(floats)} contexts and validation (rebuilt only if stale): {base['seconds']:.0f} s")
    log("  calibrate (32 samples per graph, fp32 reference policy in LIBERO) ...")
    cal = run_measured(doit_cmd(pipe_path, "calibrate"))
    info = json.loads((root / "calibration" / "libero_spatial-n32" / "calibration.json").read_text())
    out["calibration"] = {"seconds": info["seconds"], "task_seconds": cal["seconds"], "peak_rss_mb": cal["peak_rss_mb"],
                          "episodes": len(info["episodes"]), "samples": info["samples"]}
    log(f"  calibrate: {info['seconds']:.0f} s, peak {cal['peak_rss_mb']:.0f} MB")
    for p in precisions:
        for m in MODELS:
            steps = {}
            for task in (f"quantize:{m}-{p}", f"context:{m}-{p}", f"validate:{m}-{p}"):
                log(f"  {task} ...")
                r = run_measured(doit_cmd(pipe_path, task))
                steps[task.split(":")[0]] = {"seconds": r["seconds"], "peak_rss_mb": r["peak_rss_mb"]}
            q = json.loads((root / "quantized" / p / f"{m}.qdq.json").read_text())
            row = out["models"].setdefault(m, {})[p] = dict(built(root, m, p), quantize_seconds=q["seconds"], steps=steps)
            log(f"  {m} {p}: {row['context_mb']:.0f} MB, cosine {row['metrics']['cosine']:.6f}, "
                f"max abs {row['metrics']['max_abs']:.3g}, {row['htp_seconds_per_call']:.1f} s/call emulated")
    for p in floats:
        for m in MODELS:
            out["models"].setdefault(m, {})[p] = built(root, m, p)
    rep = run_measured(doit_cmd(pipe_path, "report"))
    out["report_seconds"] = rep["seconds"]
    return out


def main() -> int:
    from .benchmarks_md import merge_scenario
    merge_scenario("quantization", quantization(lambda m: print(m, file=sys.stderr, flush=True)),
                   "python -m bench.quantization")
    return 0


if __name__ == "__main__":
    sys.exit(main())
