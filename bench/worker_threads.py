"""`python -m bench.worker_threads --pipeline FILE [--steps 100]`: episodes per hour of concurrent
evaluation actors against the onnxruntime threads each one gets, on the built reference policy of
FILE (run `doit` on it first). Three runs of the same episode (libero_spatial task 0, trial 0, no
video), each actor a process of its own as a Ray actor is: one actor with onnxruntime's default (a
thread per core); as many actors as cores with the default; as many actors as cores with
cores // actors threads each (what `doit eval` gives them: evaluate/scale.py). Per run: wall time,
episodes per hour, and per actor the policy's and simulator's seconds and the cores it used (CPU
seconds of all its threads / wall seconds). Merged into bench/results.json and BENCHMARKS.md
(section 15)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .common import ROOT, machine


def actor(pipeline: str, threads: int, steps: int) -> None:
    """One episode in this process, as an evaluation actor runs it; prints its figures as JSON."""
    from smolvla_build.config import load_pipeline
    from smolvla_build.evaluate.episode import simulate
    from smolvla_build.runtime.artifacts import load_policy
    pipe = load_pipeline(pipeline)
    layout = pipe.layout()
    ev = pipe.section("evaluation")
    policy = load_policy(pipe.policy_source(layout, "reference", n_action_steps=ev["n_action_steps"], threads=threads))
    config = layout.libero_config / f"bench-{os.getpid()}"
    t0, cpu0 = time.time(), time.process_time()
    r = simulate(policy, ev["suite"], 0, 0, steps, config, seed=ev["seed"], frames=False, progress=False)
    wall = time.time() - t0
    print(json.dumps({"episode_s": wall, "policy_s": r["policy_s"], "simulator_s": r["simulator_s"],
                      "cores_used": (time.process_time() - cpu0) / wall, "steps": r["steps"]}))


def run(pipeline: Path, actors: int, threads: int, steps: int, log) -> dict:
    log(f"  {actors} actor(s), {threads or 'default'} thread(s) each ...")
    cmd = [sys.executable, "-m", "bench.worker_threads", "--pipeline", str(pipeline), "--steps", str(steps),
           "--actor-threads", str(threads)]
    t0 = time.time()
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(actors)]
    outs = [p.communicate()[0] for p in procs]
    wall = time.time() - t0
    if any(p.returncode for p in procs):
        raise RuntimeError(f"an actor failed: {outs}")
    per_actor = [json.loads(o.strip().splitlines()[-1]) for o in outs]
    # episodes per hour from the episodes' own seconds (the actors start together; process start-up
    # and policy loading are not part of an episode)
    span = max(a["episode_s"] for a in per_actor)
    res = {"actors": actors, "threads": threads or "default", "wall_s": wall, "episodes_per_hour": actors / span * 3600,
           "per_actor": per_actor}
    log(f"    {res['episodes_per_hour']:.0f} episodes/hour; cores used per actor "
        + ", ".join(f"{a['cores_used']:.2f}" for a in per_actor))
    return res


def worker_threads(pipeline: Path, steps: int, log) -> dict:
    from smolvla_build.config import load_pipeline
    from smolvla_build.evaluate.scale import threads_per_worker
    cores = os.cpu_count() or 1
    runs = [run(pipeline, 1, 0, steps, log), run(pipeline, cores, 0, steps, log),
            run(pipeline, cores, threads_per_worker(cores, cores, cores), steps, log)]   # what doit eval gives
    return {"machine": machine(), "preset": load_pipeline(pipeline).source["preset"], "steps": steps, "runs": runs}


def section(w: dict) -> list[str]:
    L = ["", "## 15. Evaluation actors and their onnxruntime threads", "",
         f"Measured by `{w['command']}` on {w['date']}, on {w['machine']} (a separate run from the sections above): "
         f"{w['preset']} preset, the reference policy, libero_spatial task 0, {w['steps']} policy steps, no video; "
         "each actor a process of its own, all started together; single shots. Episodes per hour from the "
         "episodes' own seconds (the slowest actor's).", "",
         "| actors | onnxruntime threads each | episodes per hour | episode s | policy s | simulator s | cores used per actor |",
         "|---|---|---|---|---|---|---|"]
    for r in w["runs"]:
        a = r["per_actor"]
        L.append(f"| {r['actors']} | {r['threads']} | {r['episodes_per_hour']:.0f} | "
                 + " | ".join(", ".join(f"{x[k]:.1f}" for x in a) for k in ("episode_s", "policy_s", "simulator_s"))
                 + " | " + ", ".join(f"{x['cores_used']:.2f}" for x in a) + " |")
    L += ["", "`doit eval` gives each actor cores // actors threads (evaluate/scale.py, docs/evaluation.md)."]
    return L


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.worker_threads")
    ap.add_argument("--pipeline", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--actor-threads", type=int, default=None, help=argparse.SUPPRESS)   # one actor process
    args = ap.parse_args()
    if args.actor_threads is not None:
        actor(str(args.pipeline), args.actor_threads, args.steps)
        return 0
    from .benchmarks_md import merge_scenario
    log = lambda m: print(m, file=sys.stderr, flush=True)           # noqa: E731
    merge_scenario("worker_threads", worker_threads(args.pipeline, args.steps, log),
                   f"python -m bench.worker_threads --pipeline {args.pipeline} --steps {args.steps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
