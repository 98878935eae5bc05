"""`python -m bench.episode_split --pipeline FILE [--steps N] [--task T]`: where a LIBERO episode's
time goes, on the built reference policy of FILE (run `doit` on it first), in one process: the same
episode rendering both cameras on every step (as before issue #27), with its video (the agentview
every step, both cameras when the policy reads them), without (the cameras only when the policy
reads them), and without in an environment kept from the task's previous trial. Per episode: environment build, policy, simulator (physics and
rendering) and its seconds per step. Prints JSON and a markdown table (BENCHMARKS.md section 12)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .common import machine


def split(pipeline: Path, steps: int | None, task: int, log=lambda msg: None) -> dict:
    from smolvla_build.config import load_pipeline
    from smolvla_build.evaluate.episode import TaskEnvironments, simulate
    from smolvla_build.runtime.artifacts import load_policy
    pipe = load_pipeline(pipeline)
    layout = pipe.layout()
    ev = pipe.section("evaluation")
    policy = load_policy(pipe.policy_source(layout, "reference", n_action_steps=ev["n_action_steps"]))
    config = layout.libero_config
    rows = []

    def run(name, frames, envs=None, trial=0):
        log(f"  episode: {name} ...")
        t0 = time.time()
        r = simulate(policy, ev["suite"], task, trial, steps, config, seed=ev["seed"], frames=frames, progress=False,
                     envs=envs)
        rows.append({"episode": name, "steps": r["steps"], "wall_s": round(time.time() - t0, 2),
                     "env_build_s": round(r["env_build_s"], 2), "policy_s": round(r["policy_s"], 2),
                     "simulator_s": round(r["simulator_s"], 2),
                     "simulator_s_per_step": round(r["simulator_s"] / max(1, r["steps"] + 10), 4)})
        log(f"    {rows[-1]['wall_s']} s: policy {rows[-1]['policy_s']} s, simulator {rows[-1]['simulator_s']} s")
        return r

    from smolvla_build.evaluate import episode
    want = episode.Cameras.want
    episode.Cameras.want = lambda self, policy_reads, video: None      # both cameras every step: before #27
    try:
        before = run("both cameras every step (before)", True)
    finally:
        episode.Cameras.want = want
    with_video = run("with video (videos: all)", True)
    without = run("without video (videos: none)", False)
    envs = TaskEnvironments(config)
    try:
        run("trial 1, environment kept for the next", False, envs, trial=1)
        kept = run("trial 0 in the kept environment", False, envs, trial=0)
    finally:
        envs.close()
    same = before["actions"] == with_video["actions"] == without["actions"] == kept["actions"]
    return {"machine": machine(), "pipeline": str(pipeline), "preset": pipe.source["preset"], "suite": ev["suite"],
            "n_action_steps": ev["n_action_steps"],
            "task": task, "episodes": rows, "same_actions": same,
            "simulator_ratio_none_to_all": round(rows[2]["simulator_s_per_step"] / rows[1]["simulator_s_per_step"], 3),
            "simulator_ratio_none_to_before": round(rows[2]["simulator_s_per_step"] / rows[0]["simulator_s_per_step"], 3)}


def markdown(res: dict) -> str:
    lines = ["| episode | steps | wall s | environment build s | policy s | simulator s | simulator s per step |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['episode']} | {r['steps']} | {r['wall_s']} | {r['env_build_s']} | {r['policy_s']} | "
              f"{r['simulator_s']} | {r['simulator_s_per_step']} |" for r in res["episodes"]]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.episode_split")
    ap.add_argument("--pipeline", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=None, help="policy steps (default: the suite's limit)")
    ap.add_argument("--task", type=int, default=0)
    args = ap.parse_args()
    res = split(args.pipeline, args.steps, args.task)
    print(json.dumps(res, indent=2))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
