"""`python -m smolvla_runtime BUNDLE_DIR [--runtime auto|reference|ort-qnn] [--seed N] [--soc-model N]`:
load the bundle (checked), run one synthetic observation (fixed seed: two camera frames, a state, a
LIBERO task) and print the action chunk and the per-stage timings as JSON."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys

import numpy as np


def synthetic_observation(seed: int, preset):
    """A LIBERO-like observation: one 256x256 frame per camera, the robot's state, a task."""
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(preset.n_cameras)]
    state = rng.normal(0, 0.5, preset.state_dim).astype(np.float32)
    return images, state, "pick up the black bowl between the plate and the ramekin and place it on the plate"


@contextlib.contextmanager
def native_stdout_to_stderr():
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    ap = argparse.ArgumentParser(prog="python -m smolvla_runtime", description=__doc__)
    ap.add_argument("bundle")
    ap.add_argument("--runtime", default="auto", choices=["auto", "reference", "ort-qnn"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--soc-model", type=int, help="refuse a bundle compiled for another SoC")
    args = ap.parse_args(argv)
    from .bundle import BundleError
    from .files import ModelFileError
    from .policy import Policy
    with native_stdout_to_stderr():          # the QNN backend prints to fd 1: keep stdout the JSON alone
        try:
            policy = Policy.load(args.bundle, runtime=args.runtime, soc_model=args.soc_model, seed=args.seed)
        except (BundleError, ModelFileError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        images, state, task = synthetic_observation(args.seed, policy.preset)
        noise = np.random.default_rng(args.seed + 1).standard_normal(policy.chunk_shape).astype(np.float32)
        actions = policy.predict_chunk(images, state, task, noise=noise)
    t = policy.timings[-1]
    print(json.dumps({"bundle": args.bundle, "runtime": policy.runtime, "seed": args.seed,
                      "task": task, "actions": np.asarray(actions).round(6).tolist(),
                      "timings_s": {k: round(v, 4) for k, v in t.items() if k != "session_run_s"}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
