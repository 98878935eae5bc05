"""gemm_to_matmul: Gemm with a constant weight -> MatMul (+ Add of the bias)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..onnx_graph import const_value, export_graph, import_graph


def gemm_to_matmul(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite `Gemm(A, B, C; alpha, beta, transA=0, transB)` with a constant B as
    `MatMul(A, alpha * B') + beta * C` (B' = B transposed when transB), folding alpha and beta into
    the constants.

    Pattern: torch.nn.Linear on a 2-D input exports as Gemm(x, W, b, transB=1) (the LLM's state
    projection). Why: QAIRT's ONNX converter translates every Gemm into FullyConnected
    (math_translations.py, OnnxGemmTranslation; docs/qairt-sdk.md), which the card's
    MATMUL_TO_FC-disabled converter is meant to avoid; a MatMul with a constant weight stays MatMul
    there, and ort-qnn maps both the same way.
    """
    if not any(n.op_type == "Gemm" for n in model.graph.node):
        return model                 # nothing to rewrite: skip the graph round trip (1-2 s at full size)
    graph = import_graph(model)
    for node in list(graph.nodes):
        if node.op != "Gemm" or node.attrs.get("transA", 0):
            continue
        weight = const_value(node.inputs[1])
        if weight is None:
            continue
        base = node.name or node.outputs[0].name            # unique: an output has one producer
        alpha, beta = float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0))
        w = (weight.T if node.attrs.get("transB", 0) else weight) * np.asarray(alpha, weight.dtype)
        out = node.outputs[0]
        node.outputs = []
        product = out if len(node.inputs) < 3 else gs.Variable(f"{base}/matmul_output", dtype=out.dtype)
        matmul = gs.Node("MatMul", f"{base}/matmul", inputs=[node.inputs[0], gs.Constant(f"{base}/weight",
                                                                                              np.ascontiguousarray(w))],
                         outputs=[product])
        graph.nodes.append(matmul)
        if len(node.inputs) >= 3:
            bias = node.inputs[2]
            bias_value = const_value(bias)
            if bias_value is not None:
                bias = gs.Constant(f"{base}/bias", (bias_value * np.asarray(beta, bias_value.dtype)).astype(bias_value.dtype))
            elif beta != 1.0:
                scaled = gs.Variable(f"{base}/scaled_bias", dtype=out.dtype)
                graph.nodes.append(gs.Node("Mul", f"{base}/beta", inputs=[bias, gs.Constant(
                    f"{base}/beta_value", np.asarray(beta, np.float32))], outputs=[scaled]))
                bias = scaled
            graph.nodes.append(gs.Node("Add", f"{base}/add", inputs=[product, bias], outputs=[out]))
        node.inputs = []
    return export_graph(graph, model)
