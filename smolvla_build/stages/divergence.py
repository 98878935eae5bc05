"""divergence: closed-loop divergence of each precision in `evaluation.divergence` from the fp32
policy, on the evaluation's episodes (`doit divergence`, not part of a bare `doit`;
smolvla_build/evaluate/divergence.py)."""

from __future__ import annotations

from .. import MODELS
from .keys import action

FAMILY = "divergence"
DIVERGENCE = action("evaluate.divergence:divergence_task")
DEFAULT = False
BASELINE = "fp32-reference"           # the run of the fp32 reference policy acting


def gen_tasks(pipe, layout, toolchain):
    from smolvla_runtime.host import planned_runtime
    ev = pipe.section("evaluation")
    runtime = planned_runtime(ev["runtime"], int(pipe.soc["htp_arch"]))
    files = {p: [str(f) for f in layout.runtime_files(runtime)] for p in ev["divergence"]}
    files[BASELINE] = [str(f) for f in layout.runtime_files("reference")]
    fidelity = {p: {m: str(layout.proxy_fidelity(m, p)) for m in MODELS} for p in ev["divergence"]} \
        if runtime == "proxy" else None
    out = layout.root / "eval" / "divergence"
    meta = {"preset": pipe.source["preset"], "weights": pipe.source["weights"],
            "meaningless_actions": pipe.source["weights"] == "random"}
    runs = {p: {"runtime": ev["runtime"], "precision": p, "shadow": True, "out_root": str(out / p)}
            for p in ev["divergence"]}
    # the baseline's episodes are `doit eval`'s own where it ran the reference runtime: each episode
    # found there computed with the same policy files and settings is reused, not rerun
    runs[BASELINE] = {"runtime": "reference", "precision": None, "shadow": False, "out_root": str(layout.root / "eval")}
    kw = {"pipeline_path": str(pipe.path), "precisions": list(ev["divergence"]), "runs": runs, "baseline": BASELINE,
          "files": files, "out_root": str(out), "meta": meta, "htp_arch": int(pipe.soc["htp_arch"]), "fidelity": fidelity}
    yield {
        "basename": FAMILY,
        "doc": "closed-loop divergence from fp32 of each precision in evaluation.divergence (LIBERO on Ray)",
        "actions": [(DIVERGENCE, [kw])],
        "file_dep": sorted({f for fs in files.values() for f in fs}),
        "targets": [str(out / n) for n in ("divergence.json", "summary.md", "divergence.png")],
        # always runs: like eval, each episode's result records the policy it was computed with
        "uptodate": [False],
        "clean": True,
        "verbosity": 2,
    }
