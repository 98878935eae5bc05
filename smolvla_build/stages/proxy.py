"""proxy: each precision's CPU proxy, measured against the HTP output validation recorded
(smolvla_build/proxies.py). Not part of a bare `doit`: `doit proxy`, or whatever the proxy runtime
needs (infer, eval and divergence with `evaluation.runtime: proxy` depend on these files)."""

from __future__ import annotations

from ..toolchains.fingerprint import passes_fingerprint
from .keys import action, uptodate

FAMILY = "proxy"
PROXY = action("proxies:proxy_task")
DEFAULT = False


def gen_tasks(pipe, layout, toolchain):
    tools = passes_fingerprint()
    code = PROXY.code()
    for m in pipe.models:
        for pname, precision in pipe.precisions.items():
            kind = precision.cpu_proxy
            if kind == "qdq" and toolchain != "ort-qnn":
                continue              # the qairt chain quantizes inside its converter: no QDQ model to run
            src, runs = layout.proxy_source(m, pname), layout.proxy_runs(m, pname)
            out = runs if runs != src else None
            kw = {"model": m, "precision_name": pname, "kind": kind, "src": str(src), "out": out and str(out),
                  "sidecar": str(layout.io_sidecar(m)), "arrays": str(layout.validation_arrays(m, pname)),
                  "reference": str(layout.preprocessed(m)), "fidelity": str(layout.proxy_fidelity(m, pname)),
                  "tools": tools, "code": code}
            yield {
                "basename": FAMILY,
                "name": f"{m}-{pname}",
                "doc": f"the {kind} CPU proxy of {m} in {pname}, against the HTP output validation recorded",
                "actions": [(PROXY, [kw])],
                "file_dep": sorted({str(src), str(layout.preprocessed(m)), kw["arrays"]}
                                   | {str(f) for f in layout.stage_cpu_files(m)}),
                "targets": [kw["fidelity"]] + ([kw["out"]] if out else []),
                "uptodate": uptodate(kw),
                "clean": True,
            }
