"""validate: HTP context binary vs the fp32 reference per model x precision, with the fp16 guard
(smolvla_build/validation.py: measure, then decide)."""

from __future__ import annotations

from ..declaration import SINUSOID_ON_CPU, upstream
from ..toolchains.fingerprint import ort_qnn_fingerprint, passes_fingerprint
from .keys import action, uptodate

FAMILY = "validate"
VALIDATE = action("validation:validate_task")


def gen_tasks(pipe, layout, toolchain):
    options = {k: v for k, v in pipe.section("validation").items() if k != "gates"}    # each task: its own gates
    fp = {**ort_qnn_fingerprint(pipe.soc), **passes_fingerprint(), "toolchain": toolchain}
    code = VALIDATE.code()
    targets = pipe.precisions.fallback_targets()
    from ..export.presets import get_preset               # data only (no torch)
    preset = get_preset(pipe.source["preset"])
    for m in pipe.models:
        for pname, precision in pipe.precisions.items():
            deps = [layout.preprocessed(m), layout.io_sidecar(m), *layout.context_files(m, pname)]
            deps += [layout.cpu_model(m)] if m in SINUSOID_ON_CPU else []
            feeders = upstream(preset, m) + [m]        # the stages whose reference makes this one's inputs
            needs_llm = "llm_backbone" in feeders
            with_vision = needs_llm and "vision_encoder" in feeders and "vision_encoder" in pipe.models
            if needs_llm:  # real embedding rows, and the action head's KV cache comes from the LLM reference
                deps += [layout.embed_table, layout.preprocessed("llm_backbone"), layout.io_sidecar("llm_backbone")]
            if with_vision:  # image embeddings from the reference vision encoder
                deps += [layout.preprocessed("vision_encoder"), layout.io_sidecar("vision_encoder")]
            q = layout.qairt(m, pname)
            # exactly what the action reads, and the up-to-date key
            kw = {"model": m, "precision_name": pname, "precision": precision.settings, "soc": dict(pipe.soc),
                  "options": options, "gates": pipe.gates(pname), "fallback_to": pipe.fallback(pname),
                  "fallback_target": pname in targets, "state_dim": preset.state_dim,
                  "reference": str(layout.preprocessed(m)), "sidecar": str(layout.io_sidecar(m)),
                  "ctx": str(layout.context(m, pname)), "out": str(layout.validation(m, pname)),
                  "arrays": str(layout.validation_arrays(m, pname)),
                  "qairt_io": {"binary_info": str(q.binary_info), "net_json": str(q.net_json)} if toolchain == "qairt" else None,
                  "embed_table": str(layout.embed_table) if needs_llm else None,
                  "llm_reference": str(layout.preprocessed("llm_backbone")) if needs_llm else None,
                  "llm_sidecar": str(layout.io_sidecar("llm_backbone")) if needs_llm else None,
                  "vision_reference": str(layout.preprocessed("vision_encoder")) if with_vision else None,
                  "vision_sidecar": str(layout.io_sidecar("vision_encoder")) if with_vision else None,
                  "tools": fp, "code": code}
            yield {
                "basename": FAMILY,
                "name": f"{m}-{pname}",
                "doc": f"compare the {pname} HTP context of {m} ({toolchain}) with the fp32 reference",
                "actions": [(VALIDATE, [kw])],
                "file_dep": sorted({str(d) for d in deps}),
                "targets": [str(layout.validation(m, pname)), str(layout.validation_arrays(m, pname))],
                "uptodate": uptodate(kw),
                "clean": True,
            }
