"""`python -m bench.fp16_rewrites`: the full preset's fp16 builds with and without each family of fp16
rewrites, validated in one run. Artifacts folders of the default pipeline (fp16, ort-qnn): the first
builds as `doit` does; each other takes the first's exported graphs (`source.weights: onnx`) and
preprocesses them with one family of passes replaced by the identity (in that doit process only),
with `validation.on_saturation: warn` so that a miss is reported rather than stopping the run:
- the fp16-safe RMSNorm (`passes/rmsnorm.py`), in the models that have RMSNorms (the LLM backbone
  and the action head);
- the activation forms (`passes/activations.py`: the tanh GELU of the vision encoder, the SiLU of
  the LLM and the action head).
Per model: the largest fp32 reference intermediate on validation's inputs, how many are beyond fp16,
cosine, max abs, max abs / max |reference|, RMS distance of the HTP output to fp32, and the status
the default pipeline would give. Merged into bench/results.json and BENCHMARKS.md (section 16)."""

from __future__ import annotations

import json
import shutil
import sys

import yaml

from .common import ROOT, doit_cmd, run_measured

ALL_MODELS = ("vision_encoder", "llm_backbone", "action_head")
# name -> (the passes left out, the models they change)
LEFT_OUT = {"rmsnorm": (("rmsnorm_over_max",), ("llm_backbone", "action_head")),
            "activations": (("tanh_gelu_half_first", "silu_through_tanh"), ALL_MODELS)}


def _doit_without(family: str, argv: list[str]) -> int:
    """doit in this process, the family's passes replaced by the identity."""
    from doit.doit_cmd import DoitMain

    import smolvla_build.passes.pipeline as passes
    for name in LEFT_OUT[family][0]:
        setattr(passes, name, lambda model: model)
    return DoitMain().run(argv)


def _report(root, model: str) -> dict:
    import numpy as np
    v = json.loads((root / "validation" / f"{model}-fp16.json").read_text())
    m = v["metrics"]
    arrays = np.load(root / "validation" / f"{model}-fp16.npz")
    rms = float(np.sqrt(np.mean((arrays["htp"].astype(np.float64) - arrays["reference"]) ** 2)))
    return {"status": v["status"], "reasons": v["reasons"], "cosine": m["cosine"], "max_abs": m["max_abs"],
            "max_rel": m["max_rel"], "rms_to_reference": rms, "largest_intermediate": v["intermediate_max_abs"],
            "beyond_fp16": len(v["intermediates_beyond_fp16"])}


def fp16_rewrites(log) -> dict:
    from .build import write_pipeline
    base = ROOT / "artifacts" / "bench-fp16-rewrites"
    shutil.rmtree(base, ignore_errors=True)
    with_path = write_pipeline(base / "with")
    log("  with every rewrite: export, preprocess, contexts, validate ...")
    seconds = {"with": run_measured(doit_cmd(with_path, *[f"validate:{m}-fp16" for m in ALL_MODELS]))["seconds"]}
    out = {"models": {m: {"with": _report(base / "with" / "artifacts", m)} for m in ALL_MODELS}}
    for family, (_, models) in LEFT_OUT.items():
        path = write_pipeline(base / f"without-{family}")
        data = yaml.safe_load(path.read_text())
        data["source"] = {"preset": data["source"]["preset"], "weights": "onnx",
                          "path": str(base / "with" / "artifacts" / "export")}
        data["validation"]["on_saturation"] = "warn"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        log(f"  without the {family} rewrites: preprocess, contexts, validate ...")
        cmd = [sys.executable, "-m", "bench.fp16_rewrites", "--doit-without", family,
               *doit_cmd(path, *[f"validate:{m}-fp16" for m in models])[3:]]        # doit's own arguments
        seconds[f"without {family}"] = run_measured(cmd)["seconds"]
        for m in models:
            r = _report(base / f"without-{family}" / "artifacts", m)
            # the default pipeline fails a miss: no fp32 is listed to fall back to
            r["default_pipeline_status"] = "pass" if not r["reasons"] else "fail"
            out["models"][m][f"without {family}"] = r
            log(f"  {m} without {family}: RMS to fp32 {r['rms_to_reference']:.3g} "
                f"(with: {out['models'][m]['with']['rms_to_reference']:.3g})")
    out["seconds"] = seconds
    return out


def section(f: dict) -> list[str]:
    L = ["", "## 16. fp16 with and without the fp16 rewrites (full preset, ort-qnn)", "",
         f"Measured by `{f['command']}` on {f['date']}, on {f.get('machine', 'the machine above')} (a separate run "
         "from the sections above): the default pipeline's fp16 build, once as `doit` builds it and once per "
         "family of rewrites from the same exported graphs with that family left out: the fp16-safe RMSNorm "
         "(`passes/rmsnorm.py`) and the activation forms (`passes/activations.py`). Validated on validation's own "
         "inputs in HTP emulation. max rel = max abs / max |reference|; RMS = RMS distance of the HTP output to "
         "fp32 (the action head's: its whole rollout). Status: what the default pipeline gives "
         "(`on_fallback_miss: fail`, no fp32 listed).", "",
         "| model | build | largest reference intermediate | beyond fp16 | cosine | max abs | max rel | RMS | status |",
         "|---|---|---|---|---|---|---|---|---|"]
    for m, v in f["models"].items():
        for side, r in v.items():
            status = r.get("default_pipeline_status", r["status"])
            rms = f"{r['rms_to_reference']:.3g}" if "rms_to_reference" in r else "-"
            L.append(f"| {m} | {side if side != 'without' else 'without rmsnorm'} | {r['largest_intermediate']:.4g} | "
                     f"{r['beyond_fp16']} | {r['cosine']:.6f} | {r['max_abs']:.3g} | {r['max_rel']:.4f} | {rms} | {status} |")
    why = [f"{m} {side}: {'; '.join(r['reasons'])}" for m, v in f["models"].items() for side, r in v.items()
           if side != "with" and r["reasons"]]
    L += ["", "Reasons: " + ("; ".join(why) if why else "none") + "."]
    only_census = [f"{m} {side}" for m, v in f["models"].items() for side, r in v.items()
                   if side != "with" and r["reasons"] and all("beyond the fp16 range" in x for x in r["reasons"])]
    if only_census:
        L += ["", f"{', '.join(only_census)}: the emulated output still met the output gates; "
              "the miss is the fp32 reference's intermediates beyond fp16 alone, the guard for a device whose "
              "kernels saturate where the emulator's did not (docs/runtimes.md, \"Known limits\")."]
    return L


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--doit-without":
        return _doit_without(sys.argv[2], sys.argv[3:])
    from .common import machine
    from .benchmarks_md import merge_scenario
    res = fp16_rewrites(lambda m: print(m, file=sys.stderr, flush=True))
    res["machine"] = machine()
    merge_scenario("fp16_rewrites", res, "python -m bench.fp16_rewrites")
    return 0


if __name__ == "__main__":
    sys.exit(main())
