"""eliminate_bool_logic: BOOL dataflow -> int32 0/1 arithmetic."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..onnx_graph import BOOL_LOGIC, export_graph, import_graph, is_bool

# ops that only move or reshape data: a bool tensor through them is an int32 tensor just as well
DATA_MOVEMENT = {"Concat", "Expand", "Unsqueeze", "Squeeze", "Reshape", "Slice", "Gather", "Transpose",
                 "Identity", "Tile", "Flatten", "Split", "GatherElements", "Pad"}
I32 = np.int32


def _i32(name: str, value) -> gs.Constant:
    return gs.Constant(name, np.asarray(value, dtype=I32))


def eliminate_bool_logic(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite dynamic bool logic into int32 0/1 arithmetic the HTP runs.

    Pattern (lerobot's make_att_2d_masks and pad masks, torch's `&`/`|`/`~`, `mask > 0.5`):
      bool graph input          -> int32 input (the runtime feeds 0/1; see the preprocess sidecar)
      bool constant             -> int32 constant
      And(a, b)                 -> Mul(a, b)
      Or(a, b)                  -> Clip(Add(a, b), 0, 1)
      Xor(a, b)                 -> Abs(Sub(a, b))
      Not(a)                    -> Sub(1, a)
      Cmp(x, y) (Equal, Less..) -> Cast(Cmp(x, y), int32), unless its only consumers are Where conditions
      Cast(x, to=BOOL)          -> Sub(1, Cast(Equal(x, 0), int32))  (or nothing if x is already 0/1)
      Where(m, a, b), m int32   -> Where(Greater(m, 0), a, b)
      Concat/Expand/... of bool -> the same op on int32
    Why: HTP And/Or/Not take only BOOL_8 or 8-bit fixed point, its Cast has no float->BOOL_8, and
    Gather/StridedSlice reject BOOL_8; the card's converter (QNN 2.43) failed on these graphs.
    What remains BOOL is a comparison output read directly by a Cast or a Where condition.
    """
    graph = import_graph(model)
    graph.toposort()
    for inp in graph.inputs:
        if is_bool(inp):
            inp.dtype = I32
    for t in list(graph.tensors().values()):
        if isinstance(t, gs.Constant) and is_bool(t):      # dtype only: weights are not loaded
            t.values = t.values.astype(I32)

    for node in list(graph.nodes):
        op = node.op
        if op in ("Constant", "ConstantOfShape"):   # a bool value attribute becomes int32
            v = node.attrs.get("value")
            if isinstance(v, gs.Constant) and v.values.dtype == np.bool_:
                node.attrs["value"] = gs.Constant(v.name, v.values.astype(I32))
                node.outputs[0].dtype = I32
            continue
        if op in BOOL_LOGIC:
            _rewrite_logic(graph, node)
        elif op == "Cast" and node.attrs.get("to") == onnx.TensorProto.BOOL:
            _rewrite_cast_to_bool(graph, node)
        elif op == "Where" and not is_bool(node.inputs[0]):
            cond = node.inputs[0]
            base = _base(node)
            b = gs.Variable(f"{base}/cond_as_bool", dtype=np.bool_, shape=cond.shape)
            graph.nodes.append(gs.Node("Greater", name=f"{base}/cond_greater",
                                       inputs=[cond, _i32(f"{base}/zero", 0)], outputs=[b]))
            node.inputs[0] = b
        elif op in DATA_MOVEMENT:
            for o in node.outputs:
                if is_bool(o):
                    o.dtype = I32
        elif any(is_bool(o) for o in node.outputs):   # comparisons, IsNaN, IsInf ...
            _cast_bool_output(graph, node, graph_outputs=graph.outputs)
    return export_graph(graph, model)


def _base(node: gs.Node) -> str:
    """A unique prefix for what replaces `node` (node names may be empty; output names are unique)."""
    return node.name or node.outputs[0].name


