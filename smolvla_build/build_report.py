"""The build report: artifacts/report.md and report.json over every model x precision (sizes, build
and calibration times, validation metrics, fallbacks) and the size-vs-error chart."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from smolvla_runtime.model import ACTION_HEAD

from .precisions import effective_precisions


@dataclasses.dataclass(frozen=True)
class ReportSpec:
    models: tuple[str, ...]
    precisions: tuple[str, ...]
    contexts: dict                  # {model: {precision: the context build's info JSON}}
    validations: dict               # {model: {precision: the validation verdict JSON}}
    calibrations: dict              # {precision: calibration.json} of the integer precisions
    wanted: dict                    # {model: the precision evaluation.precision asks for}
    computes_in: dict               # {precision: what the HTP computes it in (Precision.computes_in)}
    meta: dict                      # pipeline, preset, weights, toolchain, soc
    export_info: Path | None        # the export's export_info.json; None for an ONNX source
    md: Path
    js: Path
    chart: Path


def size_vs_error_chart(stages: dict, models: list, precisions: list, path: str, computes_in: dict) -> None:
    """One point per precision built: the three contexts' total MB against the action chunk's max abs
    error after the 10-step rollout (the action head's validation), log scale."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .fsutil import atomic_path
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, p in enumerate(precisions):
        mb = sum(stages[f"{m}-{p}"]["context_bytes"] for m in models) / 1e6
        err = stages[f"{ACTION_HEAD}-{p}"]["metrics"]["max_abs"] if ACTION_HEAD in models else \
            max(stages[f"{m}-{p}"]["metrics"]["max_abs"] for m in models)
        ax.scatter([mb], [max(err, 1e-9)], s=40)
        ax.annotate(f"{p}: {computes_in[p]}" if computes_in[p] != p else p, (mb, max(err, 1e-9)), textcoords="offset points", xytext=(6, 6 if i % 2 == 0 else -12),
                    fontsize=9)        # alternate sides: fp16 and fp32 often sit on the same point
    ax.set_yscale("log")
    ax.set_xlabel("HTP contexts, total MB (" + ", ".join(models) + ")")
    ax.set_ylabel("max abs error, action chunk after the rollout" if ACTION_HEAD in models else "max abs error")
    ax.grid(alpha=0.3)
    ax.margins(x=0.25, y=0.25)
    ax.set_title("context size against rollout error, per precision", fontsize=10)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, bbox_inches="tight")      # every label whole, however far it reaches
    plt.close(fig)


def write_report(spec: ReportSpec):
    """The `report` action. A calibration's time is shared by every model and every precision with
    the same sample count."""
    import json

    from .fsutil import write_json, write_text
    models, precisions, wanted, meta, chart = spec.models, spec.precisions, spec.wanted, spec.meta, spec.chart

    def read(path):
        return json.loads(Path(path).read_text())
    ctx = {m: {p: read(spec.contexts[m][p]) for p in precisions} for m in models}
    val = {m: {p: read(spec.validations[m][p]) for p in precisions} for m in models}
    calibration_seconds = {p: read(f)["seconds"] for p, f in spec.calibrations.items()}
    positions = (read(spec.export_info)["vision_position_ids"] if spec.export_info else
                 {"convention": None, "why": "an ONNX source: exported elsewhere"})
    data = {"meta": dict(meta, vision_position_ids=positions), "runtime_precision": effective_precisions(val, wanted),
            "stages": {}}
    lines = [f"# smolvla-build report: {meta['pipeline']}", "",
             f"preset {meta['preset']}, weights {meta['weights']}, toolchain {meta['toolchain']}, "
             f"SoC {meta['soc']['name']} (soc_model {meta['soc']['soc_model']}, v{meta['soc']['htp_arch']})", "",
             f"vision position ids: {positions['convention'] or '-'} ({positions['why']})", ""]
    if meta["weights"] == "random":
        lines += ["**RANDOM WEIGHTS: the policy's actions are meaningless.**", ""]
    data["computes_in"] = dict(spec.computes_in)
    lines += ["What the HTP computes each precision in: " + "; ".join(f"**{p}**: {spec.computes_in[p]}" for p in precisions)
              + ". Two precisions that compute alike give alike errors.", ""]
    lines += ["| model | precision | context MB | build s | calibration s | task peak MB | cosine | max abs | max rel | PSNR dB "
              "| status |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in models:
        for p in precisions:
            c, v = ctx[m][p], val[m][p]
            met = v["metrics"]
            cal_s = calibration_seconds.get(p)
            data["stages"][f"{m}-{p}"] = {"context_bytes": c["context_bytes"], "build_seconds": c["seconds"],
                                          "calibration_seconds": cal_s,
                                          "peak_rss_mb": c["peak_rss_mb"], "metrics": met, "status": v["status"],
                                          "reasons": v["reasons"], "fallback_to": v.get("fallback_to"),
                                          "gates": v.get("gates")}
            lines.append(f"| {m} | {p} | {c['context_bytes'] / 1e6:.1f} | {c['seconds']:.1f} | "
                         f"{'-' if cal_s is None else f'{cal_s:.1f}'} | {'-' if c['peak_rss_mb'] is None else round(c['peak_rss_mb'])} | "
                         f"{met['cosine']:.6f} | {met['max_abs']:.3g} | {met['max_rel']:.2g} | {met['psnr_db']:.1f} | "
                         f"{v['status']} |")
    if chart:
        size_vs_error_chart(data["stages"], models, precisions, chart, spec.computes_in)
        lines += ["", f"![context size against rollout error]({Path(chart).name})"]
    asked = sorted(set(wanted.values()))
    lines += ["", f"## Runtime precision (evaluation.precision: {asked[0] if len(asked) == 1 else wanted})", ""]
    for m, e in data["runtime_precision"].items():
        extra = f" (fell back from {e['fell_back_from']}: {'; '.join(e['why'])})" if "fell_back_from" in e else ""
        lines.append(f"- {m}: {e['precision']}{extra}")
    write_json(spec.js, data)
    write_text(spec.md, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return True
