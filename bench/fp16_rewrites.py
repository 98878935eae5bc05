"""`python -m bench.fp16_rewrites`: the full preset's fp16 builds with and without the fp16-safe
RMSNorm rewrite (`passes/rmsnorm.py`), validated in one run. Two artifacts folders of the default
pipeline (fp16, ort-qnn): the first builds as `doit` does; the second takes the first's exported
graphs (`source.weights: onnx`) and preprocesses them with that one pass replaced by the identity
(in this bench's own doit process only), with `validation.on_saturation: warn` so that a miss is
reported rather than stopping the run. Per model whose graph has RMSNorms (the LLM backbone and the
action head): the largest fp32 reference intermediate on validation's inputs, how many are beyond
fp16, cosine, max abs, max abs / max |reference|, and the status the default pipeline would give.
Merged into bench/results.json and BENCHMARKS.md (section 16)."""

from __future__ import annotations

import json
import shutil
import sys

import yaml

from .common import ROOT, doit_cmd, run_measured

MODELS = ("llm_backbone", "action_head")          # the graphs with RMSNorms (the vision encoder has LayerNorms)


def _doit_without_the_rewrite(argv: list[str]) -> int:
    """doit in this process, the RMSNorm rewrite replaced by the identity."""
    from doit.doit_cmd import DoitMain

    import smolvla_build.passes.pipeline as passes
    passes.rmsnorm_over_max = lambda model: model
    return DoitMain().run(argv)


def _report(root, model: str) -> dict:
    v = json.loads((root / "validation" / f"{model}-fp16.json").read_text())
    m = v["metrics"]
    return {"status": v["status"], "reasons": v["reasons"], "cosine": m["cosine"], "max_abs": m["max_abs"],
            "max_rel": m["max_rel"], "largest_intermediate": v["intermediate_max_abs"],
            "beyond_fp16": len(v["intermediates_beyond_fp16"])}


def fp16_rewrites(log) -> dict:
    from .build import write_pipeline
    base = ROOT / "artifacts" / "bench-fp16-rewrites"
    shutil.rmtree(base, ignore_errors=True)
    targets = [f"validate:{m}-fp16" for m in MODELS]
    with_path = write_pipeline(base / "with")
    log("  with the rewrite: export, preprocess, contexts, validate ...")
    with_run = run_measured(doit_cmd(with_path, *targets))
    without_path = write_pipeline(base / "without")
    data = yaml.safe_load(without_path.read_text())
    data["source"] = {"preset": data["source"]["preset"], "weights": "onnx",
                      "path": str(base / "with" / "artifacts" / "export")}
    data["validation"]["on_saturation"] = "warn"
    without_path.write_text(yaml.safe_dump(data, sort_keys=False))
    log("  without it: preprocess, contexts, validate ...")
    cmd = [sys.executable, "-m", "bench.fp16_rewrites", "--doit-without-the-rewrite",
           *doit_cmd(without_path, *targets)[3:]]                 # doit's own arguments
    without_run = run_measured(cmd)
    out = {"models": {}}
    for m in MODELS:
        out["models"][m] = {"with": _report(base / "with" / "artifacts", m),
                            "without": _report(base / "without" / "artifacts", m)}
        w = out["models"][m]["without"]
        # the default pipeline fails a miss: no fp32 is listed to fall back to
        w["default_pipeline_status"] = "pass" if not w["reasons"] else "fail"
        log(f"  {m}: largest intermediate {out['models'][m]['with']['largest_intermediate']:.3g} with, "
            f"{w['largest_intermediate']:.3g} without")
    out["seconds"] = {"with": with_run["seconds"], "without": without_run["seconds"]}
    return out


def section(f: dict) -> list[str]:
    L = ["", "## 16. fp16 with and without the fp16-safe RMSNorm (full preset, ort-qnn)", "",
         f"Measured by `{f['command']}` on {f['date']}, on {f.get('machine', 'the machine above')} (a separate run "
         "from the sections above): the default pipeline's fp16 build of the LLM backbone and the action head, "
         "once as `doit` builds it and once from the same exported graphs with the RMSNorm rewrite "
         "(`passes/rmsnorm.py`) left out, validated on validation's own inputs. max rel = max abs / max "
         "|reference|. Status: what the default pipeline gives (`on_fallback_miss: fail`, no fp32 listed).", "",
         "| model | RMSNorm rewrite | largest reference intermediate | beyond fp16 | cosine | max abs | max rel | status |",
         "|---|---|---|---|---|---|---|---|"]
    for m, v in f["models"].items():
        for side in ("with", "without"):
            r = v[side]
            status = r.get("default_pipeline_status", r["status"])
            L.append(f"| {m} | {side} | {r['largest_intermediate']:.4g} | {r['beyond_fp16']} | {r['cosine']:.6f} | "
                     f"{r['max_abs']:.3g} | {r['max_rel']:.4f} | {status} |")
    why = [f"{m} without: {'; '.join(v['without']['reasons'])}" for m, v in f["models"].items() if v["without"]["reasons"]]
    L += ["", "Reasons: " + ("; ".join(why) if why else "none") + "."]
    only_census = [m for m, v in f["models"].items()
                   if v["without"]["reasons"] and all("beyond the fp16 range" in r for r in v["without"]["reasons"])]
    if only_census:
        L += ["", f"{', '.join(only_census)} without the rewrite: the emulated output still met the output gates; "
              "the miss is the fp32 reference's intermediates beyond fp16 alone, the guard for a device whose "
              "kernels saturate where the emulator's did not (docs/runtimes.md, \"Known limits\")."]
    return L


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--doit-without-the-rewrite":
        return _doit_without_the_rewrite(sys.argv[2:])
    from .common import machine
    from .report import merge_scenario
    res = fp16_rewrites(lambda m: print(m, file=sys.stderr, flush=True))
    res["machine"] = machine()
    merge_scenario("fp16_rewrites", res, "python -m bench.fp16_rewrites")
    return 0


if __name__ == "__main__":
    sys.exit(main())