def _rewrite_logic(graph: gs.Graph, node: gs.Node) -> None:
    out = node.outputs[0]
    out.dtype = I32
    ins = list(node.inputs)
    name = _base(node)
    node.inputs.clear()
    node.outputs.clear()
    if node.op == "And":
        graph.nodes.append(gs.Node("Mul", name=f"{name}/as_mul", inputs=ins, outputs=[out]))
    elif node.op == "Or":
        s = gs.Variable(f"{out.name}/sum", dtype=I32)
        graph.nodes.append(gs.Node("Add", name=f"{name}/as_add", inputs=ins, outputs=[s]))
        graph.nodes.append(gs.Node("Clip", name=f"{name}/clip01",
                                   inputs=[s, _i32(f"{name}/lo", 0), _i32(f"{name}/hi", 1)], outputs=[out]))
    elif node.op == "Xor":
        d = gs.Variable(f"{out.name}/diff", dtype=I32)
        graph.nodes.append(gs.Node("Sub", name=f"{name}/as_sub", inputs=ins, outputs=[d]))
        graph.nodes.append(gs.Node("Abs", name=f"{name}/abs", inputs=[d], outputs=[out]))
    else:  # Not
        graph.nodes.append(gs.Node("Sub", name=f"{name}/one_minus",
                                   inputs=[_i32(f"{name}/one", 1), ins[0]], outputs=[out]))


def _rewrite_cast_to_bool(graph: gs.Graph, node: gs.Node) -> None:
    x = node.inputs[0]
    out = node.outputs[0]
    out.dtype = I32
    name = _base(node)
    node.inputs.clear()
    node.outputs.clear()
    xdt = np.dtype(x.dtype) if x.dtype is not None else np.dtype(np.float32)
    if xdt == I32 and _is_zero_one(x):
        graph.nodes.append(gs.Node("Identity", name=f"{name}/already_01", inputs=[x], outputs=[out]))
        return
    eq = gs.Variable(f"{out.name}/is_zero", dtype=np.bool_)
    eq_i = gs.Variable(f"{out.name}/is_zero_i32", dtype=I32)
    graph.nodes.append(gs.Node("Equal", name=f"{name}/equal_zero",
                               inputs=[x, gs.Constant(f"{name}/zero", np.zeros((), dtype=xdt))], outputs=[eq]))
    graph.nodes.append(gs.Node("Cast", name=f"{name}/equal_zero_i32", attrs={"to": onnx.TensorProto.INT32},
                               inputs=[eq], outputs=[eq_i]))
    graph.nodes.append(gs.Node("Sub", name=f"{name}/nonzero", inputs=[_i32(f"{name}/one", 1), eq_i], outputs=[out]))


def _is_zero_one(t) -> bool:
    """True if t was a bool tensor rewritten by this pass (its producer chain is ours)."""
    prod = t.inputs[0] if t.inputs else None
    if prod is None:
        return False
    return prod.name.endswith(("/as_mul", "/clip01", "/abs", "/one_minus", "/nonzero", "/already_01")) \
        or "/to_i32" in prod.name


def _cast_bool_output(graph: gs.Graph, node: gs.Node, graph_outputs) -> None:
    out = node.outputs[0]
    consumers = list(out.outputs)
    allowed = all((c.op == "Where" and c.inputs[0] is out)
                  or (c.op == "Cast" and c.attrs.get("to") != onnx.TensorProto.BOOL) for c in consumers)
    if consumers and out not in graph_outputs and allowed:
        return  # a comparison read only by Casts or as Where conditions stays BOOL (allowed; idempotent)
    name = _base(node)
    b = gs.Variable(f"{out.name}/bool", dtype=np.bool_, shape=out.shape)
    node.outputs[0] = b
    out.dtype = I32
    graph.nodes.append(gs.Node("Cast", name=f"{name}/to_i32", attrs={"to": onnx.TensorProto.INT32},
                               inputs=[b], outputs=[out]))
