"""Scenario 8: `doit eval` on Ray (tiny preset): episodes per hour with 1 and 2 workers in one run,
the scaling ratio, Ray's start-up time and the driver's overhead per episode; and one full-preset
episode's cost on the reference runtime (`doit infer:task0`, LIBERO's 280-step limit).

`python -m bench.eval_scaling` runs it alone and merges it into bench/results.json and BENCHMARKS.md.
"""

from __future__ import annotations

import json
import re
import shutil
import sys

import yaml

from .common import ROOT, doit_cmd, run_measured


def _eval_run(pipe_path, workers: int) -> dict:
    data = yaml.safe_load(pipe_path.read_text())
    data["evaluation"]["workers"] = workers
    pipe_path.write_text(yaml.safe_dump(data, sort_keys=False))
    shutil.rmtree(pipe_path.parent / "artifacts" / "eval", ignore_errors=True)
    res = run_measured(doit_cmd(pipe_path, "eval"))
    results = [json.loads(p.read_text()) for p in (pipe_path.parent / "artifacts" / "eval").rglob("trial*.json")]
    n = len(results)
    episode_s = sum(r["seconds"] for r in results)
    ray_start = re.search(r"ray start (\d+\.\d+) s", res["output"])
    return {"workers": workers, "episodes": n, "wall_s": res["seconds"], "episodes_per_hour": n / res["seconds"] * 3600,
            "mean_episode_s": episode_s / n, "steps_per_episode": results[0]["steps"],
            # wall time not spent inside episodes, per episode (Ray and actor start, scheduling, writing results)
            "driver_overhead_per_episode_s": (res["seconds"] - episode_s / workers) / n,
            "ray_start_s": float(ray_start.group(1)) if ray_start else None}


def eval_scaling(log) -> dict:
    from .build import write_pipeline
    folder = ROOT / "artifacts" / "bench-eval"
    pipe_path = write_pipeline(folder, preset="tiny")
    data = yaml.safe_load(pipe_path.read_text())
    data["evaluation"].update(tasks=[0, 1, 2, 3], trials=2, max_steps=20, videos="none", runtime="reference")
    pipe_path.write_text(yaml.safe_dump(data, sort_keys=False))
    run_measured(doit_cmd(pipe_path, "preprocess"))
    out = {"runs": [_eval_run(pipe_path, w) for w in (1, 2)]}
    for r in out["runs"]:
        log(f"  {r['workers']} worker(s): {r['episodes']} episodes in {r['wall_s']:.0f} s, {r['episodes_per_hour']:.0f}/h")
    out["scaling_2_over_1"] = out["runs"][1]["episodes_per_hour"] / out["runs"][0]["episodes_per_hour"]
    full = write_pipeline(ROOT / "artifacts" / "bench-bundle")      # the full build of scenario 7
    data = yaml.safe_load(full.read_text())
    data["evaluation"].update(runtime="reference", max_steps=None)
    full.write_text(yaml.safe_dump(data, sort_keys=False))
    res = run_measured(doit_cmd(full, "infer:task0"))
    info = json.loads((full.parent / "artifacts" / "eval" / "libero_spatial" / "task0" / "eval_info.json").read_text())
    steps = len(json.loads((full.parent / "artifacts" / "eval" / "libero_spatial" / "task0" / "actions.json").read_text())["actions"])
    out["full_episode"] = {"seconds": info["overall"]["eval_ep_s"], "steps": steps, "wall_s": res["seconds"],
                           "peak_rss_mb": res["peak_rss_mb"]}
    log(f"  full preset, one episode: {steps} steps in {info['overall']['eval_ep_s']:.0f} s")
    return out


def main() -> int:
    from .benchmarks_md import merge_scenario
    merge_scenario("eval_scaling", eval_scaling(lambda m: print(m, file=sys.stderr, flush=True)),
                   "python -m bench.eval_scaling")
    return 0


if __name__ == "__main__":
    sys.exit(main())
