"""The runtime policy (smolvla_runtime.policy.Policy) on a build's artifacts.

`PolicySource` is everything a policy reads from a build, as a frozen value a task spec carries (no
action reloads the pipeline file): the layout, the runtime, the preset, the SoC, the precisions and
which one each model asks for. `load_policy` makes the policy: per model the precision the report
chose (following validation's fallbacks) and the runner of the runtime: the reference runtime's CPU
copy, the HTP context of the layout's toolchain (ort-qnn, qnn-net-run), or a precision's measured
CPU proxy (docs/runtimes.md, "CPU proxies"). Light at import: task generation builds sources.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from smolvla_runtime.files import ModelFileError
from smolvla_runtime.htp import HtpPerformance, Soc
from smolvla_runtime.model import MODELS

from ..layout import Layout
from ..precisions import Precisions


class ProxyError(ModelFileError):
    """A proxy that cannot be used; str() names its fidelity file and says why, in one line."""


@dataclasses.dataclass(frozen=True)
class PolicySource:
    layout: Layout
    runtime: str                        # auto | reference | ort-qnn | qnn-net-run | proxy
    preset: str
    soc: Soc | None                     # None on the reference runtime (it runs no context)
    precisions: Precisions
    wanted: dict                        # {model: the precision evaluation.precision asks for}
    n_action_steps: int
    seed: int = 0
    threads: int = 0                    # onnxruntime's intra-op threads on the CPU (0: one per core)
    proxy_max_ratio: float = 0.2        # evaluation.proxy_max_ratio (runtime proxy)
    htp_performance: HtpPerformance | None = None   # evaluation.ort_qnn (runtime ort-qnn)
    qnn_net_run: dict | None = None     # evaluation.qnn_net_run (runtime qnn-net-run)
    sdk: object | None = None           # the QAIRT SDK, toolchains.qairt.sdk.Sdk (runtime qnn-net-run)

    def files(self, runtime: str | None = None) -> list[Path]:
        """The built files this policy reads on `runtime` (default: its own; auto must be resolved)."""
        return self.layout.runtime_files(runtime or self.runtime, self.precisions.listed)

    def on(self, runtime: str) -> "PolicySource":
        """This source on `runtime`. The fp32 reference runs no context and no proxy, so its source
        holds only what it reads: what runs it (calibrate; infer, eval and divergence on that runtime)
        does not depend on the precisions, the SoC or the HTP runtimes' settings."""
        if runtime == "reference":
            return dataclasses.replace(self, runtime=runtime, precisions=Precisions(()), wanted={}, soc=None,
                                       proxy_max_ratio=0.0, htp_performance=None, qnn_net_run=None, sdk=None)
        return dataclasses.replace(self, runtime=runtime)


def runtime_precisions(layout: Layout, wanted: dict[str, str]) -> dict[str, str]:
    """Per model, the precision to run: what evaluation.precision asks for, or what the report says it
    fell back to (when the report was made for the same request)."""
    report = layout.report_json
    if report.is_file():
        chosen = json.loads(report.read_text())["runtime_precision"]
        return {m: chosen[m]["precision"] if chosen.get(m, {}).get("requested", wanted[m]) == wanted[m] else wanted[m]
                for m in wanted}
    return dict(wanted)


def reference_model(layout: Layout, model: str) -> Path:
    """The model the reference runtime runs: the checked CPU copy `doit reference` writes."""
    path = layout.reference_model(model)
    if not path.is_file():
        raise ModelFileError(f"{path}: missing; the reference runtime runs the CPU copy `doit reference:{model}` "
                             f"makes from {layout.preprocessed(model)}")
    return path


def proxy_model(layout: Layout, model: str, precision: str, max_ratio: float) -> Path:
    """The model the proxy runtime runs for `model` in `precision`, checked against its measured
    fidelity (ProxyError when it was not measured, or is farther from the HTP than `max_ratio` of
    the HTP's own distance to fp32)."""
    info = layout.proxy_fidelity(model, precision)
    if not info.is_file():
        raise ProxyError(f"{info}: missing; the proxy runtime runs what `doit proxy:{model}-{precision}` measured")
    f = json.loads(info.read_text())
    if not f["ratio"] <= max_ratio:
        raise ProxyError(f"{info}: the {f['kind']} proxy of {model} in {precision} is {100 * f['ratio']:.0f}% of the "
                         f"HTP's own distance to fp32 away from the HTP, over evaluation.proxy_max_ratio {max_ratio}: "
                         "run this precision on ort-qnn")
    return Path(f["proxy"])


def check_runtime(source: PolicySource, runtime: str) -> None:
    """Before episodes start on Ray actors: what the proxy runtime would refuse, refused here in one
    line (ProxyError) rather than in every actor."""
    if runtime == "proxy":
        chosen = runtime_precisions(source.layout, source.wanted)
        for m in MODELS:
            proxy_model(source.layout, m, chosen[m], source.proxy_max_ratio)


def stage_runners(source: PolicySource, runtime: str) -> dict:
    """{model: StageRunner} on `runtime` (resolved: reference, ort-qnn, qnn-net-run or proxy)."""
    from smolvla_runtime.runners import ReferenceRunner
    from smolvla_runtime.stage import StageRunner

    from .contexts import htp_runner
    layout = source.layout
    chosen = runtime_precisions(layout, source.wanted)
    out = {}
    for m in MODELS:
        if runtime == "reference":
            runner = ReferenceRunner(reference_model(layout, m), source.threads)
        elif runtime in ("ort-qnn", "qnn-net-run"):
            p = chosen[m]
            runner = htp_runner(layout, m, p, source.soc, source.precisions[p].settings, runtime, sdk=source.sdk,
                                net_run=source.qnn_net_run, performance=source.htp_performance)
        elif runtime == "proxy":
            runner = ReferenceRunner(proxy_model(layout, m, chosen[m], source.proxy_max_ratio), source.threads)
        else:
            raise ValueError(f"unknown runtime {runtime!r} (reference, ort-qnn, qnn-net-run, proxy)")
        out[m] = StageRunner(runner, layout.io_sidecar(m))
    return out


def load_policy(source: PolicySource, runtime: str | None = None):
    """The policy of a build's artifacts on `runtime` (default: the source's; auto is resolved here
    and logged with its reason), its stages loaded."""
    from smolvla_runtime.host import resolve_runtime
    from smolvla_runtime.model import get_preset
    from smolvla_runtime.policy import Policy
    from smolvla_runtime.preprocessing import Normalizer, Tokenizer
    runtime = runtime or source.runtime
    if runtime == "auto":                   # a source on auto holds its SoC (only the reference's holds none)
        runtime = resolve_runtime(runtime, source.soc.htp_arch)
    stages = stage_runners(source, runtime)
    for s in stages.values():
        s.activate()
    preset, layout = get_preset(source.preset), source.layout
    return Policy(stages, Tokenizer(layout.tokenizer, preset.tokenizer_max_length),
                  Normalizer(json.loads(layout.normalization.read_text())), preset, source.n_action_steps,
                  seed=source.seed)
