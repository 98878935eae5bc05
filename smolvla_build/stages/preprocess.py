"""preprocess: graph passes that make each stage model HTP-clean, with equivalence proven."""

from __future__ import annotations

from smolvla_runtime.model import STAGES, declaration

from ..passes.preprocess_task import PreprocessSpec
from ..toolchains.fingerprint import passes_fingerprint
from .keys import action, declare

FAMILY = "preprocess"
PREPROCESS = action("passes.preprocess_task:preprocess_task")


def gen_tasks(build):
    pipe, layout = build.pipe, build.layout
    opts = pipe.section("preprocess")
    for m in pipe.models:
        stage = STAGES[m]
        spec = PreprocessSpec(model=m, src=layout.source_onnx(m), out=layout.preprocessed(m),
                              report=layout.preprocess_report(m), sidecar=layout.io_sidecar(m),
                              embed_table=layout.embed_table if stage.embedding_on_cpu else None,
                              cpu_model=layout.cpu_model(m) if stage.sinusoids_on_cpu else None,
                              declaration=declaration(pipe.preset, m), check_io=layout.onnx_source is not None,
                              mask_bound=opts["mask_bound"], equivalence_rtol=opts["equivalence_rtol"], seed=opts["seed"])
        targets = [spec.out, spec.report, spec.sidecar] + [f for f in (spec.embed_table, spec.cpu_model) if f]
        yield declare(FAMILY, PREPROCESS, spec, name=m, file_dep=[spec.src], targets=targets, tools=passes_fingerprint(),
                      doc=f"HTP-clean {m}: fold constants, CumSum->MatMul, bool->int32, Gemm->MatMul, bounded masks, "
                          "fp16-safe RMSNorm and activations"
                          + (", embedding on CPU" if spec.embed_table else "")
                          + (", sinusoids (timestep, RoPE) on CPU" if spec.cpu_model else ""))
