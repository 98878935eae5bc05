"""prescale_rmsnorm: RMSNorm computed on x * 2^-k, so that its square fits fp16."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ._graph import const_value, export_graph, import_graph

FP16_SMALLEST = 2.0 ** -24    # the smallest non-zero fp16 (a subnormal)


def prescale_exponent(eps: float) -> int:
    """The largest k for which eps * 2^-2k is still a non-zero fp16: the scaled eps must survive the
    fp16 conversion, or an all-zero row would divide by zero (k = 2 for LlamaRMSNorm's 1e-6)."""
    return max(0, int(np.floor(np.log2(eps / FP16_SMALLEST) / 2))) if eps > 0 else 0


def _only(t: gs.Tensor, op: str) -> gs.Node | None:
    """The single consumer of `t` if it is an `op` node."""
    return t.outputs[0] if len(t.outputs) == 1 and t.outputs[0].op == op else None


def _rmsnorm_at(pow_node: gs.Node):
    """(x, Add of eps, the node multiplying x by the inverse RMS) of an RMSNorm whose square is
    `pow_node`, or None if the nodes around it are not that pattern."""
    x = pow_node.inputs[0]
    exponent = const_value(pow_node.inputs[1]) if len(pow_node.inputs) > 1 else None
    if exponent is None or np.asarray(exponent).size != 1 or float(np.asarray(exponent)) != 2.0:
        return None
    mean = _only(pow_node.outputs[0], "ReduceMean")
    add = mean and _only(mean.outputs[0], "Add")
    sqrt = add and _only(add.outputs[0], "Sqrt")
    if sqrt is None or const_value(add.inputs[1]) is None:
        return None
    inv = _only(sqrt.outputs[0], "Div") or _only(sqrt.outputs[0], "Reciprocal")
    if inv is None or (inv.op == "Div" and (inv.inputs[1] is not sqrt.outputs[0] or const_value(inv.inputs[0]) is None)):
        return None
    scale = _only(inv.outputs[0], "Mul")
    if scale is None or x not in scale.inputs:
        return None
    return x, add, scale


def prescale_rmsnorm(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite each RMSNorm `x * 1 / Sqrt(ReduceMean(Pow(x, 2)) + eps)` to compute on
    `xs = x * 2^-k`: `xs * 1 / Sqrt(ReduceMean(Pow(xs, 2)) + eps * 2^-2k)`, the same value (a power
    of two scales exactly in binary floating point; the normalization is scale-invariant once eps
    scales with the square).

    Pattern: LlamaRMSNorm as torch exports it (the LLM backbone's and the action expert's
    input/post-attention norms and the final norm). Why: the HTP computes fp16 graphs in fp16, and
    on realistic inputs the square reaches 9.46e4 in the full LLM (BENCHMARKS.md section 9), beyond
    fp16's 65504; saturated, the norm of those tokens is wrong. k is the largest that keeps the
    scaled eps a non-zero fp16 (`prescale_exponent`): 2 for eps 1e-6, a square 16 times smaller.
    """
    if not any(n.op_type == "Pow" for n in model.graph.node):
        return model
    graph = import_graph(model)
    for node in list(graph.nodes):
        found = _rmsnorm_at(node) if node.op == "Pow" else None
        if found is None:
            continue
        x, add, scale = found
        eps = np.asarray(const_value(add.inputs[1]))
        exponent = prescale_exponent(float(eps.max()))
        if exponent == 0:
            continue
        factor = np.float32(2.0 ** -exponent)
        base = node.name or node.outputs[0].name
        dtype = x.dtype or np.float32
        xs = gs.Variable(f"{base}/prescaled", dtype=dtype)
        graph.nodes.append(gs.Node("Mul", f"{base}/prescale", inputs=[x, gs.Constant(f"{base}/prescale_factor",
                                                                                     np.asarray(factor, dtype))],
                                   outputs=[xs]))
        node.inputs[0] = xs
        scale.inputs[scale.inputs.index(x)] = xs
        add.inputs[1] = gs.Constant(f"{base}/prescaled_eps", np.asarray(eps * np.asarray(factor * factor, eps.dtype),
                                                                        dtype=eps.dtype))
    graph.cleanup()
    return export_graph(graph, model)
