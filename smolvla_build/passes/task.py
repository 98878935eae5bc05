"""The `preprocess` task's action: the passes on one stage model, its report, I/O sidecar and the
parts moved to the CPU, written so that the model appears only with its report and sidecar."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("smolvla_build.preprocess")


def preprocess_task(kw: dict):
    """kw: model, src, out, report, sidecar, embed_npy (the LLM's token table, moved to the CPU),
    cpu_model (the sinusoids' CPU sub-model), declaration (the stage's, smolvla_build/declaration.py),
    check_io (an ONNX source: its graph I/O is checked against the declaration), options."""
    from doit.exceptions import TaskFailed

    from .. import onnx_io
    from ..fsutil import save_npy, write_json
    from ..progress import heartbeat
    from .pipeline import PreprocessError, preprocess
    from .signature import SignatureError, check_signature
    model_name, src, out, options = kw["model"], kw["src"], kw["out"], kw["options"]
    report_path, sidecar, embed_npy, cpu_model_path, declared = (
        kw[k] for k in ("report", "sidecar", "embed_npy", "cpu_model", "declaration"))
    log.info("preprocess %s: loading %s", model_name, src)
    model = onnx_io.load(src)
    try:
        if kw["check_io"]:
            check_signature(model, declared, src)
        with heartbeat(f"preprocess {model_name}", log):
            result = preprocess(model, embedding_cpu=options["embedding_on_cpu"], sinusoid_cpu=options["sinusoid_on_cpu"],
                                mask_bound=options["mask_bound"], rtol=options["equivalence_rtol"], seed=options["seed"],
                                cpu_model_file=Path(cpu_model_path).name if cpu_model_path else "",
                                progress=lambda text: log.info("preprocess %s: %s", model_name, text))
    except SignatureError as exc:
        return TaskFailed(str(exc))
    except PreprocessError as exc:
        write_json(Path(report_path).with_suffix(".failed.json"), exc.report)
        return TaskFailed(f"preprocess {model_name}: {exc} (report: {Path(report_path).with_suffix('.failed.json')})")
    report = dict(result.report, model=model_name, source=src)
    if embed_npy:
        if result.embedding_table is None:
            return TaskFailed(f"{src}: no embedding Gather at the expected tensor to move to the CPU")
        save_npy(embed_npy, result.embedding_table.astype(np.float32))
    if cpu_model_path:
        if result.cpu_model is None:
            return TaskFailed(f"{src}: no sinusoid of small inputs (timestep embedding, RoPE tables) found to move to the CPU")
        onnx_io.save(result.cpu_model, cpu_model_path)
    write_json(sidecar, {"stage": declared, **result.io_changes})
    write_json(report_path, report)
    onnx_io.save(result.model, out)       # last: the model appears only with its report and sidecar
    errs = report.get("equivalence", {}).get("relative_error", {})
    log.info("preprocess %s: clean, max relative error %s", model_name,
             ", ".join(f"{k}={v:.2e}" for k, v in errs.items()))
    return True
