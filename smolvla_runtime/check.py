"""`python -m smolvla_runtime check BUNDLE`: does this machine compute what the build validated?

Each stage replays validation's recorded inputs (the bundle's `validation/<model>.npz`; the action
head over the whole flow-matching rollout from the recorded noise) on the chosen runtime, and its
output is compared with the fp32 reference's and with the HTP emulation's the build recorded. The
verdict is the build's own: the stage's gates against the fp32 reference (smolvla_runtime.compare:
judge). On the laptop's NPU this proves the device; here it runs on the reference runtime and in
HTP emulation. docs/bundle.md, "Proving a device".
"""

from __future__ import annotations

import time


def check_bundle(bundle_dir, runtime: str = "auto", soc_model: int | None = None) -> dict:
    """{bundle, runtime, stages: [{model, precision, vs_reference, vs_emulation, reasons, seconds}],
    passed}: every stage of the bundle against its recorded outputs."""
    from .bundle import Bundle
    from .compare import compare, judge
    from .files import load_npz
    from .host import resolve_runtime
    from .model import MODELS, STAGES
    from .stage import StageRunner, rollout_from_feeds
    b = Bundle(bundle_dir)
    b.verify(soc_model=soc_model)
    runtime = resolve_runtime(runtime, b.soc.htp_arch)
    p = b.preset
    stages = []
    for m in MODELS:
        entry = b.models[m]
        v = entry["validation"]
        arrays = load_npz(b.path(v["arrays"]))
        feeds = {k[len("in/"):]: a for k, a in arrays.items() if k.startswith("in/")}
        stage = StageRunner(b.runner(m, runtime), b.path(entry["sidecar"])).activate()
        t0 = time.perf_counter()
        if STAGES[m].rolled_out:
            out, _ = rollout_from_feeds(stage, feeds, p.num_steps)
        else:
            out = stage.infer(feeds)[next(iter(entry["stage"]["outputs"]))]
        seconds = time.perf_counter() - t0
        vs_reference, vs_emulation = compare(arrays["reference"], out), compare(arrays["htp"], out)
        stages.append({"model": m, "precision": entry["precision"], "judged_on": v["judged_on"],
                       "vs_reference": _summary(vs_reference), "vs_emulation": _summary(vs_emulation),
                       "built": {k: v["metrics"][k] for k in ("cosine", "max_abs")},
                       "reasons": judge(vs_reference, [], m, v["gates"]), "gates": v["gates"], "seconds": seconds})
    return {"bundle": str(bundle_dir), "runtime": runtime, "stages": stages,
            "passed": all(not s["reasons"] for s in stages)}


def _summary(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("cosine", "max_abs", "max_rel", "psnr_db", "saturation")}


def render(result: dict) -> str:
    """The check as a table a person reads, and the verdict."""
    lines = [f"{result['bundle']} on the {result['runtime']} runtime: validation's recorded inputs replayed",
             "",
             "| stage | precision | cosine vs fp32 | max abs vs fp32 | max rel | max abs vs the build's HTP emulation | "
             "seconds | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for s in result["stages"]:
        r, e = s["vs_reference"], s["vs_emulation"]
        verdict = "pass" if not s["reasons"] else "FAIL: " + "; ".join(s["reasons"])
        lines.append(f"| {s['model']} | {s['precision']} | {r['cosine']:.6f} | {r['max_abs']:.3g} | {r['max_rel']:.2g} | "
                     f"{e['max_abs']:.3g} | {s['seconds']:.2f} | {verdict} |")
    lines += ["", "every stage passes its gates against the fp32 reference" if result["passed"] else
              f"{sum(bool(s['reasons']) for s in result['stages'])} stage(s) miss their gates: this runtime does not "
              "compute what the build validated"]
    return "\n".join(lines)
