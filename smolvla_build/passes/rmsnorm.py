"""rmsnorm_over_max: RMSNorm computed on x / max|x|, so that no intermediate overflows or underflows
fp16."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..onnx_graph import const_value, export_graph, import_graph, only_consumer

FP16_SMALLEST_NORMAL = 2.0 ** -14     # the floor of max|x|: an all-zero row stays 0, not 0/0


def _rmsnorm_at(pow_node: gs.Node):
    """(x, ReduceMean, Add of eps, Sqrt, the node multiplying x by the inverse RMS) of an RMSNorm
    whose square is `pow_node`, or None if the nodes around it are not that pattern."""
    x = pow_node.inputs[0]
    exponent = const_value(pow_node.inputs[1]) if len(pow_node.inputs) > 1 else None
    if exponent is None or np.asarray(exponent).size != 1 or float(np.asarray(exponent)) != 2.0:
        return None
    mean = only_consumer(pow_node.outputs[0], "ReduceMean")
    add = mean and only_consumer(mean.outputs[0], "Add")
    sqrt = add and only_consumer(add.outputs[0], "Sqrt")
    if sqrt is None or const_value(add.inputs[1]) is None:
        return None
    inv = only_consumer(sqrt.outputs[0], "Div") or only_consumer(sqrt.outputs[0], "Reciprocal")
    if inv is None or (inv.op == "Div" and (inv.inputs[1] is not sqrt.outputs[0] or const_value(inv.inputs[0]) is None)):
        return None
    scale = only_consumer(inv.outputs[0], "Mul")
    if scale is None or x not in scale.inputs:
        return None
    return x, mean, add, sqrt, scale


def _axes(mean: gs.Node) -> list[int] | None:
    if "axes" in mean.attrs:
        return list(mean.attrs["axes"])
    if len(mean.inputs) > 1:                       # opset 18: axes as an input
        v = const_value(mean.inputs[1])
        return None if v is None else [int(a) for a in np.asarray(v).ravel()]
    return None


def rmsnorm_over_max(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite each RMSNorm `x * 1 / Sqrt(ReduceMean(Pow(x, 2)) + eps)` as
    `xs * 1 / Sqrt(ReduceMean(Pow(xs, 2) + (sqrt(eps) / m)^2))` with `m = Max(ReduceMax(|x|), 2^-14)`
    over the normalized axes and `xs = x / m`: the same value (the normalization is scale-invariant
    once eps scales with the square), with |xs| <= 1. The scaled eps is added before the mean, not
    after: onnxruntime's SimplifiedLayerNormalization fusion (CPU, level extended) takes the
    after-the-mean form with a computed eps and replaces that eps by its default 1e-5 (measured:
    relative error 3e-5 to 0.4 on onnxruntime 1.31.1; docs/smolvla.md).

    Pattern: LlamaRMSNorm as torch exports it (the LLM's and the action expert's norms). Why: the
    HTP computes fp16 graphs in fp16. On realistic inputs the full LLM's square reaches 9.46e4,
    beyond fp16's 65504 (BENCHMARKS.md section 9), while the action expert's small activations
    square to fp16 subnormals, so no fixed scale suits both (dividing by 4 made the tiny action
    head's HTP error 8 times larger). After the division the squares are at most 1 and their mean at
    least 1 / width; `sqrt(eps) / m` is squared after the division, so neither part underflows.
    """
    if not any(n.op_type == "Pow" for n in model.graph.node):
        return model
    graph = import_graph(model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    for node in list(graph.nodes):
        found = _rmsnorm_at(node) if node.op == "Pow" else None
        axes = found and _axes(found[1])
        if not axes:
            continue
        x, mean, add, sqrt, scale = found
        eps = np.asarray(const_value(add.inputs[1]))
        base = node.name or node.outputs[0].name
        dtype = x.dtype or np.float32

        def tensor(name):
            return gs.Variable(f"{base}/{name}", dtype=dtype)

        def const(name, value):
            return gs.Constant(f"{base}/{name}", np.asarray(value, dtype=dtype))

        absolute, peak, floored, xs = tensor("abs"), tensor("max_abs"), tensor("max_abs_floored"), tensor("over_max")
        root_eps, scaled_eps = tensor("sqrt_eps_over_max"), tensor("eps_over_max_squared")
        square_plus_eps = tensor("square_plus_eps")
        graph.nodes += [
            gs.Node("Abs", f"{base}/Abs", inputs=[x], outputs=[absolute]),
            gs.Node("ReduceMax", f"{base}/ReduceMax", outputs=[peak], attrs={"keepdims": 1},
                    inputs=[absolute, gs.Constant(f"{base}/axes", np.asarray(axes, np.int64))]) if opset >= 18 else
            gs.Node("ReduceMax", f"{base}/ReduceMax", inputs=[absolute], outputs=[peak], attrs={"axes": axes, "keepdims": 1}),
            gs.Node("Max", f"{base}/Floor", inputs=[peak, const("floor", FP16_SMALLEST_NORMAL)], outputs=[floored]),
            gs.Node("Div", f"{base}/OverMax", inputs=[x, floored], outputs=[xs]),
            gs.Node("Div", f"{base}/SqrtEpsOverMax", inputs=[const("sqrt_eps", np.sqrt(eps)), floored], outputs=[root_eps]),
            gs.Node("Mul", f"{base}/EpsOverMaxSquared", inputs=[root_eps, root_eps], outputs=[scaled_eps]),
            gs.Node("Add", f"{base}/SquarePlusEps", inputs=[node.outputs[0], scaled_eps], outputs=[square_plus_eps]),
        ]
        node.inputs[0] = xs
        scale.inputs[scale.inputs.index(x)] = xs
        mean.inputs[0] = square_plus_eps
        sqrt.inputs[0] = mean.outputs[0]
        add.inputs.clear()
        add.outputs.clear()
    graph.cleanup()
    return export_graph(graph, model)
