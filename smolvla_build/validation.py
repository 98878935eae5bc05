"""Per-stage numeric validation of an HTP build against the fp32 reference.

Inputs are fixed, seeded and look like real ones: an image-like tensor (smooth, in [-1, 1]),
real rows of the embedding table with a padded language mask, a KV cache computed by the
reference LLM stage, x_t ~ N(0, 1) and the 10 flow-matching times. The action head is judged
over the integrated 10-step Euler rollout with the same noise on both sides, because per-step
errors compound. Besides the outputs, the fp32 reference's intermediate activation ranges are
measured: a tensor beyond the fp16 range (an overflowed Pow inside a decomposed RMSNorm) can give
finite but wrong outputs.
"""

from __future__ import annotations

import numpy as np
import onnx

from .compare import FP16_MAX, saturated

N_VALID_TOKENS = 15
NUM_STEPS = 10


def image_like(seed: int, size: int = 512) -> np.ndarray:
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


def llm_feeds(vocab_size: int, hidden: int, seed: int) -> dict:
    """Synthetic image embeddings (validation replaces them with `image_embeddings`), real token ids
    (looked up on the CPU), a padded language mask (N_VALID_TOKENS of 48 valid) and an 8-D state
    padded to 32."""
    rng = np.random.default_rng(seed + 1)
    mask = np.zeros((1, 48), dtype=np.float32)
    mask[:, :N_VALID_TOKENS] = 1
    state = np.zeros((1, 32), dtype=np.float32)
    state[:, :8] = rng.normal(0, 1, size=8)
    return {"img_emb0": rng.normal(0, 1, size=(1, 64, hidden)).astype(np.float32),
            "img_emb1": rng.normal(0, 1, size=(1, 64, hidden)).astype(np.float32),
            "lang_tokens": rng.integers(0, vocab_size, size=(1, 48)).astype(np.int64),
            "lang_mask": mask, "state": state}


def image_embeddings(vision_model: str, vision_sidecar: str, seed: int) -> dict[str, np.ndarray]:
    """img_emb0/1 as the LLM receives them: the fp32 reference vision encoder's output on two
    image-like frames (an integer precision's scales are calibrated on such embeddings; N(0, 1)
    stand-ins reach twice their range and would judge the quantizer on inputs it never sees)."""
    from .runtime import ReferenceRunner, StageRunner
    ve = StageRunner(ReferenceRunner(vision_model), vision_sidecar)
    return {f"img_emb{i}": ve.infer({"pixel_values": image_like(seed + 10 + i)})["image_embeddings"] for i in (0, 1)}


def prefix_pad_from(lang_mask: np.ndarray, n_image_tokens: int = 128) -> np.ndarray:
    return np.concatenate([np.ones((1, n_image_tokens), np.float32), lang_mask.astype(np.float32),
                           np.ones((1, 1), np.float32)], axis=1)


def intermediate_ranges(model_path: str, sidecar: str, feeds: dict) -> dict[str, float]:
    """max |x| of every float intermediate tensor of the fp32 reference on `feeds`.

    Each intermediate gets an Abs -> ReduceMax (a scalar output) placed right after the node that
    makes it, so onnxruntime frees every activation as soon as its consumers ran and one run returns
    all the ranges. (Exposing the activations themselves as outputs kept them all alive: 7.5 GB on
    the full vision encoder; reductions appended at the end of the graph do the same.)"""
    from .passes._graph import skeleton
    from .runtime import ReferenceRunner, StageRunner
    from .onnx_io import load
    model = load(model_path)
    inferred = onnx.shape_inference.infer_shapes(skeleton(model))      # types, without copying the weights
    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    existing = {o.name for o in model.graph.output}
    floats = {v.name for v in inferred.graph.value_info
              if v.type.tensor_type.elem_type in float_types and v.name not in existing}
    del inferred
    nodes, probes = [], {}
    for node in model.graph.node:
        nodes.append(node)
        for t in node.output:
            if t in floats:
                probes[t] = f"{t}/abs_max"
                nodes.append(onnx.helper.make_node("Abs", [t], [f"{t}/abs"], name=f"{t}/abs_probe"))
                nodes.append(onnx.helper.make_node("ReduceMax", [f"{t}/abs"], [probes[t]], keepdims=0,
                                                   name=f"{t}/max_probe"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.output.extend([onnx.helper.make_empty_tensor_value_info(p) for p in probes.values()])
    stage = StageRunner(ReferenceRunner(model.SerializeToString(), priority_order=True), sidecar)
    del model
    infer = stage.runner.infer
    stage.runner.infer = _with_outputs(infer, list(probes.values()))
    got = stage.infer(feeds)
    return {t: float(got[p]) for t, p in probes.items()}


def _with_outputs(infer, names):
    return lambda feeds, outputs=None: infer(feeds, outputs=names)


def over_fp16(ranges: dict[str, float]) -> list[dict]:
    return [{"tensor": k, "max_abs": v} for k, v in sorted(ranges.items(), key=lambda kv: -kv[1]) if v > FP16_MAX]


def rollout(head, feeds_base: dict, noise: np.ndarray, steps: int = NUM_STEPS) -> tuple[np.ndarray, list[np.ndarray]]:
    """10 Euler steps x <- x + dt * v(x, t), t from 1 to dt; returns (final x, per-step v)."""
    x = noise.astype(np.float32)
    dt = -1.0 / steps
    vs = []
    for step in range(steps):
        t = np.array([1.0 + step * dt], dtype=np.float32)
        v = head.infer(dict(feeds_base, x_t=x, timestep=t))["v_t"]
        vs.append(v)
        x = (x + dt * v).astype(np.float32)
    return x, vs


def judge(metrics: dict, flagged: list, model: str, options: dict) -> list[str]:
    """Reasons this build is not acceptable (empty = pass)."""
    reasons = []
    if not metrics["cosine"] >= options["cosine_min"]:
        reasons.append(f"cosine {metrics['cosine']:.6f} < {options['cosine_min']}")
    if model == "action_head" and not metrics["max_abs"] < options["max_abs"]:
        reasons.append(f"max abs {metrics['max_abs']:.3g} >= {options['max_abs']} on the final action chunk")
    if saturated(metrics):
        reasons.append(f"fp16 saturation in the output: {metrics['saturation']}")
    if flagged:
        reasons.append(f"{len(flagged)} reference activation(s) beyond the fp16 range, e.g. "
                       f"{flagged[0]['tensor']} reaches {flagged[0]['max_abs']:.4g}")
    return reasons
