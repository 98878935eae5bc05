"""A stage = its runner (reference or HTP) + the CPU side its preprocessing moved out of the graph.

The preprocess sidecar (`<model>.io.json`) holds the stage's declaration (`stage`: its inputs and
outputs as the caller feeds them, with shapes and dtypes) and says which graph inputs are computed
on the CPU: an embedding-table lookup (`lookup`, `ids_input`) or a small CPU sub-model (`cpu_model`,
`inputs`). A StageRunner takes the stage's natural inputs (token ids, timestep, 0/1 masks in any
dtype) and feeds the graph what it declares.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .feeds import cast_feeds
from .files import load_npy
from .model import euler_rollout
from .runners import ReferenceRunner, Runner


def load_sidecar(path: str | Path) -> dict:
    from .files import ModelFileError, require_file
    path = Path(path)
    require_file(path, "a stage's I/O sidecar")
    try:
        sidecar = json.loads(path.read_text())
    except ValueError as e:
        raise ModelFileError(f"{path}: not valid JSON ({e})") from None
    if "stage" not in sidecar:
        raise ModelFileError(f"{path}: no stage declaration (`stage`): written by an older smolvla-build; rebuild "
                             "(doit) or rebundle (doit bundle)")
    return sidecar


def declared_input_shapes(sidecar: str | Path) -> dict[str, list[int]]:
    """name -> shape of a stage's inputs as its declaration (in the sidecar) gives them."""
    return {name: list(t["shape"]) for name, t in load_sidecar(sidecar)["stage"]["inputs"].items()}


class StageRunner:
    def __init__(self, runner: Runner, sidecar: str | Path):
        self.runner = runner
        sidecar = Path(sidecar)
        self.changes = load_sidecar(sidecar)
        self.declared = self.changes["stage"]
        base = sidecar.parent
        self._tables: dict[str, np.ndarray] = {}
        self._cpu: dict[str, ReferenceRunner] = {}          # one session per CPU sub-model file
        for name, info in self.changes["added_inputs"].items():
            if "lookup" in info:
                self._tables[name] = load_npy(base / info["lookup"], mmap_mode="r")
            elif "cpu_model" in info and info["cpu_model"] not in self._cpu:
                self._cpu[info["cpu_model"]] = ReferenceRunner(base / info["cpu_model"])

    @property
    def name(self) -> str:
        return self.runner.name

    @property
    def inference_times(self) -> list[float]:
        return self.runner.inference_times

    def input_shape(self, name: str) -> list[int]:
        """The declared shape of the stage's input `name`, as the caller feeds it."""
        return list(self.declared["inputs"][name]["shape"])

    def activate(self):
        self.runner.activate()
        for r in self._cpu.values():
            r.activate()
        return self

    def infer(self, feeds: dict, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """The stage's outputs (or the graph's `outputs`) for its natural inputs."""
        f = dict(feeds)
        wanted: dict[str, list[str]] = {}
        for name, info in self.changes["added_inputs"].items():
            if name in self._tables:
                f[name] = np.asarray(self._tables[name][np.asarray(f[info["ids_input"]])], dtype=np.float32)
            else:
                wanted.setdefault(info["cpu_model"], []).append(name)
        for file, names in wanted.items():       # one run per CPU sub-model for all the inputs it makes
            cpu = self._cpu[file]
            f.update(cpu.infer(cast_feeds(cpu, {k: f[k] for k in cpu.input_names}), outputs=names))
        return self.runner.infer(cast_feeds(self.runner, {k: f[k] for k in self.runner.input_names}), outputs)


def rollout(head: StageRunner, base: dict, noise, num_steps: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The flow-matching rollout of an action-head stage from `noise` (smolvla_runtime.model's Euler
    loop), `base` holding its other inputs (kv, prefix_pad_mask): (the final chunk, each step's
    velocity)."""
    velocities = []

    def velocity(x, t):
        v = head.infer(dict(base, x_t=x, timestep=np.array([t], np.float32)))["v_t"]
        velocities.append(v)
        return v
    return euler_rollout(velocity, np.asarray(noise, np.float32), num_steps), velocities


def rollout_from_feeds(head: StageRunner, feeds: dict, num_steps: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """`rollout` from one recorded call's feeds: their x_t is the noise, the rest but the timestep
    (which the rollout sets at each step) the per-plan inputs."""
    base = {k: v for k, v in feeds.items() if k not in ("x_t", "timestep")}
    return rollout(head, base, feeds["x_t"], num_steps)
