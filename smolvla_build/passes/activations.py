"""Activations in the forms the HTP computes op by op: the tanh GELU with its half taken first, SiLU
through Tanh. In fp16 the HTP computes the exported forms about five times less accurately
(docs/runtimes.md, "Activation forms")."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..onnx_graph import const_value, export_graph, import_graph, only_consumer, producer

SQRT_2_OVER_PI = float(np.sqrt(2 / np.pi))


def _other(node: gs.Node, t: gs.Tensor) -> gs.Tensor | None:
    """The input of a two-input `node` that is not `t`."""
    if len(node.inputs) != 2 or t not in node.inputs:
        return None
    return node.inputs[1] if node.inputs[0] is t else node.inputs[0]


def _is_const(t: gs.Tensor | None, value: float, rtol: float = 1e-6) -> bool:
    v = None if t is None else const_value(t)
    return v is not None and np.asarray(v).size == 1 and np.isclose(float(np.asarray(v)), value, rtol=rtol, atol=0)


def _replace(tensors, new: list) -> None:
    """Set a node's inputs or outputs (graphsurgeon's lists keep both ends linked, item by item)."""
    tensors.clear()
    tensors.extend(new)


def _const(graph_name: str, value: float, dtype) -> gs.Constant:
    return gs.Constant(graph_name, np.asarray(value, dtype=dtype))


def _tanh_gelu_at(tanh: gs.Node):
    """(x, the Add of 1, the Mul by x, the Mul by 0.5) of a tanh GELU whose Tanh is `tanh`, as torch
    exports `gelu(approximate="tanh")`: `0.5 * (x * (1 + Tanh(k * (x + 0.044715 * x*x*x))))`, or
    None."""
    scale = producer(tanh.inputs[0], "Mul")
    k = scale and next((i for i in scale.inputs if const_value(i) is not None), None)
    if k is None or not _is_const(k, SQRT_2_OVER_PI, rtol=1e-4):
        return None
    inner = producer(_other(scale, k), "Add")
    if inner is None:
        return None
    one_plus = only_consumer(tanh.outputs[0], "Add")
    if one_plus is None or not _is_const(_other(one_plus, tanh.outputs[0]), 1.0):
        return None
    times_x = only_consumer(one_plus.outputs[0], "Mul")
    x = times_x and _other(times_x, one_plus.outputs[0])
    if x is None or x not in inner.inputs:
        return None
    half = only_consumer(times_x.outputs[0], "Mul")
    if half is None or not _is_const(_other(half, times_x.outputs[0]), 0.5):
        return None
    return x, one_plus, times_x, half


def tanh_gelu_half_first(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite `0.5 * (x * (1 + Tanh(k * (x + a * x*x*x))))` as
    `(x * 0.5) * (1 + Tanh(k * (x + a * Pow(x, 3))))`: the same function, with the half taken from x
    first and the cube as one Pow.

    Pattern: SigLIP's MLP activation (gelu_pytorch_tanh) in the vision encoder, as torch exports it.
    Why: in HTP emulation the fp16 context computes the exported form 5.9 times farther from fp32
    than the rewritten one (RMS 1.66e-3 against 2.79e-4 after the full vision encoder's first MLP
    activation, 1.85e-3 against 3.78e-4 at that layer's output), while exposing the exported form's
    intermediates as graph outputs also gives 2.79e-4: the exported form is compiled into one less
    accurate kernel, the rewritten one op by op (docs/runtimes.md, "Activation forms"). The
    rewritten form is onnxruntime's FastGelu pattern `fuse_1`, so the reference runtime's CPU copy
    still fuses it (cpu_passes/gelu.py).
    """
    if not any(n.op_type == "Tanh" for n in model.graph.node):
        return model
    graph = import_graph(model)
    changed = False
    for node in list(graph.nodes):
        found = _tanh_gelu_at(node) if node.op == "Tanh" else None
        if found is None:
            continue
        x, one_plus, times_x, half = found
        cube_start = [c for c in x.outputs if c.op == "Mul" and list(c.inputs) == [x, x]]
        base = times_x.name or times_x.outputs[0].name
        dtype = x.dtype or np.float32
        if cube_start:                     # x*x*x -> Pow(x, 3): onnxruntime's fuse_1 matches Pow
            square = cube_start[0]
            cube = only_consumer(square.outputs[0], "Mul")
            if cube is not None and set(map(id, cube.inputs)) == {id(x), id(square.outputs[0])}:
                cube.op = "Pow"
                _replace(cube.inputs, [x, _const(f"{base}/three", 3.0, dtype)])
                square.inputs.clear()
                square.outputs.clear()
        half_x = gs.Variable(f"{base}/half_x", dtype=dtype)
        graph.nodes.append(gs.Node("Mul", f"{base}/HalfX", inputs=[x, _const(f"{base}/half", 0.5, dtype)], outputs=[half_x]))
        out = half.outputs[0]
        half.inputs.clear()
        half.outputs.clear()
        _replace(times_x.inputs, [half_x, one_plus.outputs[0]])
        _replace(times_x.outputs, [out])
        changed = True
    if not changed:
        return model
    graph.cleanup().toposort()
    return export_graph(graph, model)


def silu_through_tanh(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite `x * Sigmoid(x)` as `x * (0.5 + 0.5 * Tanh(0.5 * x))`: the same function
    (sigmoid(x) = (1 + tanh(x / 2)) / 2).

    Pattern: SiLU, the MLP activation of the LLM and of the action expert (and of the action head's
    time MLP), as torch exports it. Why: in HTP emulation the fp16 context computes `x * Sigmoid(x)`
    4.9 times farther from fp32 than this form (RMS 1.34e-3 against 2.72e-4 after the full LLM's first
    activation; 8.9e-4 against 2.7e-4 after that MLP's down projection); the Sigmoid kernel alone is
    twice as far from fp32 as fp16 storage, the Tanh kernel within 1 ulp of it (BENCHMARKS.md section
    14; docs/runtimes.md, "Activation forms").
    """
    if not any(n.op_type == "Sigmoid" for n in model.graph.node):
        return model
    graph = import_graph(model)
    changed = False
    for node in list(graph.nodes):
        if node.op != "Sigmoid":
            continue
        x = node.inputs[0]
        times_x = only_consumer(node.outputs[0], "Mul")
        if times_x is None or _other(times_x, node.outputs[0]) is not x:
            continue
        base = node.name or node.outputs[0].name
        dtype = x.dtype or np.float32
        half = _const(f"{base}/half", 0.5, dtype)
        half_x, tanh, half_tanh, sigmoid = (gs.Variable(f"{base}/{n}", dtype=dtype)
                                            for n in ("half_x", "tanh", "half_tanh", "as_tanh"))
        graph.nodes += [gs.Node("Mul", f"{base}/HalfX", inputs=[x, half], outputs=[half_x]),
                        gs.Node("Tanh", f"{base}/Tanh", inputs=[half_x], outputs=[tanh]),
                        gs.Node("Mul", f"{base}/HalfTanh", inputs=[tanh, half], outputs=[half_tanh]),
                        gs.Node("Add", f"{base}/PlusHalf", inputs=[half_tanh, half], outputs=[sigmoid])]
        times_x.inputs[times_x.inputs.index(node.outputs[0])] = sigmoid
        node.inputs.clear()
        node.outputs.clear()
        changed = True
    if not changed:
        return model
    graph.cleanup().toposort()
    return export_graph(graph, model)
