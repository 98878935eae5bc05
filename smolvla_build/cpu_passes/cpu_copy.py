"""The reference runtime's CPU copy of a preprocessed model: onnxruntime's fused CPU kernels where a
pattern matches, proven against the unfused model before it is used.

The HTP graphs never see these ops (com.microsoft domain); the copy only changes how the fp32 CPU
runtime computes the same function."""

from __future__ import annotations

import collections
import dataclasses
import gc
import time

import numpy as np
import onnx

from .attention import fuse_attention_to_multihead
from ..passes.equivalence import relative_error, seeded_inputs, session
from .gelu import fuse_tanh_gelu

CPU_FUSIONS = {"MultiHeadAttention": fuse_attention_to_multihead, "FastGelu": fuse_tanh_gelu}


@dataclasses.dataclass
class CpuCopy:
    model: onnx.ModelProto | None      # None: no fusion matched, or the check failed (run the unfused model)
    report: dict


def _ops(model: onnx.ModelProto) -> collections.Counter:
    return collections.Counter(n.op_type for n in model.graph.node)


def check_inputs(sess, seed: int) -> dict[str, np.ndarray]:
    """The preprocess equivalence inputs, with camera frames in the vision encoder's [-1, 1] range."""
    from ..seeded_inputs import image_like
    feeds = seeded_inputs(sess, seed)
    if "pixel_values" in feeds:
        feeds["pixel_values"] = image_like(seed, feeds["pixel_values"].shape[-1])
    return feeds


def compare_models(unfused: onnx.ModelProto, fused: onnx.ModelProto, seed: int, repeats: int = 3) -> dict:
    """Both models on the same seeded inputs, one session at a time (the memory of one model):
    relative error per output (max |a - b| / max |a|) and the median seconds per call."""
    results, seconds = [], []
    for model in (unfused, fused):
        sess = session(model)
        feeds = check_inputs(sess, seed)
        names = [o.name for o in sess.get_outputs()]
        results.append(dict(zip(names, sess.run(names, feeds))))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            sess.run(names, feeds)
            times.append(time.perf_counter() - t0)
        seconds.append(float(np.median(times)))
        del sess
        gc.collect()
    ref, got = results
    return {"relative_error": {k: relative_error(ref[k], got[k]) for k in ref},
            "seconds_per_call": {"unfused": seconds[0], "fused": seconds[1]}}


def cpu_copy(model: onnx.ModelProto, max_relative_error: float, seed: int = 0) -> CpuCopy:
    """`model` with every fusion of CPU_FUSIONS applied, if any matched and the fused model's
    outputs stay within `max_relative_error` of the unfused model's."""
    before = _ops(model)
    fused = model
    for fuse in CPU_FUSIONS.values():
        fused = fuse(fused)
        gc.collect()
    after = _ops(fused)
    counts = {op: after.get(op, 0) - before.get(op, 0) for op in CPU_FUSIONS}
    report = {"fusions": counts, "ops_before": sum(before.values()), "ops_after": sum(after.values()),
              "max_relative_error": max_relative_error}
    if not any(counts.values()):
        return CpuCopy(None, dict(report, uses="unfused", reason="no fusion pattern matched"))
    report.update(compare_models(model, fused, seed))
    worst = max(report["relative_error"].values())
    if not worst <= max_relative_error:
        return CpuCopy(None, dict(report, uses="unfused",
                                  reason=f"fused copy's relative error {worst:.2e} > max_relative_error {max_relative_error:.0e}"))
    return CpuCopy(fused, dict(report, uses="fused"))
