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


def llm_feeds(vocab_size: int, inputs: dict[str, list[int]], state_dim: int, seed: int) -> dict:
    """Synthetic image embeddings (validation replaces them with `image_embeddings`), real token ids
    (looked up on the CPU), a padded language mask (N_VALID_TOKENS valid) and a state of the robot's
    `state_dim` values, zero-padded: in the shapes the LLM stage declares (`inputs`: name -> dims,
    smolvla_runtime.stage.declared_input_shapes)."""
    rng = np.random.default_rng(seed + 1)
    n_lang = inputs["lang_mask"][1]
    mask = np.zeros((1, n_lang), dtype=np.float32)
    mask[:, :N_VALID_TOKENS] = 1
    state = np.zeros(inputs["state"], dtype=np.float32)
    state[:, :state_dim] = rng.normal(0, 1, size=state_dim)
    return {"img_emb0": rng.normal(0, 1, size=inputs["img_emb0"]).astype(np.float32),
            "img_emb1": rng.normal(0, 1, size=inputs["img_emb1"]).astype(np.float32),
            "lang_tokens": rng.integers(0, vocab_size, size=(1, n_lang)).astype(np.int64),
            "lang_mask": mask, "state": state}


def image_embeddings(vision_model: str, vision_sidecar: str, seed: int) -> dict[str, np.ndarray]:
    """img_emb0/1 as the LLM receives them: the fp32 reference vision encoder's output on two
    image-like frames (an integer precision's scales are calibrated on such embeddings; N(0, 1)
    stand-ins reach twice their range and would judge the quantizer on inputs it never sees)."""
    from .runtime import ReferenceRunner, StageRunner
    ve = StageRunner(ReferenceRunner(vision_model), vision_sidecar)
    size = ve.input_shape("pixel_values")[-1]
    return {f"img_emb{i}": ve.infer({"pixel_values": image_like(seed + 10 + i, size)})["image_embeddings"] for i in (0, 1)}


def prefix_pad_from(llm_feeds: dict) -> np.ndarray:
    """The action head's prefix pad mask for the LLM's inputs: its image tokens (both cameras, as
    many as the embeddings carry), the language mask, the state token."""
    n_image_tokens = sum(llm_feeds[f"img_emb{i}"].shape[1] for i in (0, 1))
    lang_mask = llm_feeds["lang_mask"]
    return np.concatenate([np.ones((1, n_image_tokens), np.float32), lang_mask.astype(np.float32),
                           np.ones((1, 1), np.float32)], axis=1)


def range_probes(model: onnx.ModelProto) -> tuple[bytes, dict[str, str]]:
    """`model` (edited in place, returned serialized) with an Abs -> ReduceMax (a scalar output) right after the node that
    makes each float intermediate, and {tensor: its probe output}: onnxruntime frees every
    activation as soon as its consumers ran, and one run returns all the ranges. (Exposing the
    activations themselves as outputs kept them all alive: 7.5 GB on the full vision encoder;
    reductions appended at the end of the graph do the same.)"""
    from .passes._graph import value_types
    float_types = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    existing = {o.name for o in model.graph.output}
    floats = {name for name, t in value_types(model).items() if t in float_types and name not in existing}
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
    return model.SerializeToString(), probes


def intermediate_ranges(model_path: str, sidecar: str, feeds: dict) -> dict[str, float]:
    """max |x| of every float intermediate tensor of the fp32 reference on `feeds` (the stage's)."""
    from .onnx_io import load
    from .runtime import ReferenceRunner, StageRunner
    probe, probes = range_probes(load(model_path))
    stage = StageRunner(ReferenceRunner(probe, priority_order=True), sidecar)
    del probe
    infer = stage.runner.infer
    stage.runner.infer = _with_outputs(infer, list(probes.values()))
    got = stage.infer(feeds)
    return {t: float(got[p]) for t, p in probes.items()}


def _with_outputs(infer, names):
    return lambda feeds, outputs=None: infer(feeds, outputs=names)


