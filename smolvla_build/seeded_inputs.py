"""Seeded inputs that look like real ones, for the checks that run a stage on made-up data
(validation, the reference runtime's fused-copy check): a smooth image in [-1, 1], real rows of the
embedding table behind a padded language mask, a normalized state of the robot's size."""

from __future__ import annotations

import numpy as np
from smolvla_runtime.model import LLM_BACKBONE, Preset, camera_inputs, stage_io

N_VALID_TOKENS = 15            # of the tokenizer's slots, the rest padded (a LIBERO task is ~15 tokens)


def image_like(seed: int, size: int) -> np.ndarray:
    """A smooth random image in [-1, 1]: a coarse grid upsampled, plus a little noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1, 1, size=(3, 8, 8))
    idx = np.linspace(0, 7, size)
    lo = np.floor(idx).astype(int)
    hi = np.minimum(lo + 1, 7)
    w = idx - lo
    rows = coarse[:, lo, :] * (1 - w)[None, :, None] + coarse[:, hi, :] * w[None, :, None]
    img = rows[:, :, lo] * (1 - w)[None, None, :] + rows[:, :, hi] * w[None, None, :]
    img += rng.normal(0, 0.05, size=img.shape)
    return np.clip(img, -1, 1)[None].astype(np.float32)


def llm_feeds(p: Preset, vocab_size: int, seed: int) -> dict[str, np.ndarray]:
    """The LLM stage's inputs as its declaration gives them: N(0, 1) image embeddings (validation
    replaces them with the reference vision encoder's), real token ids (looked up on the CPU), a
    padded language mask (N_VALID_TOKENS valid) and a state of the robot's `state_dim` values,
    zero-padded."""
    inputs = {k: t["shape"] for k, t in stage_io(p)[LLM_BACKBONE]["inputs"].items()}
    rng = np.random.default_rng(seed + 1)
    n_lang = inputs["lang_mask"][1]
    mask = np.zeros((1, n_lang), dtype=np.float32)
    mask[:, :N_VALID_TOKENS] = 1
    state = np.zeros(inputs["state"], dtype=np.float32)
    state[:, :p.state_dim] = rng.normal(0, 1, size=p.state_dim)
    feeds = {name: rng.normal(0, 1, size=inputs[name]).astype(np.float32) for name in camera_inputs(p)}
    return dict(feeds, lang_tokens=rng.integers(0, vocab_size, size=(1, n_lang)).astype(np.int64), lang_mask=mask,
                state=state)
