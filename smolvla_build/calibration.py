"""Calibration sets for the integer precisions: what each HTP graph really sees in LIBERO.

The fp32 reference policy acts in episodes of the configured suite (LeRobot's protocol, the
suite's init states); every graph call's inputs are recorded as the graph receives them (after the
CPU side: embedding rows, sinusoid tables, int32 masks), so the quantizer calibrates exactly the
tensors the context will be fed. One control step = 2 vision calls, 1 LLM call, 10 action-head
calls (x_t and t along the flow-matching rollout). N samples per graph are kept, chosen with a
seeded generator among all calls of N chunks; the set is written once per (suite, N) and shared by
every quantized precision.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from .fsutil import save_npz, write_json

log = logging.getLogger("smolvla_build.calibration")
CALLS_PER_CHUNK = {"vision_encoder": 2, "llm_backbone": 1, "action_head": 10}


class RecordingRunner:
    """Wraps a runner; keeps a copy of the graph feeds of the calls whose index is in `keep`."""

    def __init__(self, runner, keep: set[int]):
        self.runner, self.keep = runner, set(keep)
        self.calls = 0
        self.samples: list[dict[str, np.ndarray]] = []

    def infer(self, feeds, outputs=None):
        if self.calls in self.keep:
            self.samples.append({k: np.array(v, copy=True) for k, v in feeds.items()})
        self.calls += 1
        return self.runner.infer(feeds, outputs)

    def __getattr__(self, name):
        return getattr(self.runner, name)


def chosen_calls(model: str, samples: int, seed: int) -> set[int]:
    """Indices of the calls kept for `model` among the calls of `samples` chunks (seeded)."""
    total = CALLS_PER_CHUNK[model] * samples
    rng = np.random.default_rng([seed, list(CALLS_PER_CHUNK).index(model)])
    return set(int(i) for i in rng.choice(total, size=samples, replace=False))


def episodes(tasks: list[int]):
    """(task, trial) pairs: trial 0 of every task, then trial 1, ... (an episode that succeeds early
    plans fewer chunks than asked; the next trials make up for it)."""
    trial = 0
    while True:
        for t in tasks:
            yield t, trial
        trial += 1


def record(policy, suite: str, tasks: list[int], samples: int, seed: int, config_dir: Path,
           out_dir: Path) -> dict:
    """Run the reference `policy` in LIBERO until `samples` chunks are planned; write
    `<model>.npz` (each graph input stacked over the samples) and calibration.json into out_dir."""
    import time

    from .evaluate.episode import simulate
    from .progress import Steps
    from .toolchains.rss import peak_rss_mb

    t0 = time.time()
    recorders = {}
    for m, stage in policy.stages.items():
        recorders[m] = stage.runner = RecordingRunner(stage.runner, chosen_calls(m, samples, seed))
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
        stacked = {k: np.stack([s[k] for s in rec.samples]) for k in rec.samples[0]}
        path = out_dir / f"{m}.npz"
        save_npz(path, stacked)
        files[m] = {"file": path.name, "samples": len(rec.samples), "calls": rec.calls,
                    "inputs": {k: list(v.shape[1:]) for k, v in stacked.items()}}
        stage = policy.stages[m]
        stage.runner = rec.runner
    info = {"suite": suite, "tasks": tasks, "samples": samples, "seed": seed, "episodes": played, "models": files,
            "seconds": round(time.time() - t0, 2), "peak_rss_mb": peak_rss_mb(),
            "recorded_with": "fp32 reference runtime (onnxruntime CPU)"}
    write_json(out_dir / "calibration.json", info)
    return info


class CalibrationSet:
    """The recorded graph inputs of one model: `len()`, `[i]` -> {input name: array}, and
    `reader()` for onnxruntime's quantizer (a CalibrationDataReader)."""

    def __init__(self, npz: str | Path):
        from .model_files import load_npz
        self.path = Path(npz)
        self.arrays = load_npz(self.path)

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {k: v[i] for k, v in self.arrays.items()}

    def reader(self, input_names: list[str]):
        from onnxruntime.quantization import CalibrationDataReader
        missing = sorted(set(input_names) - set(self.arrays))
        if missing:
            raise ValueError(f"{self.path}: no recorded input for {missing} (it holds {sorted(self.arrays)}): "
                             "rebuild it with `doit calibrate`")
        data = self

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.i = 0

            def get_next(self):
                if self.i >= len(data):
                    return None
                self.i += 1
                return {k: data[self.i - 1][k] for k in input_names}

            def rewind(self):
                self.i = 0
        return Reader()

    def write_raw(self, folder: Path, inputs: list[tuple[str, str, list[int]]]) -> list[list[tuple[str, str]]]:
        """The set as .raw files for the SDK converter's quantizer (toolchains.qairt.qnn_io.write_raw_inputs;
        all float32, its default reading) and the lines of its input list, one per sample."""
        from .toolchains.qairt.qnn_io import write_raw_inputs
        folder.mkdir(parents=True, exist_ok=True)
        return [write_raw_inputs(self[i], inputs, folder, prefix=f"{i:04d}_", all_float32=True)[0]
                for i in range(len(self))]


def calibrate_task(kw: dict):
    """The `calibrate` action. kw: pipeline_path, samples (and the settings of its key)."""
    from doit.exceptions import TaskFailed

    from .config import load_pipeline
    from .evaluate.libero_env import LiberoError
    from .layout import Layout
    from .runtime.policy import Policy
    pipeline_path, samples = kw["pipeline_path"], kw["samples"]
    pipe = load_pipeline(pipeline_path)
    layout = Layout(pipe)
    cal, ev = pipe.section("calibration"), pipe.section("evaluation")
    tasks = list(range(10)) if cal["tasks"] == "all" else list(cal["tasks"])
    suite = pipe.calibration_suite()
    log.info("calibrate %s: %d samples per graph from the fp32 reference policy in %s tasks %s ...", suite, samples,
             suite, tasks)
    policy = Policy.from_artifacts(layout, "reference", pipe.soc, pipe.precisions, pipe.requested_precisions(),
                                   ev["n_action_steps"], seed=cal["seed"])
    try:
        info = record(policy, suite, tasks, samples, cal["seed"], layout.root / "libero-config",
                      layout.calibration_dir(samples))
    except LiberoError as exc:
        return TaskFailed(f"calibrate: {exc}")
    log.info("calibrate %s: %d samples per graph in %.1f s (%d episodes)", suite, samples, info["seconds"],
             len(info["episodes"]))
    return True
