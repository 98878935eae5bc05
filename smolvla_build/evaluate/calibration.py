"""Recording the calibration sets of the integer precisions: what each HTP graph really sees in
LIBERO (the file format: smolvla_build/calibration_set.py).

The fp32 reference policy acts in episodes of the configured suite (LeRobot's protocol, the suite's
init states); every graph call's inputs are recorded as the graph receives them (after the CPU side:
embedding rows, sinusoid tables, int32 masks), so the quantizer calibrates exactly the tensors the
context will be fed. One plan calls each stage `Stage.calls_per_plan` times (the cameras, once, the
flow-matching steps). N samples per graph are kept, chosen with a seeded generator among all calls of
N plans; the set is written once per (suite, N) and shared by every quantized precision.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

from smolvla_runtime.model import MODELS, STAGES

from ..runtime.artifacts import PolicySource

log = logging.getLogger("smolvla_build.calibration")


@dataclasses.dataclass(frozen=True)
class CalibrateSpec:
    policy: PolicySource            # the fp32 reference policy
    suite: str
    tasks: tuple[int, ...]
    samples: int                    # per graph
    seed: int
    out_dir: Path                   # <model>.npz and calibration.json
    config_dir: Path                # LIBERO's config folder


class RecordingRunner:
    """Wraps a runner; keeps a copy of the graph feeds of the calls whose index is in `keep`."""

    def __init__(self, runner, keep: set[int]):
        self.runner, self.keep = runner, set(keep)
        self.calls = 0
        self.samples: list[dict] = []

    def infer(self, feeds, outputs=None):
        import numpy as np
        if self.calls in self.keep:
            self.samples.append({k: np.array(v, copy=True) for k, v in feeds.items()})
        self.calls += 1
        return self.runner.infer(feeds, outputs)

    def __getattr__(self, name):
        return getattr(self.runner, name)


def chosen_calls(model: str, calls_per_plan: int, samples: int, seed: int) -> set[int]:
    """Indices of the calls kept for `model` among the calls of `samples` plans (seeded)."""
    import numpy as np
    rng = np.random.default_rng([seed, MODELS.index(model)])
    return set(int(i) for i in rng.choice(calls_per_plan * samples, size=samples, replace=False))


def episodes(tasks: list[int]):
    """(task, trial) pairs: trial 0 of every task, then trial 1, ... (an episode that succeeds early
    plans fewer chunks than asked; the next trials make up for it)."""
    trial = 0
    while True:
        for t in tasks:
            yield t, trial
        trial += 1


def record(policy, suite: str, tasks: list[int], samples: int, seed: int, config_dir: Path, out_dir: Path) -> dict:
    """Run the reference `policy` in LIBERO until `samples` chunks are planned; write
    `<model>.npz` (each graph input stacked over the samples) and calibration.json into out_dir."""
    import time

    from ..calibration_set import write_set
    from ..fsutil import write_json
    from ..progress import Steps
    from ..toolchains.rss import peak_rss_mb, reset_peak
    reset_peak()
    from .episode import simulate

    t0 = time.time()
    recorders = {}
    for m, stage in policy.stages.items():
        keep = chosen_calls(m, STAGES[m].calls_per_plan(policy.preset), samples, seed)
        recorders[m] = stage.runner = RecordingRunner(stage.runner, keep)
    done, per_task = 0, math.ceil(samples / len(tasks))
    steps = Steps(f"calibrate {suite}: episode", math.ceil(samples / per_task), log)
    played = []
    for task, trial in episodes(tasks):
        if done >= samples:
            break
        before = len(policy.timings)
        r = simulate(policy, suite, task, trial, min(per_task, samples - done) * policy.n_action_steps, config_dir,
                     seed=seed, frames=False, progress=False)
        planned = len(policy.timings) - before
        done += planned
        played.append({"task": task, "trial": trial, "chunks": planned, "language": r["task"]})
        steps.done(f"task {task} trial {trial}: {planned} chunk(s)")
    files = {}
    for m, rec in recorders.items():
        path = Path(out_dir) / f"{m}.npz"
        files[m] = {"file": path.name, "samples": len(rec.samples), "calls": rec.calls,
                    "inputs": write_set(path, rec.samples)}
        policy.stages[m].runner = rec.runner
    info = {"suite": suite, "tasks": tasks, "samples": samples, "seed": seed, "episodes": played, "models": files,
            "seconds": round(time.time() - t0, 2), "peak_rss_mb": peak_rss_mb(),
            "recorded_with": "fp32 reference runtime (onnxruntime CPU)"}
    write_json(Path(out_dir) / "calibration.json", info)
    return info


def calibrate_task(spec: CalibrateSpec):
    """The `calibrate` action."""
    from doit.exceptions import TaskFailed

    from ..runtime.artifacts import load_policy
    from .libero_env import LiberoError
    log.info("calibrate %s: %d samples per graph from the fp32 reference policy in %s tasks %s ...", spec.suite,
             spec.samples, spec.suite, list(spec.tasks))
    policy = load_policy(spec.policy, "reference")
    try:
        info = record(policy, spec.suite, list(spec.tasks), spec.samples, spec.seed, spec.config_dir, spec.out_dir)
    except LiberoError as exc:
        return TaskFailed(f"calibrate: {exc}")
    log.info("calibrate %s: %d samples per graph in %.1f s (%d episodes)", spec.suite, spec.samples, info["seconds"],
             len(info["episodes"]))
    return True
