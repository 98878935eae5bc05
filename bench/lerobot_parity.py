"""Scenario 6: the full-size policy against LeRobot's own SmolVLA on the same run.

LeRobot's SmolVLA (PyPI lerobot 0.4.4 in scripts/lerobot_env.sh's environment) is built at the
smolvla-libero preset's size with random weights, saved by LeRobot's save_pretrained, built by doit
(export, preprocess, the reference runtime's CPU copies) from that folder as saved, and compared on
one observation and one noise tensor (tokens, vision stage, actions); then both control steps are
timed on this machine, each in a fresh process after the files it reads are synced to disk and one
untimed step: LeRobot's (processors + predict_action_chunk, PyTorch CPU) and ours (reference
runtime, onnxruntime CPU).

`python -m bench.lerobot_parity` runs it alone and merges it into bench/results.json and BENCHMARKS.md.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from .common import ROOT, doit_cmd, run_measured, stats

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))


def _policy(pipe_path):
    from smolvla_build.config import load_pipeline
    from smolvla_build.runtime.artifacts import load_policy
    pipe = load_pipeline(pipe_path)
    return load_policy(pipe.policy_source(pipe.layout("ort-qnn"), "reference", precision="fp16", n_action_steps=10))


def time_ours(pipe_path: str, spec_path: str, reps: int) -> dict:
    """Our control step as LeRobot's is timed: in a fresh process, after one untimed step, on the
    same observation and noise: `reps` x predict_chunk from the raw frames (its own stage split too)."""
    import json

    from lerobot_parity import observation

    from .control_step import timed_steps
    wall, rows = timed_steps(_policy(pipe_path), reps, *observation(json.loads(Path(spec_path).read_text())))
    return {"seconds_per_step": wall, "parts": {k: [r[k] for r in rows] for k in ("vision_s", "llm_s", "action_head_s")}}


def lerobot_parity(reps: int, log) -> dict:
    import json
    import os

    from lerobot_parity import compare_built_policy, run_lerobot

    from smolvla_runtime.model import PRESETS

    from .build import write_pipeline
    folder = ROOT / "artifacts" / "bench-lerobot"
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    spec, saved, want = run_lerobot(folder / "lerobot", PRESETS["smolvla-libero"], reps=reps)
    lerobot_s = time.perf_counter() - t0
    log(f"  LeRobot side (build, save, {reps} timed control steps): {lerobot_s:.0f} s")
    pipe_path = write_pipeline(folder / "build")
    import yaml
    data = yaml.safe_load(pipe_path.read_text())
    data["source"] = {"preset": "smolvla-libero", "weights": "checkpoint", "path": saved["checkpoint"]}
    pipe_path.write_text(yaml.safe_dump(data, sort_keys=False))
    build = run_measured(doit_cmd(pipe_path, "reference"))
    log(f"  our export + preprocess + reference copy from LeRobot's folder: {build['seconds']:.0f} s")
    got = compare_built_policy(_policy(pipe_path), spec, want)         # equality, untimed
    os.sync()                        # our build's files are on disk: no writeback during the timing
    ours = json.loads(run_measured([sys.executable, "-m", "bench.lerobot_parity", "--time-ours", str(pipe_path),
                                    str(folder / "lerobot" / "spec.json"), "--reps", str(reps)])["output"].strip().splitlines()[-1])
    ours_s, theirs = stats(ours["seconds_per_step"]), stats(saved["seconds_per_step"])
    log(f"  control step: ours {ours_s['median']:.3f} s, LeRobot {theirs['median']:.3f} s")
    return {"comparison": got, "ours_control_step_s": ours_s, "lerobot_control_step_s": theirs,
            "ours_parts_s": {k: stats(v) for k, v in ours["parts"].items()},
            "ratio_lerobot_over_ours": theirs["median"] / ours_s["median"],
            "lerobot": {k: saved[k] for k in ("torch", "threads", "lerobot")},
            "build_seconds": build["seconds"], "build_peak_rss_mb": build["peak_rss_mb"], "lerobot_side_seconds": lerobot_s}


def main() -> int:
    import argparse

    from .benchmarks_md import merge_scenario
    ap = argparse.ArgumentParser(prog="python -m bench.lerobot_parity")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--time-ours", nargs=2, metavar=("PIPELINE", "SPEC"),
                    help="only time our control step on a finished build (what the scenario runs in a fresh process)")
    args = ap.parse_args()
    if args.time_ours:
        import json
        print(json.dumps(time_ours(*args.time_ours, args.reps)))
        return 0
    merge_scenario("lerobot_parity", lerobot_parity(args.reps, lambda m: print(m, file=sys.stderr, flush=True)),
                   "python -m bench.lerobot_parity")
    return 0


if __name__ == "__main__":
    sys.exit(main())
