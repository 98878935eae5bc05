"""Closed-loop divergence of a precision from the fp32 policy (`doit divergence`; docs/evaluation.md,
"Divergence from fp32").

Validation judges one call; in a loop the errors compound. For each precision listed in
`evaluation.divergence`, the evaluation's episodes (same suites, tasks, trials and seeds) run with
that precision on `evaluation.runtime`, while the fp32 reference policy, as a shadow, plans on the
same observation with the same noise: their action difference at each control step is numerics
alone. The same episodes run once more with the fp32 reference acting, the baseline of the
end-effector trajectories and of the success rate.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
from pathlib import Path

from ..layout import DIVERGENCE_FILES
from .scale import Episodes, Run

log = logging.getLogger("smolvla_build.divergence")


@dataclasses.dataclass(frozen=True)
class DivergenceSpec:
    runs: dict                          # {precision: Run with the fp32 shadow} (their runtime may be auto)
    baseline: Run                       # the fp32 reference policy acting: `doit eval`'s own reference episodes
    episodes: Episodes
    out_root: Path                      # divergence.json, summary.md, divergence.png
    config_dir: Path
    meta: dict
    fidelity: dict | None               # runtime proxy: {precision: {model: its fidelity JSON}}
    pipeline: Path                      # named in the one line when evaluation.divergence is empty


def _percentiles(values: list[float]) -> dict:
    import numpy as np
    if not values:
        return {"median": None, "p95": None, "max": None, "n": 0}
    v = np.asarray(values, np.float64)
    return {"median": float(np.median(v)), "p95": float(np.percentile(v, 95)), "max": float(v.max()), "n": int(v.size)}


def ee_divergence(ee: list, baseline_ee: list) -> dict:
    """End-effector distance (m) to the baseline episode's at the same step, over their common steps."""
    import numpy as np
    n = min(len(ee), len(baseline_ee))
    if n == 0:
        return {"max_m": None, "final_m": None, "steps": 0}
    d = np.linalg.norm(np.asarray(ee[:n], np.float64) - np.asarray(baseline_ee[:n], np.float64), axis=1)
    return {"max_m": float(d.max()), "final_m": float(d[-1]), "steps": n}


def summarize(per_precision: dict[str, list[dict]], baseline: list[dict], meaningless: bool) -> dict:
    """divergence.json's content: per precision, the action differences from the fp32 shadow, the
    end-effector divergence from the baseline episode of the same (suite, task, trial), and both
    success rates with Wilson intervals."""
    from .scale import wilson
    by_key = {(r["suite"], r["task_id"], r["trial"]): r for r in baseline if not r.get("error")}
    base_ok = list(by_key.values())
    base_s = sum(bool(r["success"]) for r in base_ok)
    out = {"meaningless_actions": meaningless, "baseline": {
        "episodes": len(base_ok), "successes": base_s, "wilson": wilson(base_s, len(base_ok))}, "precisions": {}}
    for p, results in per_precision.items():
        ok = [r for r in results if not r.get("error")]
        diffs = [d for r in ok for d in r.get("action_diffs", [])]
        ee = [ee_divergence(r["ee_positions"], by_key[k]["ee_positions"]) for r in ok
              if (k := (r["suite"], r["task_id"], r["trial"])) in by_key]
        s = sum(bool(r["success"]) for r in ok)
        out["precisions"][p] = {
            "episodes": len(ok), "errors": len(results) - len(ok), "control_steps": len(diffs),
            "action_diff": _percentiles(diffs),
            "ee_max_m": _percentiles([e["max_m"] for e in ee if e["max_m"] is not None]),
            "ee_final_m": _percentiles([e["final_m"] for e in ee if e["final_m"] is not None]),
            "successes": s, "wilson": wilson(s, len(ok)), "runtime": ok[0]["runtime"] if ok else None,
            "per_episode_diffs": {f"{r['suite']}/task{r['task_id']}/trial{r['trial']}": r.get("action_diffs", [])
                                  for r in ok}}
    return out


