"""What validation measures: an HTP context against the fp32 reference on the stage's seeded inputs.

Inputs are fixed, seeded and look like real ones (smolvla_build/seeded_inputs.py): an image-like
frame, real rows of the embedding table behind a padded language mask, image embeddings and a KV
cache computed by the reference stages upstream, x_t ~ N(0, 1). The action head is judged over the
integrated flow-matching rollout with the same noise on both sides, because per-step errors
compound. Besides the outputs, the fp32 reference's intermediate activation ranges are measured: a
tensor beyond the fp16 range (an overflowed Pow inside a decomposed RMSNorm) can give finite but
wrong outputs.

Light at import (numpy, onnx and onnxruntime load when the action runs): task generation imports
this module for `MeasureSpec`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from smolvla_runtime.htp import HtpPerformance, Soc
from smolvla_runtime.model import STAGES, camera_inputs, get_preset, prefix_pad_mask

from ..precisions import Precision

log = logging.getLogger("smolvla_build.validate")
FP16_MAX = 65504.0


@dataclasses.dataclass(frozen=True)
class UpstreamReference:
    """A reference stage whose output makes this stage's inputs: its preprocessed graph and sidecar."""
    model: Path
    sidecar: Path


@dataclasses.dataclass(frozen=True)
class MeasureSpec:
    model: str
    precision: Precision
    soc: Soc
    performance: HtpPerformance         # how the context runs (the seconds per call it records)
    preset: str
    seed: int
    reference: Path                     # the preprocessed fp32 graph
    sidecar: Path
    context: Path                       # the EPContext model of the HTP context
    qairt_io: dict | None               # a qairt context: {binary_info, net_json} (its tensor names)
    embed_table: Path | None            # the LLM's token table, when the LLM or the head is measured
    llm: UpstreamReference | None       # the KV cache of the action head's inputs
    vision: UpstreamReference | None    # the LLM's image embeddings
    out: Path                           # the measurement (JSON)
    arrays: Path                        # its inputs and judged outputs (.npz), which the proxies read


def range_probes(model):
    """`model` (an onnx.ModelProto, edited in place, returned serialized) with an Abs -> ReduceMax (a
    scalar output) right after the node that makes each float intermediate, and {tensor: its probe
    output}: onnxruntime frees every activation as soon as its consumers ran, and one run returns
    all the ranges. (Exposing the activations themselves as outputs kept them all alive: 7.5 GB on
    the full vision encoder; reductions appended at the end of the graph do the same.)"""
    import onnx

    from ..onnx_graph import value_types
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


def intermediate_ranges(model_path, sidecar, feeds: dict) -> dict[str, float]:
    """max |x| of every float intermediate tensor of the fp32 reference on `feeds` (the stage's)."""
    from smolvla_runtime.runners import ReferenceRunner
    from smolvla_runtime.stage import StageRunner

    from ..model_files import load_onnx
    probe, probes = range_probes(load_onnx(model_path))
    stage = StageRunner(ReferenceRunner(probe, priority_order=True), sidecar)
    del probe
    got = stage.infer(feeds, outputs=list(probes.values()))
    return {t: float(got[p]) for t, p in probes.items()}


def census(model_path, samples: dict, limit: int | None = None, progress=None) -> dict:
    """The saturation census of a graph: max |x| of every float intermediate over recorded inputs
    (`samples`: {graph input: the inputs stacked on a first axis}, as a calibration set holds what
    each HTP graph sees in LIBERO; `limit`: the first N of them). Returns the number of samples, the
    largest intermediate, and every tensor beyond fp16's 65504, largest first."""
    from smolvla_runtime.feeds import cast_feeds
    from smolvla_runtime.runners import ReferenceRunner

    from ..model_files import load_onnx
    probe, probes = range_probes(load_onnx(model_path))
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


def image_embeddings(vision: UpstreamReference, p, seed: int) -> dict:
    """The LLM's image-embedding inputs: the fp32 reference vision encoder's output on one image-like
    frame per camera (an integer precision's scales are calibrated on such embeddings; N(0, 1)
    stand-ins reach twice their range and would judge the quantizer on inputs it never sees)."""
    from smolvla_runtime.runners import ReferenceRunner
    from smolvla_runtime.stage import StageRunner

    from ..seeded_inputs import image_like
    ve = StageRunner(ReferenceRunner(vision.model), vision.sidecar)
    return {name: ve.infer({"pixel_values": image_like(seed + 10 + i, p.image_size)})["image_embeddings"]
            for i, name in enumerate(camera_inputs(p))}


