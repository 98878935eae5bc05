"""ONNX graphs as the passes see them: graphsurgeon import/export with a type on every tensor, value types
by shape inference on a weight-less skeleton, and the producer/consumer helpers patterns match with."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnx_graphsurgeon as gs

logging.getLogger("onnx_graphsurgeon").setLevel(logging.ERROR)
gs.logger.G_LOGGER.severity = gs.logger.G_LOGGER.ERROR

COMPARISONS = {"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"}
BOOL_LOGIC = {"And", "Or", "Not", "Xor"}


SKELETON_BYTES = 1024    # initializers above this size enter shape inference as dims and type only


def skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` without the data of its large initializers: what shape inference needs (dims, types,
    and the values of small shape/index constants for data propagation), without copying weights."""
    sk = onnx.ModelProto(ir_version=model.ir_version, producer_name=model.producer_name)
    sk.opset_import.extend(model.opset_import)
    g = model.graph
    sk.graph.name = g.name
    for field in ("node", "input", "output", "value_info"):
        getattr(sk.graph, field).extend(getattr(g, field))
    for t in g.initializer:
        if t.ByteSize() <= SKELETON_BYTES:
            sk.graph.initializer.append(t)
        else:
            sk.graph.initializer.add(name=t.name, dims=t.dims, data_type=t.data_type)
    return sk


def value_types(model: onnx.ModelProto) -> dict[str, int]:
    """{name: elem type} of every graph input, node output and graph output of `model`, by shape
    inference on its skeleton (no copy of the weights)."""
    inferred = onnx.shape_inference.infer_shapes(skeleton(model)).graph
    return {v.name: v.type.tensor_type.elem_type for v in [*inferred.input, *inferred.value_info, *inferred.output]}


def import_graph(model: onnx.ModelProto) -> gs.Graph:
    """A graphsurgeon graph of `model` (which is left unchanged), with inferred dtypes/shapes on every
    tensor. Shape inference runs on a weight-less skeleton: copying a full-size model for it cost
    gigabytes per pass (the LLM preprocess peaked at 9.3 GB)."""
    try:
        inferred = list(onnx.shape_inference.infer_shapes(skeleton(model), data_prop=True).graph.value_info)
    except Exception:  # types then come from graphsurgeon
        inferred = []
    known = len(model.graph.value_info)
    model.graph.value_info.extend(inferred)        # borrowed for the import, removed again below
    try:
        return gs.import_onnx(model)
    finally:
        del model.graph.value_info[known:]


def export_graph(graph: gs.Graph, like: onnx.ModelProto) -> onnx.ModelProto:
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    out = gs.export_onnx(graph, do_type_check=False)
    out.ir_version = like.ir_version
    del out.opset_import[:]
    out.opset_import.extend(like.opset_import)
    out.producer_name = like.producer_name
    out.producer_version = like.producer_version
    del out.metadata_props[:]
    out.metadata_props.extend(like.metadata_props)
    # value_info is re-derived by the next import; stale entries would pin the old dtypes
    del out.graph.value_info[:]
    return out


def is_bool(t) -> bool:
    dt = getattr(t, "dtype", None)
    if dt is None:
        return False
    try:
        return np.dtype(dt) == np.bool_
    except TypeError:
        return dt == onnx.TensorProto.BOOL


def const_value(t):
    """numpy value of a gs.Constant or of the output of a Constant node, else None."""
    if isinstance(t, gs.Constant):
        return t.values
    if len(t.inputs) == 1 and t.inputs[0].op == "Constant":
        v = t.inputs[0].attrs.get("value")
        return v.values if isinstance(v, gs.Constant) else None
    return None


def producer(t: gs.Tensor, op: str) -> gs.Node | None:
    """The node making `t` if it is an `op` node."""
    return t.inputs[0] if len(t.inputs) == 1 and t.inputs[0].op == op else None


def only_consumer(t: gs.Tensor, op: str) -> gs.Node | None:
    """The single consumer of `t` if it is an `op` node."""
    return t.outputs[0] if len(t.outputs) == 1 and t.outputs[0].op == op else None
