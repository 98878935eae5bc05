"""The runner of a built HTP context, for whichever toolchain built it (Layout.toolchain).

ort-qnn contexts carry the preprocessed graph's own I/O; a qairt context carries the converter's
sanitized tensor names (and fp16 I/O in a 16-bit build): its runners map the graph's names onto
the context's, so validation and the policy feed every runner the same way.
"""

from __future__ import annotations

from smolvla_runtime.htp import HtpPerformance, Soc
from smolvla_runtime.runners import OrtQnnRunner, Runner

from ..layout import Layout


def qairt_names(binary_info, net_json, preprocessed) -> tuple[str, dict[str, str]]:
    """(QNN graph name, {graph tensor name: context tensor name}) of a qairt context, checked against
    what the binary holds (qnn-context-binary-utility) and the converter's _net.json."""
    from ..toolchains.epcontext import context_graph, graph_io
    from ..toolchains.qairt.qnn_io import sanitize
    graph, ctx_in, ctx_out = context_graph(binary_info, net_json)
    inputs, outputs = graph_io(preprocessed)
    have = {n for n, _, _ in ctx_in + ctx_out}
    names = {n: sanitize(n) for n, _, _ in inputs + outputs}
    missing = sorted(f"{n} -> {s}" for n, s in names.items() if s not in have)
    if missing:
        raise ValueError(f"{binary_info}: graph {graph} has no tensor for {', '.join(missing)} "
                         f"(it has {sorted(have)})")
    return graph, names


def htp_runner(layout: Layout, model: str, precision: str, soc: Soc, settings: dict, runtime: str = "ort-qnn",
               sdk=None, net_run: dict | None = None, performance: HtpPerformance | None = None) -> Runner:
    """ort-qnn: a persistent onnxruntime-qnn session on the context's EPContext model (`settings`:
    the precision's; `performance`: evaluation.ort_qnn); qnn-net-run: the SDK's qnn-net-run on a
    qairt context (`sdk`, with `net_run`, evaluation.qnn_net_run), one process per call."""
    q = layout.qairt(model, precision)
    if runtime == "qnn-net-run":
        if layout.toolchain != "qairt" or sdk is None:
            raise ValueError("runtime qnn-net-run runs the qairt toolchain's contexts: set toolchain.kind: qairt")
        from ..toolchains.epcontext import graph_io
        from .qnn_net_run import QnnNetRunRunner
        graph, _ = qairt_names(q.binary_info, q.net_json, layout.preprocessed(model))
        inputs, outputs = graph_io(layout.preprocessed(model))
        return QnnNetRunRunner(q.serialized, sdk, graph, inputs, [(n, dims) for n, _, dims in outputs], soc=soc,
                               net_run=net_run, work=layout.qnn_net_run_dir(model, precision))
    names = None
    if layout.toolchain == "qairt":
        names = qairt_names(q.binary_info, q.net_json, layout.preprocessed(model))[1]
    from ..toolchains.ort_qnn import load_session
    return OrtQnnRunner(layout.context(model, precision), soc, settings, names=names, loader=load_session,
                        performance=performance)