def validation_inputs(spec: MeasureSpec) -> dict:
    """The seeded inputs of one stage, as its declaration names them."""
    import numpy as np
    from smolvla_runtime.runners import ReferenceRunner
    from smolvla_runtime.stage import StageRunner

    from smolvla_runtime.files import load_npy
    from ..seeded_inputs import image_like, llm_feeds
    p, seed = get_preset(spec.preset), spec.seed
    if spec.embed_table is None:               # the vision encoder: nothing upstream
        return {"pixel_values": image_like(seed, size=p.image_size)}
    table = load_npy(spec.embed_table, mmap_mode="r")
    lfeeds = llm_feeds(p, table.shape[0], seed)
    if spec.vision is not None:
        lfeeds.update(image_embeddings(spec.vision, p, seed))
    if spec.llm is None:                       # the LLM itself
        return lfeeds
    kv = StageRunner(ReferenceRunner(spec.llm.model), spec.llm.sidecar).infer(lfeeds)["kv"]
    rng = np.random.default_rng(seed + 2)
    noise = rng.standard_normal(p.chunk_shape).astype(np.float32)
    return {"kv": kv, "prefix_pad_mask": prefix_pad_mask(lfeeds["lang_mask"], p.n_image_tokens), "x_t": noise,
            "timestep": np.array([1.0], np.float32)}


def measure(spec: MeasureSpec) -> tuple[dict, dict]:
    """The HTP context against the fp32 reference on the stage's seeded inputs: metrics (a rolled-out
    stage after the whole rollout), timings and the reference's intermediate ranges beyond fp16;
    and the arrays the CPU proxies are measured on (`in/<input>`, the judged `reference` and `htp`)."""
    import time

    import numpy as np
    from smolvla_runtime.runners import OrtQnnRunner, ReferenceRunner
    from smolvla_runtime.stage import StageRunner, rollout_from_feeds

    from smolvla_runtime.compare import compare as compare_arrays
    from ..progress import Announced, Steps, heartbeat
    from ..runtime.contexts import qairt_names
    from ..toolchains.ort_qnn import load_session
    p, stage = get_preset(spec.preset), STAGES[spec.model]
    label, qairt_io = f"{spec.model}-{spec.precision.name}", spec.qairt_io
    names = qairt_names(qairt_io["binary_info"], qairt_io["net_json"], spec.reference)[1] if qairt_io else None
    ref = StageRunner(ReferenceRunner(spec.reference), spec.sidecar)
    htp = Announced(StageRunner(OrtQnnRunner(spec.context, spec.soc, spec.precision.settings, names=names,
                                             loader=load_session, performance=spec.performance), spec.sidecar),
                    Steps(f"measure {label}: HTP-emulated call", p.num_steps if stage.rolled_out else 1, log))
    toolchain = "qairt" if qairt_io else "ort-qnn"
    log.info("measure %s: %s context %s vs the fp32 reference ...", label, toolchain, spec.context)
    report = {"model": spec.model, "precision": spec.precision.name, "reference": str(spec.reference),
              "context": str(spec.context), "toolchain": toolchain, "seed": spec.seed}
    t0 = time.time()
    feeds = validation_inputs(spec)
    if stage.rolled_out:
        ref_x, ref_v = rollout_from_feeds(ref, feeds, p.num_steps)
        htp_x, htp_v = rollout_from_feeds(htp, feeds, p.num_steps)
        metrics = compare_arrays(ref_x, htp_x)
        judged = (ref_x, htp_x)
        report["per_step"] = [dict(step=i, **{k: v for k, v in compare_arrays(a, b).items() if k != "saturation"})
                              for i, (a, b) in enumerate(zip(ref_v, htp_v))]
        report["judged_on"] = f"final action chunk after the {p.num_steps}-step Euler rollout, same noise"
    else:
        name = ref.runner.output_names[0]
        judged = (ref.infer(feeds)[name], htp.infer(feeds)[name])
        metrics = compare_arrays(*judged)
        report["judged_on"] = f"output {name}"
    report["metrics"] = metrics
    report["htp_seconds_per_call"] = float(np.median(htp.inference_times))
    report["reference_seconds_per_call"] = float(np.median(ref.inference_times))
    with heartbeat(f"measure {label}: fp32 ranges of every intermediate tensor", log):
        ranges = intermediate_ranges(spec.reference, spec.sidecar, feeds)
    report["intermediate_max_abs"] = max(ranges.values(), default=0.0)
    # fp16 overflow concerns float graphs (the HTP runs fp32 ones in fp16 too); an integer precision's
    # activation ranges are calibrated scales instead
    report["intermediates_beyond_fp16"] = [] if spec.precision.quantized else over_fp16(ranges)
    report["seconds"] = round(time.time() - t0, 2)
    arrays = {f"in/{k}": np.asarray(v) for k, v in feeds.items()}
    arrays.update(reference=judged[0], htp=judged[1])
    return report, arrays


def measure_task(spec: MeasureSpec):
    """The `measure` action: the measurement and its arrays, the JSON last (it appears only with them)."""
    from ..fsutil import save_npz, write_json
    report, arrays = measure(spec)
    save_npz(spec.arrays, arrays)
    write_json(spec.out, report)
    m = report["metrics"]
    log.info("measure %s-%s: cosine %.6f, max abs %.3g, PSNR %.1f dB", spec.model, spec.precision.name,
             m["cosine"], m["max_abs"], m["psnr_db"])
    return True