def census(model_path, samples: dict[str, np.ndarray], limit: int | None = None, progress=None) -> dict:
    """The saturation census of a graph: max |x| of every float intermediate over recorded inputs
    (`samples`: {graph input: the inputs stacked on a first axis}, as a calibration set holds what
    each HTP graph sees in LIBERO; `limit`: the first N of them). Returns the number of samples, the
    largest intermediate, and every tensor beyond fp16's 65504, largest first."""
    from smolvla_runtime.feeds import cast_feeds

    from .onnx_io import load
    from .runtime import ReferenceRunner
    probe, probes = range_probes(load(model_path))
    runner = ReferenceRunner(probe, priority_order=True).activate()
    del probe
    n = min(len(v) for v in samples.values())
    n = min(n, limit) if limit else n
    ranges: dict[str, float] = {}
    for i in range(n):
        got = runner.infer(cast_feeds(runner, {k: v[i] for k, v in samples.items()}), outputs=list(probes.values()))
        for t, p in probes.items():
            ranges[t] = max(ranges.get(t, 0.0), float(got[p]))
        if progress:
            progress(i + 1, n)
    return {"samples": n, "max_intermediate": max(ranges.values(), default=0.0), "beyond_fp16": over_fp16(ranges)}


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
    if options.get("max_relative") is not None and not metrics["max_rel"] <= options["max_relative"]:
        reasons.append(f"max abs / max |reference| {metrics['max_rel']:.3g} > {options['max_relative']}")
    if saturated(metrics):
        reasons.append(f"fp16 saturation in the output: {metrics['saturation']}")
    if flagged:
        reasons.append(f"{len(flagged)} reference activation(s) beyond the fp16 range, e.g. "
                       f"{flagged[0]['tensor']} reaches {flagged[0]['max_abs']:.4g}")
    return reasons


# --- the validate task: measure, then decide -------------------------------------------------------

def validation_inputs(kw: dict) -> dict[str, np.ndarray]:
    """The seeded inputs of one stage (kw: model, seed and the reference files it needs)."""
    from smolvla_runtime.stage import declared_input_shapes

    from .model_files import load_npy
    from .runtime import ReferenceRunner, StageRunner
    model, seed = kw["model"], kw["options"]["seed"]
    shapes = declared_input_shapes(kw["sidecar"])
    if model == "vision_encoder":
        return {"pixel_values": image_like(seed, size=shapes["pixel_values"][-1])}
    table = load_npy(kw["embed_table"], mmap_mode="r")
    lfeeds = llm_feeds(table.shape[0], declared_input_shapes(kw["llm_sidecar"]), kw["state_dim"], seed)
    if kw["vision_reference"]:
        lfeeds.update(image_embeddings(kw["vision_reference"], kw["vision_sidecar"], seed))
    if model == "llm_backbone":
        return lfeeds
    kv = StageRunner(ReferenceRunner(kw["llm_reference"]), kw["llm_sidecar"]).infer(lfeeds)["kv"]
    rng = np.random.default_rng(seed + 2)
    noise = rng.standard_normal(shapes["x_t"]).astype(np.float32)
    return {"kv": kv, "prefix_pad_mask": prefix_pad_from(lfeeds), "x_t": noise,
            "timestep": np.array([1.0], np.float32)}


