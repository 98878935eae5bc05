"""The policy at run time: one control step over the three stages, and action chunking."""

from __future__ import annotations

import collections
import json
import logging
import platform
import time
from pathlib import Path

import numpy as np

from .contexts import htp_runner
from .preprocessing import Normalizer, Tokenizer, camera_to_pixels
from .runners import ReferenceRunner
from .stage import StageRunner

log = logging.getLogger("smolvla_build.policy")
N_IMAGE_TOKENS = 128        # 2 cameras x 64 tokens


def has_device_htp() -> bool:
    """A real Hexagon NPU is reachable only on Windows ARM64 (Snapdragon X Elite)."""
    return platform.system() == "Windows" and platform.machine().upper() in ("ARM64", "AARCH64")


def resolve_runtime(kind: str) -> str:
    if kind != "auto":
        return kind
    if has_device_htp():
        log.info("runtime auto: ort-qnn (Windows ARM64 with the Hexagon NPU)")
        return "ort-qnn"
    log.info("runtime auto: reference (onnxruntime CPU, fp32): no Hexagon NPU on this %s host, and HTP "
             "emulation is for numeric checks, far too slow for episodes", platform.machine())
    return "reference"


def runtime_precisions(layout, wanted: str) -> dict[str, str]:
    """Per model, the precision to run: evaluation.precision, or its fp32 fallback from the report."""
    report = layout.report_json
    if report.is_file():
        return {m: v["precision"] for m, v in json.loads(report.read_text())["runtime_precision"].items()}
    return {}


def stage_runners(layout, runtime: str, soc: dict, precisions: dict, wanted: str, models) -> dict[str, StageRunner]:
    chosen = runtime_precisions(layout, wanted)
    out = {}
    for m in models:
        if runtime == "reference":
            runner = ReferenceRunner(layout.preprocessed(m))
        elif runtime in ("ort-qnn", "qnn-net-run"):
            p = chosen.get(m, wanted)
            runner = htp_runner(layout, m, p, soc, precisions[p], runtime)
        else:
            raise ValueError(f"unknown runtime {runtime!r} (reference, ort-qnn, qnn-net-run)")
        out[m] = StageRunner(runner, layout.io_sidecar(m))
    return out


class Policy:
    """SmolVLA's control step: 2 camera frames + 8-D state + task -> a chunk of 7-D actions.

    Stages are persistent runners, loaded once. `select_action` executes `n_action_steps` actions
    of a chunk before planning the next (LeRobot's action queue).
    """

    def __init__(self, stages: dict[str, StageRunner], tokenizer: Tokenizer, normalizer: Normalizer,
                 n_action_steps: int = 10, num_steps: int = 10, chunk_size: int = 50, max_action_dim: int = 32,
                 seed: int = 0):
        self.stages = stages
        self.tokenizer = tokenizer
        self.normalizer = normalizer
        self.n_action_steps = n_action_steps
        self.num_steps = num_steps
        self.chunk_shape = (1, chunk_size, max_action_dim)
        self.seed = seed
        self.timings: list[dict] = []
        self.reset()

    @classmethod
    def from_artifacts(cls, layout, runtime: str, soc: dict, precisions: dict, wanted: str, n_action_steps: int,
                       seed: int = 0) -> "Policy":
        export = layout.export_dir
        stages = stage_runners(layout, runtime, soc, precisions, wanted, ("vision_encoder", "llm_backbone", "action_head"))
        for s in stages.values():
            s.activate()
        return cls(stages, Tokenizer(export / "tokenizer.json"),
                   Normalizer(json.loads((export / "normalization.json").read_text())), n_action_steps, seed=seed)

    def reset(self):
        self.queue: collections.deque = collections.deque()
        self.rng = np.random.default_rng(self.seed)

    def predict_chunk(self, images: list[np.ndarray], state: np.ndarray, task: str, noise=None) -> np.ndarray:
        """Unnormalized actions [chunk_size, action_dim] for one observation."""
        t = {"start": time.perf_counter()}
        ve, llm, head = self.stages["vision_encoder"], self.stages["llm_backbone"], self.stages["action_head"]
        embs = [ve.infer({"pixel_values": camera_to_pixels(img)})["image_embeddings"] for img in images]
        t["vision"] = time.perf_counter()
        tokens, mask = self.tokenizer(task)
        kv = llm.infer({"img_emb0": embs[0], "img_emb1": embs[1], "lang_tokens": tokens, "lang_mask": mask,
                        "state": self.normalizer.state(state)})["kv"]
        t["llm"] = time.perf_counter()
        prefix_pad = np.concatenate([np.ones((1, N_IMAGE_TOKENS), np.float32), mask, np.ones((1, 1), np.float32)], 1)
        x = self.rng.standard_normal(self.chunk_shape).astype(np.float32) if noise is None else noise
        dt = -1.0 / self.num_steps
        for step in range(self.num_steps):
            timestep = np.array([1.0 + step * dt], np.float32)
            v = head.infer({"x_t": x, "timestep": timestep, "kv": kv, "prefix_pad_mask": prefix_pad})["v_t"]
            x = (x + dt * v).astype(np.float32)
        t["action_head"] = time.perf_counter()
        self.timings.append({"vision_s": t["vision"] - t["start"], "llm_s": t["llm"] - t["vision"],
                             "action_head_s": t["action_head"] - t["llm"], "total_s": t["action_head"] - t["start"],
                             "session_run_s": {k: s.inference_times[-(2 if k == "vision_encoder" else
                                                                      10 if k == "action_head" else 1):]
                                               for k, s in self.stages.items()}})
        return self.normalizer.action(x[0])

    def select_action(self, images: list[np.ndarray], state: np.ndarray, task: str) -> np.ndarray:
        if not self.queue:
            chunk = self.predict_chunk(images, state, task)
            self.queue.extend(chunk[: self.n_action_steps])
        return self.queue.popleft()
