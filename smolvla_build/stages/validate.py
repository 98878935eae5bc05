"""validate: HTP context binary vs the fp32 reference per model x precision, with the fp16 guard."""

from __future__ import annotations

import logging

from doit.exceptions import TaskFailed

from ..toolchains.fingerprint import ort_qnn_fingerprint, passes_fingerprint
from .keys import RUNTIME, code_digest, uptodate
from .preprocess import SINUSOID_ON_CPU

FAMILY = "validate"
log = logging.getLogger("smolvla_build.validate")


def run_validate(model_name: str, precision_name: str, reference: str, sidecar: str, ctx: str, out: str, soc: dict,
                 precision: dict, options: dict, fallback_to, embed_table, llm_reference, llm_sidecar,
                 fallback_target: bool = False, qairt_io: dict | None = None, gates: dict | None = None,
                 vision_reference: str | None = None, vision_sidecar: str | None = None):
    """`ctx`: the EPContext model to validate; `qairt_io` ({binary_info, net_json} of a qairt context):
    its tensors carry the converter's names, mapped from the reference graph's."""
    import time

    import numpy as np

    from ..compare import compare as compare_arrays
    from ..fsutil import write_json
    from ..model_files import load_npy
    from ..progress import Announced, Steps, heartbeat
    from ..runtime import OrtQnnRunner, ReferenceRunner, StageRunner
    from ..runtime.contexts import qairt_names
    from ..validation import (NUM_STEPS, image_embeddings, image_like, intermediate_ranges, judge, llm_feeds,
                              over_fp16, prefix_pad_from, rollout)

    seed = options["seed"]
    toolchain = "qairt" if qairt_io else "ort-qnn"
    names = qairt_names(qairt_io["binary_info"], qairt_io["net_json"], reference)[1] if qairt_io else None
    ref = StageRunner(ReferenceRunner(reference), sidecar)
    calls = NUM_STEPS if model_name == "action_head" else 1
    from ..toolchains.ort_qnn import load_session
    htp = Announced(StageRunner(OrtQnnRunner(ctx, soc, precision, names=names, loader=load_session), sidecar),
                    Steps(f"validate {model_name}-{precision_name}: HTP-emulated call", calls, log))
    log.info("validate %s-%s: %s context %s vs the fp32 reference ...", model_name, precision_name, toolchain, ctx)
    report = {"model": model_name, "precision": precision_name, "reference": reference, "context": ctx,
              "toolchain": toolchain, "seed": seed, "options": options}
    t0 = time.time()
    if model_name == "vision_encoder":
        feeds = {"pixel_values": image_like(seed)}
    else:
        table = load_npy(embed_table, mmap_mode="r")
        lfeeds = llm_feeds(table.shape[0], table.shape[1], seed)
        if vision_reference:
            lfeeds.update(image_embeddings(vision_reference, vision_sidecar, seed))
        if model_name == "llm_backbone":
            feeds = lfeeds
        else:
            kv = StageRunner(ReferenceRunner(llm_reference), llm_sidecar).infer(lfeeds)["kv"]
            rng = np.random.default_rng(seed + 2)
            noise = rng.standard_normal((1, 50, 32)).astype(np.float32)
            feeds = {"kv": kv, "prefix_pad_mask": prefix_pad_from(lfeeds["lang_mask"]),
                     "x_t": noise, "timestep": np.array([1.0], np.float32)}
    if model_name == "action_head":
        base = {k: v for k, v in feeds.items() if k not in ("x_t", "timestep")}
        ref_x, ref_v = rollout(ref, base, feeds["x_t"])
        htp_x, htp_v = rollout(htp, base, feeds["x_t"])
        metrics = compare_arrays(ref_x, htp_x)
        report["per_step"] = [dict(step=i, **{k: v for k, v in compare_arrays(a, b).items() if k != "saturation"})
                              for i, (a, b) in enumerate(zip(ref_v, htp_v))]
        report["judged_on"] = f"final action chunk after the {NUM_STEPS}-step Euler rollout, same noise"
    else:
        r = ref.infer(feeds)
        h = htp.infer(feeds)
        name = ref.runner.output_names[0]
        metrics = compare_arrays(r[name], h[name])
        report["judged_on"] = f"output {name}"
    report["metrics"] = metrics
    report["htp_seconds_per_call"] = float(np.median(htp.inference_times))
    report["reference_seconds_per_call"] = float(np.median(ref.inference_times))
    with heartbeat(f"validate {model_name}-{precision_name}: fp32 ranges of every intermediate tensor", log):
        ranges = intermediate_ranges(reference, sidecar, dict(feeds, timestep=np.array([1.0], np.float32)))
    report["intermediate_max_abs"] = max(ranges.values(), default=0.0)
    # fp16 overflow concerns float graphs (the HTP runs fp32 ones in fp16 too); an integer precision's
    # activation ranges are calibrated scales instead
    flagged = [] if "quantization" in precision else over_fp16(ranges)
    report["intermediates_beyond_fp16"] = flagged
    gates = {"cosine_min": options["cosine_min"], "max_abs": options["max_abs"], **(gates or {})}
    reasons = judge(metrics, flagged, model_name, gates)
    report["gates"] = gates
    report["reasons"] = reasons
    policy = options["on_saturation"]
    if not reasons:
        report["status"] = "pass"
    elif policy == "fallback-fp32" and fallback_to:
        report["status"] = "fallback"
        report["fallback_to"] = fallback_to
    elif policy == "warn":
        report["status"] = "warn"
    elif policy == "fallback-fp32" and options.get("on_fallback_miss") == "warn" and fallback_target:
        report["status"] = "warn"          # nothing left to fall back to: use it, say so (report, log)
    else:
        report["status"] = "fail"
    report["seconds"] = round(time.time() - t0, 2)
    write_json(out, report)
    msg = (f"validate {model_name}-{precision_name}: {report['status']}, cosine {metrics['cosine']:.6f}, "
           f"max abs {metrics['max_abs']:.3g}, PSNR {metrics['psnr_db']:.1f} dB")
    if reasons:
        msg += "; " + "; ".join(reasons)
        if report["status"] == "fallback":
            msg += f" -> using {fallback_to} for {model_name}"
    (log.warning if reasons else log.info)(msg)
    if report["status"] == "fail":
        return TaskFailed(msg + f" (on_saturation: {policy}; report: {out})")
    return True


