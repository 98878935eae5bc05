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
import json
import math
from pathlib import Path

import numpy as np

class ShadowedPolicy:
    """`acting` runs the episode exactly as it would alone (the same noise draws); `shadow` plans
    each chunk on the same observation and noise, and the max abs difference of each executed action
    is kept in `diffs` (one per control step the episode ran)."""

    def __init__(self, acting, shadow):
        self.acting, self.shadow = acting, shadow
        self.diffs: list[float] = []
        self.pending: collections.deque = collections.deque()

    @property
    def seed(self) -> int:
        return self.acting.seed

    @seed.setter
    def seed(self, value: int) -> None:
        self.acting.seed = self.shadow.seed = value

    @property
    def timings(self) -> list:
        return self.acting.timings

    @property
    def needs_observation(self) -> bool:
        return self.acting.needs_observation

    def reset(self) -> None:
        self.acting.reset()
        self.shadow.reset()
        self.diffs, self.pending = [], collections.deque()

    def select_action(self, images, state, task: str) -> np.ndarray:
        p = self.acting
        if not p.queue:
            noise = p.rng.standard_normal(p.chunk_shape).astype(np.float32)      # predict_chunk's own draw
            chunk = p.predict_chunk(images, state, task, noise=noise)[: p.n_action_steps]
            ref = self.shadow.predict_chunk(images, state, task, noise=noise)[: p.n_action_steps]
            self.pending = collections.deque(np.abs(np.asarray(chunk, np.float64) - np.asarray(ref, np.float64)).max(axis=1))
            p.queue.extend(chunk)
        self.diffs.append(float(self.pending.popleft()))     # the executed action's: an episode may end mid-chunk
        return p.queue.popleft()


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"median": None, "p95": None, "max": None, "n": 0}
    v = np.asarray(values, np.float64)
    return {"median": float(np.median(v)), "p95": float(np.percentile(v, 95)), "max": float(v.max()), "n": int(v.size)}


def ee_divergence(ee: list, baseline_ee: list) -> dict:
    """End-effector distance (m) to the baseline episode's at the same step, over their common steps."""
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


def divergence_task(kw: dict):
    """The `divergence` action. kw: pipeline_path, precisions, runs ({run: runtime, precision, shadow,
    out_root}: one per precision, and the baseline's), baseline (its run's name), files ({run: the
    policy files it reads}), out_root (the summary's), meta, htp_arch, fidelity ({precision: {model:
    fidelity JSON}}, proxy only)."""
    import logging

    from smolvla_runtime.host import resolve_runtime

    from ..fsutil import write_json, write_text
    from .scale import result_path, run_eval, episodes
    from doit.exceptions import TaskFailed
    log = logging.getLogger("smolvla_build.divergence")
    root, meta = Path(kw["out_root"]), kw["meta"]
    if not kw["precisions"]:
        return TaskFailed(f"{kw['pipeline_path']}: evaluation.divergence lists no precision; expected the precisions to "
                          "compare with the fp32 policy, e.g. [fp16, w8a16]")
    from ..config import load_pipeline
    ev = load_pipeline(kw["pipeline_path"]).section("evaluation")
    collected = collections.defaultdict(list)
    for name, run in kw["runs"].items():
        rt = resolve_runtime(run["runtime"], kw["htp_arch"])
        log.info("divergence: %s episodes (%s runtime%s)", name, rt, ", fp32 reference shadow" if run["shadow"] else "")
        run_eval(kw["pipeline_path"], rt, kw["files"][name], run["out_root"], meta, precision=run["precision"],
                 shadow=run["shadow"], summarize=name != kw["baseline"])     # eval's summary stays eval's
        for ep in episodes(ev):
            p = result_path(run["out_root"], *ep)
            if p.is_file():
                collected[name].append(json.loads(p.read_text()))
    baseline = collected.pop(kw["baseline"])
    d = summarize({p: collected[p] for p in kw["precisions"]}, baseline, meta["meaningless_actions"])
    fidelity = {p: {m: json.loads(Path(f).read_text())["ratio"] for m, f in files.items()}
                for p, files in (kw["fidelity"] or {}).items()}
    write_json(root / "divergence.json", dict(d, proxy_ratio=fidelity))
    chart(d, root / "divergence.png")
    write_text(root / "summary.md", summary_md(d, fidelity))
    for p, r in d["precisions"].items():
        a = r["action_diff"]
        log.info("divergence %s: action diff median %s, p95 %s, max %s over %d control steps; success %d/%d "
                 "(fp32 %d/%d)", p, _fmt(a["median"]), _fmt(a["p95"]), _fmt(a["max"]), r["control_steps"],
                 r["successes"], r["episodes"], d["baseline"]["successes"], d["baseline"]["episodes"])
    log.info("divergence: %s", root / "summary.md")
    return True
