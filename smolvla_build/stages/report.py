"""report: artifacts/report.md and report.json over every model x precision."""

from __future__ import annotations

from .keys import code_digest, uptodate

FAMILY = "report"


def effective_precisions(validations: dict, wanted: str) -> dict:
    """Per model: the precision the runtime uses for `wanted`, after fp16 fallbacks."""
    out = {}
    for model, per_precision in validations.items():
        v = per_precision.get(wanted, {})
        if v.get("status") == "fallback":
            out[model] = {"precision": v["fallback_to"], "fell_back_from": wanted, "why": v["reasons"]}
        else:
            out[model] = {"precision": wanted}
    return out


def run_report(models: list, precisions: list, contexts: dict, validations: dict, md: str, js: str, wanted: str,
               meta: dict):
    import json

    from ..fsutil import write_json, write_text

    ctx = {m: {p: json.loads(open(contexts[m][p]).read()) for p in precisions} for m in models}
    val = {m: {p: json.loads(open(validations[m][p]).read()) for p in precisions} for m in models}
    data = {"meta": meta, "runtime_precision": effective_precisions(val, wanted), "stages": {}}
    lines = [f"# smolvla-build report: {meta['pipeline']}", "",
             f"preset {meta['preset']}, weights {meta['weights']}, toolchain {meta['toolchain']}, "
             f"SoC {meta['soc']['name']} (soc_model {meta['soc']['soc_model']}, v{meta['soc']['htp_arch']})", ""]
    if meta["weights"] == "random":
        lines += ["**RANDOM WEIGHTS: the policy's actions are meaningless.**", ""]
    lines += ["| model | precision | context MB | build s | peak RSS MB | cosine | max abs | PSNR dB | status |",
              "|---|---|---|---|---|---|---|---|---|"]
    for m in models:
        for p in precisions:
            c, v = ctx[m][p], val[m][p]
            met = v["metrics"]
            data["stages"][f"{m}-{p}"] = {"context_bytes": c["context_bytes"], "build_seconds": c["seconds"],
                                          "peak_rss_mb": c["peak_rss_mb"], "metrics": met, "status": v["status"],
                                          "reasons": v["reasons"], "fallback_to": v.get("fallback_to")}
            lines.append(f"| {m} | {p} | {c['context_bytes'] / 1e6:.1f} | {c['seconds']:.1f} | {c['peak_rss_mb']:.0f} | "
                         f"{met['cosine']:.6f} | {met['max_abs']:.3g} | {met['psnr_db']:.1f} | {v['status']} |")
    lines += ["", f"## Runtime precision (evaluation.precision = {wanted})", ""]
    for m, e in data["runtime_precision"].items():
        extra = f" (fell back from {e['fell_back_from']}: {'; '.join(e['why'])})" if "fell_back_from" in e else ""
        lines.append(f"- {m}: {e['precision']}{extra}")
    write_json(js, data)
    write_text(md, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return True


def gen_tasks(pipe, layout, toolchain):
    models, precisions = pipe.models, list(pipe.precisions)
    contexts = {m: {p: str(layout.context_info(m, p)) for p in precisions} for m in models}
    validations = {m: {p: str(layout.validation(m, p)) for p in precisions} for m in models}
    src = pipe.source
    meta = {"pipeline": str(pipe.path), "preset": src["preset"], "weights": src["weights"], "toolchain": toolchain,
            "soc": dict(pipe.soc)}
    wanted = pipe.section("evaluation")["precision"]
    yield {
        "basename": FAMILY,
        "doc": "write artifacts/report.md and report.json (sizes, build times, validation, fallbacks)",
        "actions": [(run_report, [], {"models": models, "precisions": precisions, "contexts": contexts,
                                      "validations": validations, "md": str(layout.report_md),
                                      "js": str(layout.report_json), "wanted": wanted, "meta": meta})],
        "file_dep": [f for m in models for p in precisions for f in (contexts[m][p], validations[m][p])],
        "targets": [str(layout.report_md), str(layout.report_json)],
        "uptodate": uptodate({"meta": meta, "wanted": wanted, "code": code_digest("stages/report.py")}),
        "clean": True,
    }