def gen_tasks(pipe, layout, toolchain):
    options = {k: v for k, v in pipe.section("validation").items() if k != "gates"}    # each task: its own gates
    fp = {**ort_qnn_fingerprint(pipe.soc), **passes_fingerprint(), "toolchain": toolchain}
    code = code_digest("validation.py", "compare.py", "runtime", RUNTIME, "layout.py", "stages/validate.py")
    fallback_targets = {pipe.fallback(p) for p in pipe.precisions} - {None}
    for m in pipe.models:
        for pname, precision in pipe.precisions.items():
            fallback_to = pipe.fallback(pname)
            gates = pipe.gates(pname)
            deps = [layout.preprocessed(m), layout.io_sidecar(m), *layout.context_files(m, pname)]
            deps += [layout.cpu_model(m)] if m in SINUSOID_ON_CPU else []
            needs_llm = m in ("llm_backbone", "action_head")
            with_vision = needs_llm and "vision_encoder" in pipe.models
            if needs_llm:  # real embedding rows, and the action head's KV cache comes from the LLM reference
                deps += [layout.embed_table, layout.preprocessed("llm_backbone"), layout.io_sidecar("llm_backbone")]
            if with_vision:  # image embeddings from the reference vision encoder
                deps += [layout.preprocessed("vision_encoder"), layout.io_sidecar("vision_encoder")]
            kw = {"options": options, "precision": precision, "tools": fp, "code": code, "fallback_to": fallback_to,
                  "gates": gates}
            q = layout.qairt(m, pname)
            qairt_io = {"binary_info": str(q.binary_info), "net_json": str(q.net_json)} if toolchain == "qairt" else None
            yield {
                "basename": FAMILY,
                "name": f"{m}-{pname}",
                "doc": f"compare the {pname} HTP context of {m} ({toolchain}) with the fp32 reference",
                "actions": [(run_validate, [], {
                    "model_name": m, "precision_name": pname, "reference": str(layout.preprocessed(m)),
                    "ctx": str(layout.context(m, pname)), "qairt_io": qairt_io,
                    "sidecar": str(layout.io_sidecar(m)),
                    "llm_sidecar": str(layout.io_sidecar("llm_backbone")) if needs_llm else None,
                    "out": str(layout.validation(m, pname)),
                    "soc": dict(pipe.soc), "precision": precision, "options": options, "fallback_to": fallback_to,
                    "embed_table": str(layout.embed_table) if needs_llm else None,
                    "llm_reference": str(layout.preprocessed("llm_backbone")) if needs_llm else None,
                    "fallback_target": pname in fallback_targets, "gates": gates,
                    "vision_reference": str(layout.preprocessed("vision_encoder")) if with_vision else None,
                    "vision_sidecar": str(layout.io_sidecar("vision_encoder")) if with_vision else None})],
                "file_dep": sorted({str(d) for d in deps}),
                "targets": [str(layout.validation(m, pname))],
                "uptodate": uptodate(kw),
                "clean": True,
            }
