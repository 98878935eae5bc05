"""The runner of a built HTP context, for whichever toolchain built it (layout.toolchain).

ort-qnn contexts carry the preprocessed graph's own I/O; a qairt context carries the converter's
sanitized tensor names (and fp16 I/O in a 16-bit build): its runners map the graph's names onto
the context's, so validation and the policy feed every runner the same way.
"""

from __future__ import annotations

import onnx

from smolvla_runtime.runners import OrtQnnRunner, Runner

from .runners import QnnNetRunRunner


def graph_io(model_path) -> tuple[list, list]:
    """(inputs, outputs) of an ONNX graph as (name, numpy dtype name, dims)."""
    from ..toolchains.epcontext import signature

    def np_names(triples):
        return [(n, onnx.helper.tensor_dtype_to_np_dtype(t).name, dims) for n, t, dims in triples]
    inputs, outputs = signature(model_path)
    return np_names(inputs), np_names(outputs)


def qairt_names(binary_info, net_json, preprocessed) -> tuple[str, dict[str, str]]:
    """(QNN graph name, {graph tensor name: context tensor name}) of a qairt context, checked against
    what the binary holds (qnn-context-binary-utility) and the converter's _net.json."""
    from ..toolchains.epcontext import context_graph
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


def htp_runner(layout, model: str, precision: str, soc: dict, precision_cfg: dict, runtime: str = "ort-qnn") -> Runner:
    """ort-qnn: a persistent onnxruntime-qnn session on the context's EPContext model; qnn-net-run:
    the SDK's qnn-net-run on a qairt context, one process per call."""
    q = layout.qairt(model, precision)
    if runtime == "qnn-net-run":
        if layout.toolchain != "qairt":
            raise ValueError("runtime qnn-net-run runs the qairt toolchain's contexts: set toolchain.kind: qairt")
        from ..toolchains.qairt.sdk import discover
        graph, _ = qairt_names(q.binary_info, q.net_json, layout.preprocessed(model))
        inputs, outputs = graph_io(layout.preprocessed(model))
        return QnnNetRunRunner(q.serialized, discover(layout.pipe), graph, inputs, [(n, dims) for n, _, dims in outputs],
                               soc=dict(layout.pipe.soc), net_run=layout.pipe.section("evaluation")["qnn_net_run"],
                               work=layout.qnn_net_run_dir(model, precision))
    names = None
    if layout.toolchain == "qairt":
        names = qairt_names(q.binary_info, q.net_json, layout.preprocessed(model))[1]
    from ..toolchains.ort_qnn import load_session
    return OrtQnnRunner(layout.context(model, precision), soc, precision_cfg, names=names, loader=load_session)
