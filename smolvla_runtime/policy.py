"""The policy at run time: one control step over the three stages, and action chunking.

Needs numpy, onnxruntime (onnxruntime-qnn for the NPU) and tokenizers only: the same code runs in
the project (smolvla_build.runtime.policy adds loading from a build's artifacts) and in a device
bundle (`Policy.load(bundle_dir)`)."""

from __future__ import annotations

import collections
import json
import logging
import time

import numpy as np

from . import MODELS
from .host import resolve_runtime
from .preprocessing import Normalizer, Tokenizer, camera_to_pixels
from .stage import StageRunner

log = logging.getLogger("smolvla_runtime.policy")


class Policy:
    """SmolVLA's control step: 2 camera frames + 8-D state + task -> a chunk of 7-D actions.

    Stages are persistent runners, loaded once. `select_action` executes `n_action_steps` actions
    of a chunk before planning the next (LeRobot's action queue).
    """

    def __init__(self, stages: dict[str, StageRunner], tokenizer: Tokenizer, normalizer: Normalizer,
                 n_action_steps: int = 10, num_steps: int = 10, seed: int = 0):
        self.stages = stages
        self.tokenizer = tokenizer
        self.normalizer = normalizer
        self.n_action_steps = n_action_steps
        self.num_steps = num_steps
        # shapes as the graphs declare them: the action chunk [1, chunk, action dim] the head integrates,
        # and the image tokens (both cameras) ahead of the language tokens in the prefix
        self.chunk_shape = tuple(stages["action_head"].input_shape("x_t"))
        self.n_image_tokens = sum(stages["llm_backbone"].input_shape(n)[1] for n in ("img_emb0", "img_emb1"))
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
        runtime = resolve_runtime(runtime, int(b.manifest["soc"]["htp_arch"]))
        stages = {m: StageRunner(b.runner(m, runtime), b.path(b.models[m]["sidecar"])) for m in MODELS}
        for s in stages.values():
            s.activate()
        m = b.manifest
        return cls(stages, Tokenizer(b.path(m["tokenizer"])), Normalizer(json.loads(b.path(m["normalization"]).read_text())),
                   m["n_action_steps"], seed=seed)

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
        prefix_pad = np.concatenate([np.ones((1, self.n_image_tokens), np.float32), mask, np.ones((1, 1), np.float32)], 1)
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