def _fmt(x, spec=".3g") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def summary_md(d: dict, fidelity: dict) -> str:
    """summary.md: one row per precision. `fidelity`: {precision: {model: ratio}} of the proxies run."""
    b = d["baseline"]
    lines = ["# Closed-loop divergence from the fp32 policy", ""]
    if d["meaningless_actions"]:
        lines += ["**RANDOM WEIGHTS: only the divergence is meaningful; the success rates prove the pipeline only.**", ""]
    lines += ["Action difference: max abs over the 7 action dimensions between the precision's executed action and the "
              "fp32 reference policy's on the same observation and noise, per control step, over all steps and episodes. "
              "End-effector divergence: distance to the fp32 baseline episode with the same seed at the same step.", "",
              "| precision | runtime | episodes | action diff median / p95 / max | EE max (m) median / max | "
              "EE final (m) median / max | success (95% Wilson) | fp32 success (95% Wilson) |",
              "|---|---|---|---|---|---|---|---|"]
    base = f"{b['successes']} / {b['episodes']} ({100 * b['wilson'][0]:.0f}-{100 * b['wilson'][1]:.0f}%)"
    for p, r in d["precisions"].items():
        a, em, ef = r["action_diff"], r["ee_max_m"], r["ee_final_m"]
        lines.append(f"| {p} | {r['runtime']} | {r['episodes']} | {_fmt(a['median'])} / {_fmt(a['p95'])} / {_fmt(a['max'])} | "
                     f"{_fmt(em['median'])} / {_fmt(em['max'])} | {_fmt(ef['median'])} / {_fmt(ef['max'])} | "
                     f"{r['successes']} / {r['episodes']} ({100 * r['wilson'][0]:.0f}-{100 * r['wilson'][1]:.0f}%) | {base} |")
    if fidelity:
        lines += ["", "The proxy runtime's measured distance to the HTP, as a fraction of the HTP's own distance to fp32 "
                  "(proxy tasks; evaluation.proxy_max_ratio bounds it):", ""]
        lines += [f"- {p}: " + ", ".join(f"{m} {100 * v:.0f}%" for m, v in ratios.items()) for p, ratios in fidelity.items()]
    errors = {p: r["errors"] for p, r in d["precisions"].items() if r["errors"]}
    if errors:
        lines += ["", "Episodes that ended in an error (not counted): " + ", ".join(f"{p}: {n}" for p, n in errors.items())]
    return "\n".join(lines) + "\n"


def chart(d: dict, path: Path) -> None:
    """Action difference per control step (median over episodes, and the max) for each precision."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..fsutil import atomic_path
    fig, ax = plt.subplots(figsize=(6, 3))
    for p, r in d["precisions"].items():
        runs = list(r["per_episode_diffs"].values())
        n = max((len(x) for x in runs), default=0)
        if not n:
            continue
        table = np.full((len(runs), n), np.nan)
        for i, x in enumerate(runs):
            table[i, : len(x)] = x
        line, = ax.plot(np.nanmedian(table, axis=0), label=f"{p} (median)")
        ax.plot(np.nanmax(table, axis=0), ls=":", color=line.get_color(), label=f"{p} (max)")
    ax.set_yscale("log")
    ax.set_xlabel("control step")
    ax.set_ylabel("max |action - fp32 action|")
    ax.set_title("closed-loop action difference from fp32" + (" (RANDOM WEIGHTS)" if d["meaningless_actions"] else ""),
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def divergence_task(spec: DivergenceSpec):
    """The `divergence` action: each precision's episodes with the fp32 shadow, the fp32 baseline's
    (reusing `doit eval`'s reference episodes), then divergence.json, summary.md and a chart."""
    from doit.exceptions import TaskFailed

    from ..fsutil import write_json, write_text
    from .scale import resolved, result_path, run_eval
    root, meta = Path(spec.out_root), spec.meta
    if not spec.runs:
        return TaskFailed(f"{spec.pipeline}: evaluation.divergence lists no precision; expected the precisions to "
                          "compare with the fp32 policy, e.g. [fp16, w8a16]")
    collected = collections.defaultdict(list)
    baseline = "fp32-reference"
    for name, run in [*spec.runs.items(), (baseline, spec.baseline)]:
        run = dataclasses.replace(run, policy=resolved(run.policy))
        log.info("divergence: %s episodes (%s runtime%s)", name, run.policy.runtime,
                 ", fp32 reference shadow" if run.shadow else "")
        # eval's summary stays eval's: the baseline's episodes are its own
        run_eval(run, spec.episodes, spec.config_dir, meta, summarize=name != baseline)
        for ep in spec.episodes.all():
            p = result_path(run.out_root, *ep)
            if p.is_file():
                collected[name].append(json.loads(p.read_text()))
    d = summarize({p: collected[p] for p in spec.runs}, collected[baseline], meta["meaningless_actions"])
    fidelity = {p: {m: json.loads(Path(f).read_text())["ratio"] for m, f in files.items()}
                for p, files in (spec.fidelity or {}).items()}
    write_json(root / DIVERGENCE_FILES["data"], dict(d, proxy_ratio=fidelity))
    chart(d, root / DIVERGENCE_FILES["chart"])
    write_text(root / DIVERGENCE_FILES["summary"], summary_md(d, fidelity))
    for p, r in d["precisions"].items():
        a = r["action_diff"]
        log.info("divergence %s: action diff median %s, p95 %s, max %s over %d control steps; success %d/%d "
                 "(fp32 %d/%d)", p, _fmt(a["median"]), _fmt(a["p95"]), _fmt(a["max"]), r["control_steps"],
                 r["successes"], r["episodes"], d["baseline"]["successes"], d["baseline"]["episodes"])
    log.info("divergence: %s", root / DIVERGENCE_FILES["summary"])
    return True
