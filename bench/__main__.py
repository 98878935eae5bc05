"""`python -m bench [--quick]`: run every scenario and write bench/results.json and BENCHMARKS.md.

Scenarios (full-size smolvla-libero preset, random weights, toolchain ort-qnn):
 1. cold build per stage (export, preprocess, context per precision, validate for fp16)
 2. no-op doit; rebuild after a one-line change of the fp32 precision's options
 3. control step on the reference runtime: per stage, total, orchestration overhead
 4. persistent sessions vs one process per call (13 calls per control step), same run
 5. HTP emulation cost per stage on the tiny preset
 6. the built policy vs LeRobot's own SmolVLA (full preset, same run): equality and control-step time
 1b. the cold main job (`bash scripts/build.sh`, default pipeline) and the no-op of a bare `doit` after it
 12. where a full-preset LIBERO episode's time goes, on the main job's policy (bench/episode_split.py)
Scenarios 7-9 (bundle, Ray evaluation, integer precisions), 10 (no-op A/B against a revision, noop_ab),
13 (proxies), 14 (htp_kernels), 15 (worker_threads) and 16 (fp16_rewrites) run alone: python -m
bench.<module>. Their sections, and those written by hand, stay in BENCHMARKS.md as they were.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from . import build, control_step, episode_split, lerobot_parity
from .common import ROOT, commit, machine
from .benchmarks_md import write_markdown


def collect_validation(folder) -> dict:
    """The validate stage's own verdicts of this run (HTP emulation vs fp32 reference), not the
    measurements they read (`*.measured.json`)."""
    out = {}
    for f in sorted(folder.glob("*.json")):
        if f.name.endswith(".measured.json"):
            continue
        r = json.loads(f.read_text())
        out[f.stem] = {"status": r["status"], "reasons": r["reasons"], "metrics": r["metrics"],
                       "htp_seconds_per_call": r["htp_seconds_per_call"],
                       "reference_seconds_per_call": r["reference_seconds_per_call"],
                       "intermediate_max_abs": r["intermediate_max_abs"],
                       "intermediates_beyond_fp16": len(r["intermediates_beyond_fp16"])}
    return out


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = ap.parse_args()
    from smolvla_build.config import load_pipeline

    t0 = time.time()
    results = {"date": datetime.date.today().isoformat(), "machine": machine(), "reps": args.reps,
               "command": "python -m bench", "commit": commit()}
    folder = ROOT / "artifacts" / "bench-full"
    pipe_path = build.write_pipeline(folder)
    log("scenario 1: cold build per stage (full preset)")
    results["cold_build"] = build.cold_build(pipe_path, ("fp16",), log)
    results["validation_full"] = collect_validation(folder / "artifacts" / "validation")
    build_targets = ("export", "preprocess", "reference", "context")
    log("scenario 1b: the cold main job (bash scripts/build.sh), then the no-op of a bare doit")
    results["main_job"] = build.main_job(log, args.reps)
    log("scenario 12: where a full-preset episode's time goes (the main job's policy)")
    results["episode_split"] = episode_split.split(Path(results["main_job"]["pipeline"]), None, 0, log)
    log("scenario 2: no-op doit, rebuild after a change of fp16's options")
    results["noop"] = build.noop(pipe_path, build_targets, args.reps)
    results["rebuild_option_change"] = build.rebuild_after_option_change(pipe_path, "fp16", build_targets)
    pipe = load_pipeline(pipe_path)
    layout = pipe.layout()
    log("scenario 3: control step on the reference runtime")
    results["control_step"] = control_step.control_step(layout, pipe, args.reps)
    log("scenario 4: persistent sessions vs one process per call")
    results["process_per_call"] = control_step.persistent_vs_process(layout, pipe, args.reps)
    log("scenario 5: HTP emulation per stage (tiny preset)")
    tiny_path = build.write_pipeline(ROOT / "artifacts" / "bench-tiny", preset="tiny")
    from .common import doit_cmd, run_measured
    run_measured(doit_cmd(tiny_path, "context"))
    tiny = load_pipeline(tiny_path)
    results["htp_emulation_tiny"] = control_step.htp_emulation(tiny.layout(), tiny, args.reps)
    log("scenario 6: the built policy vs LeRobot's own SmolVLA (full preset)")
    results["lerobot_parity"] = lerobot_parity.lerobot_parity(args.reps, log)
    results["bench_seconds"] = time.time() - t0
    previous = ROOT / "bench" / "results.json"           # scenarios run alone keep their own dated figures
    if previous.is_file():
        old = json.loads(previous.read_text())
        for key in ("bundle", "eval_scaling", "quantization", "noop_ab", "htp_kernels", "worker_threads",
                    "fp16_rewrites"):
            if key in old:
                results[key] = old[key]
    previous.write_text(json.dumps(results, indent=2))
    write_markdown(results, args.out)
    log(f"done in {results['bench_seconds'] / 60:.1f} min: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
