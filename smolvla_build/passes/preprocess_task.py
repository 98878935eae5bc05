"""The `preprocess` task: the passes on one stage model, its report, I/O sidecar and the parts moved
to the CPU, written so that the model appears only with its report and sidecar. Light at import."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

log = logging.getLogger("smolvla_build.preprocess")


@dataclasses.dataclass(frozen=True)
class PreprocessSpec:
    model: str
    src: Path
    out: Path
    report: Path
    sidecar: Path
    embed_table: Path | None        # the LLM's token table, moved to the CPU (else the lookup stays)
    cpu_model: Path | None          # the sinusoids' CPU sub-model (else they stay in the graph)
    declaration: dict               # the stage's (smolvla_runtime.model.declaration)
    check_io: bool                  # an ONNX source: its graph I/O is checked against the declaration
    mask_bound: float
    equivalence_rtol: float
    seed: int


def preprocess_task(spec: PreprocessSpec):
    from doit.exceptions import TaskFailed

    from ..fsutil import save_npy, write_json
    from ..model_files import load_onnx, save_onnx
    from ..progress import heartbeat
    from .pipeline import PreprocessError, preprocess
    from .signature import SignatureError, check_signature
    model_name, src = spec.model, spec.src
    log.info("preprocess %s: loading %s", model_name, src)
    model = load_onnx(src)
    try:
        if spec.check_io:
            check_signature(model, spec.declaration, src)
        with heartbeat(f"preprocess {model_name}", log):
            result = preprocess(model, embedding_cpu=spec.embed_table is not None,
                                sinusoid_cpu=spec.cpu_model is not None, mask_bound=spec.mask_bound,
                                rtol=spec.equivalence_rtol, seed=spec.seed,
                                cpu_model_file=Path(spec.cpu_model).name if spec.cpu_model else "",
                                progress=lambda text: log.info("preprocess %s: %s", model_name, text))
    except SignatureError as exc:
        return TaskFailed(str(exc))
    except PreprocessError as exc:
        failed = Path(spec.report).with_suffix(".failed.json")
        write_json(failed, exc.report)
        return TaskFailed(f"preprocess {model_name}: {exc} (report: {failed})")
    report = dict(result.report, model=model_name, source=str(src))
    if spec.embed_table:
        if result.embedding_table is None:
            return TaskFailed(f"{src}: no embedding Gather at the expected tensor to move to the CPU")
        save_npy(spec.embed_table, result.embedding_table.astype("float32"))
    if spec.cpu_model:
        if result.cpu_model is None:
            return TaskFailed(f"{src}: no sinusoid of small inputs (timestep embedding, RoPE tables) found to move to the CPU")
        save_onnx(result.cpu_model, spec.cpu_model)
    write_json(spec.sidecar, {"stage": spec.declaration, **result.io_changes})
    write_json(spec.report, report)
    save_onnx(result.model, spec.out)       # last: the model appears only with its report and sidecar
    errs = report.get("equivalence", {}).get("relative_error", {})
    log.info("preprocess %s: clean, max relative error %s", model_name,
             ", ".join(f"{k}={v:.2e}" for k, v in errs.items()))
    return True
