"""Scenarios 3 and 4: a control step on the reference runtime (full preset), and persistent
sessions against one process per call (the qnn-net-run pattern, emulated on the same engine)."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import run_measured, stats

from smolvla_runtime.model import MODELS
TASK = "pick up the black bowl between the plate and the ramekin and place it on the plate"


def _observation():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(2)], rng.normal(0, 0.3, 8).astype(np.float32)


def timed_steps(policy, reps: int, images, state, task: str, noise) -> tuple[list[float], list[dict]]:
    """One untimed control step, then `reps` timed ones on the same observation and noise: the wall
    seconds of each predict_chunk and the policy's own per-stage timings of each."""
    policy.predict_chunk(images, state, task, noise=noise.copy())          # warm-up
    policy.timings.clear()
    wall = []
    for _ in range(reps):
        t0 = time.perf_counter()
        policy.predict_chunk(images, state, task, noise=noise.copy())
        wall.append(time.perf_counter() - t0)
    return wall, list(policy.timings)


def _timed_steps(policy, reps: int) -> list[dict]:
    images, state = _observation()
    noise = np.random.default_rng(1).standard_normal(policy.chunk_shape).astype(np.float32)
    return timed_steps(policy, reps, images, state, TASK, noise)[1]


def control_step(layout, pipe, reps: int = 5) -> dict:
    """The reference runtime's control step as it runs (the CPU copies of `doit reference`), then
    the same with the unfused preprocessed models in the same run: what the copies change."""
    import os

    from smolvla_build.runtime.artifacts import load_policy
    from smolvla_runtime.runners import ReferenceRunner
    ev = pipe.section("evaluation")
    os.sync()                    # the build's written files are on disk: no writeback during the timing
    policy = load_policy(pipe.policy_source(layout, "reference", precision=ev["precision"], n_action_steps=10))
    rows = _timed_steps(policy, reps)
    for m in MODELS:
        policy.stages[m].runner = ReferenceRunner(layout.preprocessed(m)).activate()
    unfused = _timed_steps(policy, reps)
    bare = [sum(sum(v) for v in r["session_run_s"].values()) for r in rows]
    total = [r["total_s"] for r in rows]
    overhead = [t - b for t, b in zip(total, bare)]
    copies = {m: json.loads(layout.reference_info(m).read_text()) for m in MODELS}
    return {
        "vision_x2_s": stats([r["vision_s"] for r in rows]), "llm_s": stats([r["llm_s"] for r in rows]),
        "action_head_x10_s": stats([r["action_head_s"] for r in rows]), "total_s": stats(total),
        "bare_session_run_s": stats(bare), "overhead_s": stats(overhead),
        "overhead_pct": stats([100 * o / t for o, t in zip(overhead, total)]),
        "unfused": {"vision_x2_s": stats([r["vision_s"] for r in unfused]), "llm_s": stats([r["llm_s"] for r in unfused]),
                    "action_head_x10_s": stats([r["action_head_s"] for r in unfused]),
                    "total_s": stats([r["total_s"] for r in unfused])},
        "cpu_copies": {m: {k: c.get(k) for k in ("uses", "fusions", "relative_error", "reason")} for m, c in copies.items()},
    }


CHILD = r"""
import sys, numpy as np, onnxruntime as ort
model, inp, out = sys.argv[1], sys.argv[2], sys.argv[3]
feeds = dict(np.load(inp))
so = ort.SessionOptions(); so.log_severity_level = 3
s = ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])
np.savez(out, **dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds))))
"""


def _calls(layout, policy) -> list[tuple[str, dict]]:
    """The 13 stage calls of one control step (vision x2, llm x1, action head x10) with the exact
    graph feeds the persistent policy gives its sessions."""
    images, state = _observation()
    recorded: list[tuple[str, dict]] = []
    for name, stage in policy.stages.items():
        runner = stage.runner
        original = runner.infer

        def spy(feeds, outputs=None, _name=name, _orig=original):
            recorded.append((_name, dict(feeds)))
            return _orig(feeds, outputs)
        runner.infer = spy
    policy.predict_chunk(images, state, TASK, noise=np.zeros(policy.chunk_shape, np.float32))
    return recorded


def persistent_vs_process(layout, pipe, reps: int = 5) -> dict:
    from smolvla_build.runtime.artifacts import load_policy
    ev = pipe.section("evaluation")
    policy = load_policy(pipe.policy_source(layout, "reference", precision=ev["precision"], n_action_steps=10))
    calls = _calls(layout, policy)
    sessions = {m: policy.stages[m].runner.session for m in MODELS}
    persistent = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for model, feeds in calls:
            sessions[model].run(None, feeds)
        persistent.append(time.perf_counter() - t0)
    per_process = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = []
        for i, (model, feeds) in enumerate(calls):
            p = tmp / f"in{i}.npz"
            np.savez(p, **feeds)
            inputs.append((model, p))
        for _ in range(reps):
            t0 = time.perf_counter()
            for i, (model, p) in enumerate(inputs):
                run_measured([sys.executable, "-c", CHILD, str(layout.preprocessed(model)), str(p), str(tmp / f"out{i}.npz")])
            per_process.append(time.perf_counter() - t0)
    ratios = [b / a for a, b in zip(persistent, per_process)]
    return {"calls_per_control_step": len(calls), "persistent_s": stats(persistent),
            "process_per_call_s": stats(per_process), "ratio": stats(ratios)}


def htp_emulation(layout, pipe, reps: int = 5) -> dict:
    """Scenario 5: seconds per call of each stage's context binary in HTP emulation (tiny preset)."""
    from smolvla_build.seeded_inputs import image_like, llm_feeds
    from smolvla_runtime.model import prefix_pad_mask
    from smolvla_runtime.runners import OrtQnnRunner
    from smolvla_runtime.stage import StageRunner
    p = pipe.preset
    table = np.load(layout.embed_table, mmap_mode="r")
    lfeeds = llm_feeds(p, table.shape[0], 0)
    feeds = {"vision_encoder": {"pixel_values": image_like(0, p.image_size)}, "llm_backbone": lfeeds}
    out = {}
    for pname, precision in pipe.precisions.items():
        kv = None
        for m in MODELS:
            stage = StageRunner(OrtQnnRunner(layout.context(m, pname), pipe.soc, precision.settings), layout.io_sidecar(m))
            t0 = time.perf_counter()
            stage.activate()
            load = time.perf_counter() - t0
            f = feeds.get(m) or {"x_t": np.zeros(p.chunk_shape, np.float32), "timestep": np.array([0.5], np.float32),
                                 "kv": kv, "prefix_pad_mask": prefix_pad_mask(lfeeds["lang_mask"], p.n_image_tokens)}
            for _ in range(reps):
                res = stage.infer(f)
            if m == "llm_backbone":
                kv = res["kv"]
            out[f"{m}-{pname}"] = {"load_s": load, "call_s": stats(stage.inference_times)}
    return out


def main_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2))
