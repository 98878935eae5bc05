"""The policy at run time: one control step over the three stages, and action chunking.

Needs numpy, onnxruntime (onnxruntime-qnn for the NPU) and tokenizers only: the same code runs on a
build's artifacts (smolvla_build.runtime.artifacts.load_policy) and in a device bundle
(`Policy.load(bundle_dir)`)."""

from __future__ import annotations

import collections
import json
import logging
import time

import numpy as np

from .host import resolve_runtime
from .model import MODELS, RANDOM_WEIGHTS_WARNING, STAGES, Preset, camera_inputs, prefix_pad_mask
from .preprocessing import Normalizer, Tokenizer, camera_to_pixels
from .stage import StageRunner, rollout

log = logging.getLogger("smolvla_runtime.policy")


class Policy:
    """SmolVLA's control step: the preset's camera frames + the robot's state + the task -> a chunk
    of actions (LIBERO: 2 cameras, 8-D state, 7-D actions).

    Stages are persistent runners, loaded once. `select_action` executes `n_action_steps` actions
    of a chunk before planning the next (LeRobot's action queue).
    """

    def __init__(self, stages: dict[str, StageRunner], tokenizer: Tokenizer, normalizer: Normalizer, preset: Preset,
                 n_action_steps: int = 10, seed: int = 0):
        self.stages = stages
        self.tokenizer = tokenizer
        self.normalizer = normalizer
        self.preset = preset
        self.n_action_steps = n_action_steps
        self.chunk_shape = preset.chunk_shape
        self.seed = seed
        self.timings: list[dict] = []
        self.reset()

    @classmethod
    def load(cls, bundle_dir, runtime: str = "auto", soc_model: int | None = None, seed: int = 0) -> "Policy":
        """The policy of a device bundle (`doit bundle`), its manifest's hashes and versions checked
        first; `runtime` auto = ort-qnn where a Hexagon NPU is reachable, else reference (fp32 CPU).
        A bundle built for another SoC than `soc_model` (if given) is refused."""
        from .bundle import Bundle
        b = Bundle(bundle_dir)
        b.verify(soc_model=soc_model)
        runtime = resolve_runtime(runtime, b.soc.htp_arch)
        stages = {m: StageRunner(b.runner(m, runtime), b.path(b.models[m]["sidecar"])) for m in MODELS}
        for s in stages.values():
            s.activate()
        m, preset = b.manifest, b.preset
        if m.get("source", {}).get("weights") == "random":
            log.warning(RANDOM_WEIGHTS_WARNING)
        return cls(stages, Tokenizer(b.path(m["tokenizer"]), preset.tokenizer_max_length),
                   Normalizer(json.loads(b.path(m["normalization"]).read_text())), preset, m["n_action_steps"], seed=seed)

    def reset(self):
        self.queue: collections.deque = collections.deque()
        self.rng = np.random.default_rng(self.seed)

    def predict_chunk(self, images: list[np.ndarray], state: np.ndarray, task: str, noise=None) -> np.ndarray:
        """Unnormalized actions [chunk_size, action_dim] for one observation (one frame per camera)."""
        p = self.preset
        if len(images) != p.n_cameras:
            raise ValueError(f"the {p.name} policy takes {p.n_cameras} camera frames, got {len(images)}")
        t = {"start": time.perf_counter()}
        ve, llm, head = (self.stages[m] for m in MODELS)
        embs = [ve.infer({"pixel_values": camera_to_pixels(img, p.image_size)})["image_embeddings"] for img in images]
        t["vision"] = time.perf_counter()
        tokens, mask = self.tokenizer(task)
        kv = llm.infer({**dict(zip(camera_inputs(p), embs)), "lang_tokens": tokens, "lang_mask": mask,
                        "state": self.normalizer.state(state, p.max_state_dim)})["kv"]
        t["llm"] = time.perf_counter()
        prefix_pad = prefix_pad_mask(mask, p.n_image_tokens)
        noise = self.rng.standard_normal(p.chunk_shape).astype(np.float32) if noise is None else noise
        x, _ = rollout(head, {"kv": kv, "prefix_pad_mask": prefix_pad}, noise, p.num_steps)
        t["action_head"] = time.perf_counter()
        self.timings.append({"vision_s": t["vision"] - t["start"], "llm_s": t["llm"] - t["vision"],
                             "action_head_s": t["action_head"] - t["llm"], "total_s": t["action_head"] - t["start"],
                             "session_run_s": {m: s.inference_times[-STAGES[m].calls_per_plan(p):]
                                               for m, s in self.stages.items()}})
        return self.normalizer.action(x[0])

    @property
    def runtime(self) -> str:
        """What runs the stages: reference, ort-qnn, qnn-net-run (the runners' name)."""
        return self.stages[MODELS[0]].name

    @property
    def needs_observation(self) -> bool:
        """Whether the next `select_action` plans a chunk and so reads its images and state (else it
        returns the next queued action, and they may be None)."""
        return not self.queue

    def select_action(self, images: list[np.ndarray] | None, state: np.ndarray | None, task: str) -> np.ndarray:
        if not self.queue:
            chunk = self.predict_chunk(images, state, task)
            self.queue.extend(chunk[: self.n_action_steps])
        return self.queue.popleft()
