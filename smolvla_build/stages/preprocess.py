"""preprocess: graph passes that make each stage model HTP-clean, with equivalence proven."""

from __future__ import annotations

import logging

from doit.exceptions import TaskFailed

from ..toolchains.fingerprint import passes_fingerprint
from .keys import code_digest, uptodate

FAMILY = "preprocess"
log = logging.getLogger("smolvla_build.preprocess")
EMBEDDING_ON_CPU = {"llm_backbone"}
SINUSOID_ON_CPU = {"llm_backbone", "action_head"}   # RoPE tables (both), timestep embedding (action head)


def run_preprocess(model_name: str, src: str, out: str, report_path: str, sidecar: str, embed_npy,
                   embed_npy_fp16, cpu_model_path, expected_io, options: dict):
    from pathlib import Path

    import numpy as np

    from .. import onnx_io
    from ..fsutil import save_npy, write_json
    from ..passes import PreprocessError, preprocess
    from ..passes.signature import SignatureError, check_signature

    from ..progress import heartbeat
    log.info("preprocess %s: loading %s", model_name, src)
    model = onnx_io.load(src)
    try:
        if expected_io is not None:
            check_signature(model, expected_io, src)
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
        save_npy(embed_npy_fp16, result.embedding_table.astype(np.float16))
    if cpu_model_path:
        if result.cpu_model is None:
            return TaskFailed(f"{src}: no sinusoid of small inputs (timestep embedding, RoPE tables) found to move to the CPU")
        onnx_io.save(result.cpu_model, cpu_model_path)
    write_json(sidecar, result.io_changes)
    write_json(report_path, report)
    onnx_io.save(result.model, out)       # last: the model appears only with its report and sidecar
    errs = report.get("equivalence", {}).get("relative_error", {})
    log.info("preprocess %s: clean, max relative error %s", model_name,
             ", ".join(f"{k}={v:.2e}" for k, v in errs.items()))
    return True


def gen_tasks(pipe, layout, toolchain):
    opts = pipe.section("preprocess")
    tools = passes_fingerprint()
    code = code_digest("passes")
    expected = None
    if pipe.source["weights"] == "onnx":
        from ..export.presets import get_preset, raw_stage_io     # data only: no torch, onnx or passes
        expected = raw_stage_io(get_preset(pipe.source["preset"]))
    for m in pipe.models:
        options = {"embedding_on_cpu": m in EMBEDDING_ON_CPU, "sinusoid_on_cpu": m in SINUSOID_ON_CPU,
                   "mask_bound": opts["mask_bound"],
                   "equivalence_rtol": opts["equivalence_rtol"], "seed": opts["seed"]}
        targets = [layout.preprocessed(m), layout.preprocess_report(m), layout.io_sidecar(m)]
        if options["embedding_on_cpu"]:
            targets += [layout.embed_table, layout.embed_table_fp16]
        if options["sinusoid_on_cpu"]:
            targets += [layout.cpu_model(m)]
        kw = {"options": options, "tools": tools, "code": code,
              "expected_io": expected[m] if expected else None}
        yield {
            "basename": FAMILY,
            "name": m,
            "doc": f"HTP-clean {m}: fold constants, CumSum->MatMul, bool->int32, bounded masks"
                   + (", embedding on CPU" if options["embedding_on_cpu"] else "")
            + (", sinusoids (timestep, RoPE) on CPU" if options["sinusoid_on_cpu"] else ""),
            "actions": [(run_preprocess, [], {
                "model_name": m, "src": str(layout.source_onnx(m)), "out": str(layout.preprocessed(m)),
                "report_path": str(layout.preprocess_report(m)), "sidecar": str(layout.io_sidecar(m)),
                "embed_npy": str(layout.embed_table) if options["embedding_on_cpu"] else None,
                "embed_npy_fp16": str(layout.embed_table_fp16) if options["embedding_on_cpu"] else None,
                "cpu_model_path": str(layout.cpu_model(m)) if options["sinusoid_on_cpu"] else None,
                "expected_io": kw["expected_io"], "options": options})],
            "file_dep": [str(layout.source_onnx(m))],
            "targets": [str(t) for t in targets],
            "uptodate": uptodate(kw),
            "clean": True,
        }
