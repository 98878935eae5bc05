"""proxy: each precision's CPU proxy, measured against the HTP output validation recorded.

smolvla_build/proxies.py. Not part of a bare `doit`: `doit proxy`, or whatever the proxy runtime
needs (infer, eval and divergence with `evaluation.runtime: proxy` depend on these files)."""

from __future__ import annotations

from ..proxies import ProxySpec
from ..toolchains.fingerprint import passes_fingerprint
from .keys import action, declare

FAMILY = "proxy"
PROXY = action("proxies:proxy_task")
DEFAULT = False


def gen_tasks(build):
    pipe, layout = build.pipe, build.layout
    for m in pipe.models:
        for pname, precision in pipe.precisions.items():
            kind = precision.cpu_proxy
            if kind == "qdq" and build.toolchain != "ort-qnn":
                continue              # the qairt chain quantizes inside its converter: no QDQ model to run
            src, runs = layout.proxy_source(m, precision), layout.proxy_runs(m, precision)
            spec = ProxySpec(model=m, precision=pname, kind=kind, preset=pipe.source["preset"], src=src,
                             out=runs if runs != src else None, sidecar=layout.io_sidecar(m),
                             arrays=layout.validation_arrays(m, pname), reference=layout.preprocessed(m),
                             fidelity=layout.proxy_fidelity(m, pname))
            yield declare(FAMILY, PROXY, spec, name=f"{m}-{pname}",
                          file_dep=[src, spec.reference, spec.arrays, *layout.stage_cpu_files(m)],
                          targets=[spec.fidelity] + ([spec.out] if spec.out else []), tools=passes_fingerprint(),
                          doc=f"the {kind} CPU proxy of {m} in {pname}, against the HTP output validation recorded")
