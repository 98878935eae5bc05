"""cumsum_to_matmul: a dynamic CumSum along a static axis becomes a MatMul with a triangle."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..onnx_graph import const_value, export_graph, import_graph

FLOAT_EXACT_LIMIT = 2**24  # float32 represents every integer up to this exactly


def cumsum_to_matmul(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite `CumSum(x, axis)` on a dynamic x with a static last-axis length N into
    `Cast(float) -> MatMul(U) -> Cast(back)`, U[i, j] = 1 for i <= j (upper triangle).

    Pattern: position ids `cumsum(pad_mask) - 1` computed from the language mask, the one CumSum
    that constant folding cannot remove. HTP CumulativeSum exists only for some SoCs and dtypes
    (no int64); MatMul runs everywhere. Exact for 0/1 masks (sums stay far below 2**24).
    Only `exclusive=0, reverse=0` CumSums on the last axis are rewritten; others are left for the
    checker to report.
    """
    graph = import_graph(model)
    for node in list(graph.nodes):
        if node.op != "CumSum" or node.attrs.get("exclusive", 0) or node.attrs.get("reverse", 0):
            continue
        x, axis_t = node.inputs
        axis = const_value(axis_t)
        shape = x.shape
        if axis is None or shape is None or any(not isinstance(d, int) for d in shape):
            continue
        axis = int(np.asarray(axis).reshape(-1)[0]) % len(shape)
        if axis != len(shape) - 1 or shape[axis] > FLOAT_EXACT_LIMIT:
            continue
        n = shape[axis]
        out = node.outputs[0]
        base = node.name or out.name
        dtype = out.dtype if out.dtype is not None else x.dtype
        xf = gs.Variable(f"{out.name}/as_float", dtype=np.float32, shape=shape)
        yf = gs.Variable(f"{out.name}/sum_float", dtype=np.float32, shape=shape)
        tri = gs.Constant(f"{out.name}/upper_triangle", np.triu(np.ones((n, n), dtype=np.float32)))
        to = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        node.outputs.clear()
        node.inputs.clear()
        graph.nodes.append(gs.Node("Cast", name=f"{base}/to_float", attrs={"to": onnx.TensorProto.FLOAT},
                                   inputs=[x], outputs=[xf]))
        graph.nodes.append(gs.Node("MatMul", name=f"{base}/triangle_matmul", inputs=[xf, tri], outputs=[yf]))
        graph.nodes.append(gs.Node("Cast", name=f"{base}/to_{np.dtype(dtype).name}", attrs={"to": to},
                                   inputs=[yf], outputs=[out]))
    return export_graph(graph, model)
