"""Shared helpers: graphsurgeon import/export with types known for every tensor."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnx_graphsurgeon as gs

logging.getLogger("onnx_graphsurgeon").setLevel(logging.ERROR)
gs.logger.G_LOGGER.severity = gs.logger.G_LOGGER.ERROR

COMPARISONS = {"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"}
BOOL_LOGIC = {"And", "Or", "Not", "Xor"}


def import_graph(model: onnx.ModelProto) -> gs.Graph:
    """A graphsurgeon graph of a copy of `model`, with inferred dtypes/shapes on every tensor."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    try:
        copy = onnx.shape_inference.infer_shapes(copy, data_prop=True)
    except Exception:  # >2 GB protos cannot go through the C++ inference; types then come from gs
        pass
    return gs.import_onnx(copy)


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
