"""Prove a rewrite: run the original and the rewritten model in onnxruntime on seeded inputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from smolvla_runtime.feeds import ORT_DTYPES


def session(model: onnx.ModelProto | str, threads: int = 0) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    src = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(src, sess_options=so, providers=["CPUExecutionProvider"])


def seeded_inputs(sess: ort.InferenceSession, seed: int = 0, vocab: int | None = None) -> dict[str, np.ndarray]:
    """Realistic seeded inputs from the graph signature: masks (bool, or names containing 'mask')
    get real right padding (first ~60% valid, never all ones), ids are in range, floats ~ N(0,1)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        dt = ORT_DTYPES.get(i.type, np.float32)
        if dt == np.bool_ or "mask" in i.name:
            m = np.zeros(shape, dtype=np.float32)
            flat = m.reshape(-1, shape[-1]) if shape else m.reshape(1, 1)
            n = shape[-1] if shape else 1
            flat[:, : max(1, int(n * 0.6))] = 1
            feeds[i.name] = m.astype(dt)
        elif np.issubdtype(dt, np.integer):
            feeds[i.name] = rng.integers(0, vocab or 16, size=shape).astype(dt)
        else:
            feeds[i.name] = rng.standard_normal(shape).astype(dt)
    return feeds


def relative_error(ref: np.ndarray, got: np.ndarray) -> float:
    ref = ref.astype(np.float64)
    got = got.astype(np.float64)
    scale = max(np.abs(ref).max(initial=0.0), 1e-12)
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(got))):
        same = np.array_equal(np.isfinite(ref), np.isfinite(got))
        if not same:
            return float("inf")
        ref, got = ref[np.isfinite(ref)], got[np.isfinite(got)]
    return float(np.abs(ref - got).max(initial=0.0) / scale)