def measure(kw: dict, log) -> tuple[dict, dict]:
    """The HTP context against the fp32 reference on the stage's seeded inputs: metrics (the action
    head after the whole rollout), timings and the reference's intermediate ranges beyond fp16; and
    the arrays the CPU proxies are measured on (`in/<input>`, the judged `reference` and `htp`)."""
    import time

    from .compare import compare as compare_arrays
    from .progress import Announced, Steps, heartbeat
    from .runtime import OrtQnnRunner, ReferenceRunner, StageRunner
    from .runtime.contexts import qairt_names
    from .toolchains.ort_qnn import load_session
    model, label, qairt_io = kw["model"], f"{kw['model']}-{kw['precision_name']}", kw["qairt_io"]
    names = qairt_names(qairt_io["binary_info"], qairt_io["net_json"], kw["reference"])[1] if qairt_io else None
    ref = StageRunner(ReferenceRunner(kw["reference"]), kw["sidecar"])
    calls = NUM_STEPS if model == "action_head" else 1
    htp = Announced(StageRunner(OrtQnnRunner(kw["ctx"], kw["soc"], kw["precision"], names=names, loader=load_session),
                                kw["sidecar"]), Steps(f"validate {label}: HTP-emulated call", calls, log))
    toolchain = "qairt" if qairt_io else "ort-qnn"
    log.info("validate %s: %s context %s vs the fp32 reference ...", label, toolchain, kw["ctx"])
    report = {"model": model, "precision": kw["precision_name"], "reference": kw["reference"], "context": kw["ctx"],
              "toolchain": toolchain, "seed": kw["options"]["seed"], "options": kw["options"]}
    t0 = time.time()
    feeds = validation_inputs(kw)
    if model == "action_head":
        base = {k: v for k, v in feeds.items() if k not in ("x_t", "timestep")}
        ref_x, ref_v = rollout(ref, base, feeds["x_t"])
        htp_x, htp_v = rollout(htp, base, feeds["x_t"])
        metrics = compare_arrays(ref_x, htp_x)
        judged = (ref_x, htp_x)
        report["per_step"] = [dict(step=i, **{k: v for k, v in compare_arrays(a, b).items() if k != "saturation"})
                              for i, (a, b) in enumerate(zip(ref_v, htp_v))]
        report["judged_on"] = f"final action chunk after the {NUM_STEPS}-step Euler rollout, same noise"
    else:
        name = ref.runner.output_names[0]
        judged = (ref.infer(feeds)[name], htp.infer(feeds)[name])
        metrics = compare_arrays(*judged)
        report["judged_on"] = f"output {name}"
    report["metrics"] = metrics
    report["htp_seconds_per_call"] = float(np.median(htp.inference_times))
    report["reference_seconds_per_call"] = float(np.median(ref.inference_times))
    with heartbeat(f"validate {label}: fp32 ranges of every intermediate tensor", log):
        ranges = intermediate_ranges(kw["reference"], kw["sidecar"], dict(feeds, timestep=np.array([1.0], np.float32)))
    report["intermediate_max_abs"] = max(ranges.values(), default=0.0)
    # fp16 overflow concerns float graphs (the HTP runs fp32 ones in fp16 too); an integer precision's
    # activation ranges are calibrated scales instead
    report["intermediates_beyond_fp16"] = [] if "quantization" in kw["precision"] else over_fp16(ranges)
    report["seconds"] = round(time.time() - t0, 2)
    arrays = {f"in/{k}": np.asarray(v) for k, v in feeds.items()}
    arrays.update(reference=judged[0], htp=judged[1])
    return report, arrays


def decide(reasons: list[str], options: dict, fallback_to: str | None, is_fallback_target: bool) -> str:
    """pass | fallback | warn | fail for a stage that missed `reasons` (none: pass), under
    validation.on_saturation and on_fallback_miss."""
    policy = options["on_saturation"]
    if not reasons:
        return "pass"
    if policy == "fallback-fp32" and fallback_to:
        return "fallback"
    if policy == "warn":
        return "warn"
    if policy == "fallback-fp32" and options.get("on_fallback_miss") == "warn" and is_fallback_target:
        return "warn"          # nothing left to fall back to: use it, say so (report, log)
    return "fail"


def validate_task(kw: dict):
    """The `validate` action: measure, judge against the gates, decide, write the report."""
    import logging

    from doit.exceptions import TaskFailed

    from .fsutil import save_npz, write_json
    log = logging.getLogger("smolvla_build.validate")
    report, arrays = measure(kw, log)
    options = kw["options"]
    gates = {"cosine_min": options["cosine_min"], "max_abs": options["max_abs"],
             "max_relative": options.get("max_relative"), **(kw["gates"] or {})}
    reasons = judge(report["metrics"], report["intermediates_beyond_fp16"], kw["model"], gates)
    report.update(gates=gates, reasons=reasons)
    report["status"] = decide(reasons, options, kw["fallback_to"], kw["fallback_target"])
    if report["status"] == "fallback":
        report["fallback_to"] = kw["fallback_to"]
    save_npz(kw["arrays"], arrays)
    write_json(kw["out"], report)           # last: the report appears only with its arrays
    metrics, label = report["metrics"], f"{kw['model']}-{kw['precision_name']}"
    msg = (f"validate {label}: {report['status']}, cosine {metrics['cosine']:.6f}, "
           f"max abs {metrics['max_abs']:.3g}, PSNR {metrics['psnr_db']:.1f} dB")
    if reasons:
        msg += "; " + "; ".join(reasons)
        if report["status"] == "fallback":
            msg += f" -> using {kw['fallback_to']} for {kw['model']}"
    (log.warning if reasons else log.info)(msg)
    if report["status"] == "fail":
        return TaskFailed(msg + f" (on_saturation: {options['on_saturation']}; report: {kw['out']})")
    return True
