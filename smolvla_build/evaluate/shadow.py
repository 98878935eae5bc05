"""An fp32 shadow beside the acting policy, for closed-loop divergence (evaluate/divergence.py)."""

from __future__ import annotations

import collections


class ShadowedPolicy:
    """`acting` runs the episode exactly as it would alone (the same noise draws); `shadow` plans
    each chunk on the same observation and noise, and the max abs difference of each executed action
    is kept in `diffs` (one per control step the episode ran)."""

    def __init__(self, acting, shadow):
        self.acting, self.shadow = acting, shadow
        self.diffs: list[float] = []
        self.pending: collections.deque = collections.deque()

    @property
    def seed(self) -> int:
        return self.acting.seed

    @seed.setter
    def seed(self, value: int) -> None:
        self.acting.seed = self.shadow.seed = value

    @property
    def timings(self) -> list:
        return self.acting.timings

    @property
    def needs_observation(self) -> bool:
        return self.acting.needs_observation

    def reset(self) -> None:
        self.acting.reset()
        self.shadow.reset()
        self.diffs, self.pending = [], collections.deque()

    def select_action(self, images, state, task: str):
        import numpy as np
        p = self.acting
        if not p.queue:
            noise = p.rng.standard_normal(p.chunk_shape).astype(np.float32)      # predict_chunk's own draw
            chunk = p.predict_chunk(images, state, task, noise=noise)[: p.n_action_steps]
            ref = self.shadow.predict_chunk(images, state, task, noise=noise)[: p.n_action_steps]
            self.pending = collections.deque(np.abs(np.asarray(chunk, np.float64) - np.asarray(ref, np.float64)).max(axis=1))
            p.queue.extend(chunk)
        self.diffs.append(float(self.pending.popleft()))     # the executed action's: an episode may end mid-chunk
        return p.queue.popleft()
