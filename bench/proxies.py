"""`python -m bench.proxies --pipeline FILE`: each precision's CPU proxy against the HTP emulation,
from a build of FILE: runs `doit` and `doit proxy` on it (what is up to date is not rerun), then
tabulates the proxy tasks' fidelity files and validation's reports (BENCHMARKS.md section 13):
per model and precision, the HTP's distance to fp32, the proxy's distance to the HTP and to fp32,
their ratio, and the proxy's and fp32's seconds per call."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from .common import ROOT, machine


def collect(pipeline: Path) -> dict:
    from smolvla_runtime.model import MODELS
    from smolvla_build.config import load_pipeline
    pipe = load_pipeline(pipeline)
    layout = pipe.layout("ort-qnn")
    t0 = time.time()
    for args in ([], ["proxy"]):
        subprocess.run([sys.executable, "-m", "doit", "-f", str(ROOT / "dodo.py"), "-d", str(ROOT), "-n", "2", *args,
                        f"pipeline={pipeline}"], check=True)
    rows = []
    for p in pipe.precisions:
        for m in MODELS:
            f = json.loads(layout.proxy_fidelity(m, p).read_text())
            v = json.loads(layout.validation(m, p).read_text())
            rows.append({"model": m, "precision": p, "kind": f["kind"], "validation": v["status"],
                         "rms_htp_to_reference": f["rms_htp_to_reference"], "rms_proxy_to_htp": f["rms_proxy_to_htp"],
                         "rms_proxy_to_reference": f["rms_proxy_to_reference"], "ratio": f["ratio"],
                         "proxy_s": f["proxy_seconds_per_call"], "reference_s": f["reference_seconds_per_call"],
                         "htp_emulation_s": v["htp_seconds_per_call"]})
    return {"machine": machine(), "pipeline": str(pipeline), "preset": pipe.source["preset"],
            "wall_s": round(time.time() - t0, 1), "rows": rows}


def markdown(res: dict) -> str:
    lines = ["| model | precision | proxy | HTP to fp32 (RMS) | proxy to HTP | proxy to fp32 | ratio | proxy s/call | "
             "fp32 s/call | HTP emulation s/call |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['precision']} | {r['kind']} | {r['rms_htp_to_reference']:.3g} | "
              f"{r['rms_proxy_to_htp']:.3g} | {r['rms_proxy_to_reference']:.3g} | {r['ratio']:.2f} | {r['proxy_s']:.3f} | "
              f"{r['reference_s']:.3f} | {r['htp_emulation_s']:.1f} |" for r in res["rows"]]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.proxies")
    ap.add_argument("--pipeline", type=Path, required=True)
    res = collect(ap.parse_args().pipeline)
    print(json.dumps(res, indent=2))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
