"""preprocess: graph passes that make each stage model HTP-clean, with equivalence proven."""

from __future__ import annotations

from ..declaration import EMBEDDING_ON_CPU, SINUSOID_ON_CPU, declaration
from ..export.presets import get_preset
from ..toolchains.fingerprint import passes_fingerprint
from .keys import action, uptodate

FAMILY = "preprocess"
PREPROCESS = action("passes.task:preprocess_task")


def gen_tasks(pipe, layout, toolchain):
    opts = pipe.section("preprocess")
    tools = passes_fingerprint()
    code = PREPROCESS.code()
    preset = get_preset(pipe.source["preset"])
    for m in pipe.models:
        options = {"embedding_on_cpu": m in EMBEDDING_ON_CPU, "sinusoid_on_cpu": m in SINUSOID_ON_CPU,
                   "mask_bound": opts["mask_bound"],
                   "equivalence_rtol": opts["equivalence_rtol"], "seed": opts["seed"]}
        targets = [layout.preprocessed(m), layout.preprocess_report(m), layout.io_sidecar(m)]
        if options["embedding_on_cpu"]:
            targets += [layout.embed_table]
        if options["sinusoid_on_cpu"]:
            targets += [layout.cpu_model(m)]
        kw = {"model": m, "src": str(layout.source_onnx(m)), "out": str(layout.preprocessed(m)),
              "report": str(layout.preprocess_report(m)), "sidecar": str(layout.io_sidecar(m)),
              "embed_npy": str(layout.embed_table) if options["embedding_on_cpu"] else None,
              "cpu_model": str(layout.cpu_model(m)) if options["sinusoid_on_cpu"] else None,
              "declaration": declaration(preset, m), "check_io": pipe.source["weights"] == "onnx", "options": options, "tools": tools, "code": code}
        yield {
            "basename": FAMILY,
            "name": m,
            "doc": f"HTP-clean {m}: fold constants, CumSum->MatMul, bool->int32, Gemm->MatMul, bounded masks, "
                   "fp16-safe RMSNorm and activations"
                   + (", embedding on CPU" if options["embedding_on_cpu"] else "")
            + (", sinusoids (timestep, RoPE) on CPU" if options["sinusoid_on_cpu"] else ""),
            "actions": [(PREPROCESS, [kw])],
            "file_dep": [str(layout.source_onnx(m))],
            "targets": [str(t) for t in targets],
            "uptodate": uptodate(kw),
            "clean": True,
        }
