"""divergence: each precision's closed-loop divergence from the fp32 policy (`doit divergence`).

The precisions in `evaluation.divergence`, on the evaluation's episodes; not part of a bare `doit`
(smolvla_build/evaluate/divergence.py)."""

from __future__ import annotations

from smolvla_runtime.host import planned_runtime
from smolvla_runtime.model import MODELS

from ..evaluate.divergence import DivergenceSpec
from ..evaluate.scale import Run
from .keys import action, declare

FAMILY = "divergence"
DIVERGENCE = action("evaluate.divergence:divergence_task")
DEFAULT = False


def gen_tasks(build):
    pipe, layout = build.pipe, build.layout
    ev, src = pipe.section("evaluation"), pipe.source
    runtime = planned_runtime(ev["runtime"], pipe.soc.htp_arch)
    out = layout.divergence_dir
    runs = {}
    for p in ev["divergence"]:
        source = pipe.policy_source(layout, precision=p, sdk=build.sdk)
        runs[p] = Run(source, out / p, tuple(source.files(runtime)), shadow=True)
    # the baseline's episodes are `doit eval`'s own where it ran the reference runtime: each episode
    # found there computed with the same policy files and settings is reused, not rerun
    reference = pipe.policy_source(layout, "reference")
    baseline = Run(reference, layout.eval_dir, tuple(reference.files()))
    fidelity = {p: {m: layout.proxy_fidelity(m, p) for m in MODELS} for p in ev["divergence"]} \
        if runtime == "proxy" else None
    meta = {"preset": src["preset"], "weights": src["weights"], "meaningless_actions": src["weights"] == "random"}
    spec = DivergenceSpec(runs=runs, baseline=baseline, episodes=pipe.episodes(), out_root=out,
                          config_dir=layout.libero_config, meta=meta, fidelity=fidelity, pipeline=pipe.path)
    yield declare(FAMILY, DIVERGENCE, spec, always=True, verbosity=2,       # like eval: checked per episode
                  file_dep=[f for r in [*runs.values(), baseline] for f in r.files],
                  targets=layout.divergence_files,
                  doc="closed-loop divergence from fp32 of each precision in evaluation.divergence (LIBERO on Ray)")
