"""The runtime policy (smolvla_runtime.policy) on a build's artifacts: per model the precision the
report chose, the runner of the pipeline's toolchain (layout), `Policy.from_artifacts`."""

from __future__ import annotations

import json

from smolvla_runtime.policy import Policy as RuntimePolicy
from smolvla_runtime.preprocessing import Normalizer, Tokenizer
from smolvla_runtime.runners import ReferenceRunner
from smolvla_runtime.stage import StageRunner

from .. import MODELS
from ..precisions import PrecisionRequest, Precisions
from .contexts import htp_runner


def runtime_precisions(layout, wanted: dict[str, str]) -> dict[str, str]:
    """Per model, the precision to run: what evaluation.precision asks for, or what the report says it
    fell back to (when the report was made for the same request)."""
    report = layout.report_json
    if report.is_file():
        chosen = json.loads(report.read_text())["runtime_precision"]
        return {m: chosen[m]["precision"] if chosen.get(m, {}).get("requested", wanted[m]) == wanted[m] else wanted[m]
                for m in wanted}
    return dict(wanted)


def reference_model(layout, model: str):
    """The model the reference runtime runs: the checked CPU copy `doit reference` writes."""
    path = layout.reference_model(model)
    if not path.is_file():
        from ..model_files import ModelFileError
        raise ModelFileError(f"{path}: missing; the reference runtime runs the CPU copy `doit reference:{model}` "
                             f"makes from {layout.preprocessed(model)}")
    return path


def _proxy(layout, model: str, precision: str):
    """The proxy runtime's model for `model` in `precision`, under evaluation.proxy_max_ratio."""
    from ..proxies import proxy_model
    return proxy_model(layout, model, precision, layout.pipe.section("evaluation")["proxy_max_ratio"])


def check_runtime(layout, runtime: str, wanted, models) -> None:
    """Before episodes start on Ray actors: what the proxy runtime would refuse, refused here in one
    line (ProxyError) rather than in every actor."""
    if runtime == "proxy":
        chosen = runtime_precisions(layout, PrecisionRequest(wanted).per_model(models))
        for m in models:
            _proxy(layout, m, chosen[m])


def stage_runners(layout, runtime: str, soc: dict, precisions: Precisions, wanted, models,
                  threads: int = 0) -> dict[str, StageRunner]:
    """`wanted`: a precision name, or {model: precision} (Pipeline.requested_precisions); `threads`:
    onnxruntime's intra-op threads for the CPU-run graphs (0: one per core)."""
    wanted = PrecisionRequest(wanted).per_model(models)
    chosen = runtime_precisions(layout, wanted)
    out = {}
    for m in models:
        if runtime == "reference":
            runner = ReferenceRunner(reference_model(layout, m), threads)
        elif runtime in ("ort-qnn", "qnn-net-run"):
            p = chosen[m]
            runner = htp_runner(layout, m, p, soc, precisions[p].settings, runtime)
        elif runtime == "proxy":
            runner = ReferenceRunner(_proxy(layout, m, chosen[m]), threads)
        else:
            raise ValueError(f"unknown runtime {runtime!r} (reference, ort-qnn, qnn-net-run, proxy)")
        out[m] = StageRunner(runner, layout.io_sidecar(m))
    return out


class Policy(RuntimePolicy):
    """The runtime policy, loaded from a build's artifacts."""

    @classmethod
    def from_artifacts(cls, layout, runtime: str, soc: dict, precisions: Precisions, wanted, n_action_steps: int,
                       seed: int = 0, threads: int = 0) -> "Policy":
        export = layout.export_dir
        stages = stage_runners(layout, runtime, soc, precisions, wanted, MODELS, threads)
        for s in stages.values():
            s.activate()
        return cls(stages, Tokenizer(export / "tokenizer.json"),
                   Normalizer(json.loads((export / "normalization.json").read_text())), n_action_steps, seed=seed)
