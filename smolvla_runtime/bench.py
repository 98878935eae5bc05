"""`python -m smolvla_runtime bench BUNDLE --runs N`: how fast the policy runs here.

Per stage, the seconds of one call on validation's recorded inputs; for the whole policy, the
control step (`Policy.predict_chunk` on a synthetic observation: both cameras, the LLM, the
flow-matching rollout). Median and 95th percentile over N runs, one warm-up run left out; set
against the deployed card's 8-10 s per step. docs/bundle.md, "Proving a device".
"""

from __future__ import annotations

import time

CARD_SECONDS_PER_STEP = (8.0, 10.0)      # the card's control step on the laptop (the brief's starting point)


def synthetic_observation(seed: int, preset):
    """A LIBERO-like observation: one 256x256 frame per camera, the robot's state, a task."""
    import numpy as np
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(preset.n_cameras)]
    state = rng.normal(0, 0.5, preset.state_dim).astype(np.float32)
    return images, state, "pick up the black bowl between the plate and the ramekin and place it on the plate"


def _stats(times: list[float]) -> dict:
    import numpy as np
    t = np.asarray(times, np.float64)
    return {"median_s": float(np.median(t)), "p95_s": float(np.percentile(t, 95)), "runs": int(t.size)}


def _timed(fn, runs: int) -> dict:
    fn()                                  # warm-up: session set-up, caches, clocks
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return _stats(times)


def bench_bundle(bundle_dir, runtime: str = "auto", runs: int = 10, soc_model: int | None = None, seed: int = 0) -> dict:
    import numpy as np

    from .bundle import Bundle
    from .files import load_npz
    from .model import MODELS, STAGES
    from .policy import Policy
    if runs < 1:
        raise ValueError(f"--runs {runs}: expected at least 1")
    policy = Policy.load(bundle_dir, runtime=runtime, soc_model=soc_model, seed=seed)     # checks the bundle first
    b, p = Bundle(bundle_dir), policy.preset
    stages = {}
    for m in MODELS:
        arrays = load_npz(b.path(b.models[m]["validation"]["arrays"]))
        feeds = {k[len("in/"):]: a for k, a in arrays.items() if k.startswith("in/")}
        stage = policy.stages[m]
        stages[m] = dict(_timed(lambda stage=stage, feeds=feeds: stage.infer(feeds), runs),
                         calls_per_step=STAGES[m].calls_per_plan(p))
    images, state, task = synthetic_observation(seed, p)
    noise = np.random.default_rng(seed + 1).standard_normal(p.chunk_shape).astype(np.float32)
    step = _timed(lambda: policy.predict_chunk(images, state, task, noise=noise), runs)
    low, high = CARD_SECONDS_PER_STEP
    line = (f"control step {step['median_s']:.3f} s (median of {runs}, p95 {step['p95_s']:.3f} s) on the {policy.runtime} "
            f"runtime, against the card's {low:.0f}-{high:.0f} s per step: {low / step['median_s']:.1f}-"
            f"{high / step['median_s']:.1f} times faster" if step["median_s"] < low else
            f"control step {step['median_s']:.3f} s (median of {runs}, p95 {step['p95_s']:.3f} s) on the {policy.runtime} "
            f"runtime, not faster than the card's {low:.0f}-{high:.0f} s per step")
    return {"bundle": str(bundle_dir), "runtime": policy.runtime, "runs": runs, "stages": stages, "control_step": step,
            "card_seconds_per_step": list(CARD_SECONDS_PER_STEP), "summary": line}
