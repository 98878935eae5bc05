"""The converter-clean contract, checked on a model after the passes."""

from __future__ import annotations

import collections

import numpy as np
import onnx

from ..onnx_graph import COMPARISONS, import_graph, is_bool

FORBIDDEN_OPS = {"CumSum", "And", "Or", "Not", "Xor"}


def census(model: onnx.ModelProto) -> dict[str, int]:
    """Counts of the patterns the passes rewrite (reported before/after each pass)."""
    graph = import_graph(model)
    ops = collections.Counter(n.op for n in graph.nodes)
    huge = 0
    for t in graph.tensors().values():
        vals = getattr(t, "values", None)
        if vals is not None and np.issubdtype(np.asarray(vals).dtype, np.floating) and np.asarray(vals).size \
                and np.any(np.asarray(vals) < -1e30):
            huge += 1
    for n in graph.nodes:
        if n.op == "Constant" and "value" in n.attrs:
            v = np.asarray(n.attrs["value"].values)
            if np.issubdtype(v.dtype, np.floating) and v.size and np.any(v < -1e30):
                huge += 1
    return {
        "nodes": len(graph.nodes),
        "CumSum": ops["CumSum"], "And": ops["And"], "Or": ops["Or"], "Not": ops["Not"], "Xor": ops["Xor"],
        "ScatterND": ops["ScatterND"], "Where": ops["Where"],
        "Cast_to_bool": sum(1 for n in graph.nodes if n.op == "Cast" and n.attrs.get("to") == onnx.TensorProto.BOOL),
        "bool_tensors": sum(1 for t in graph.tensors().values() if is_bool(t)),
        "bool_inputs": sum(1 for t in graph.inputs if is_bool(t)),
        "bool_outputs": sum(1 for t in graph.outputs if is_bool(t)),
        "huge_negative_constants": huge,
        "Gather_embedding": sum(1 for n in graph.nodes if n.op == "Gather" and n.outputs[0].name.endswith("embed_tokens/Gather_output_0")),
    }


def check_htp_clean(model: onnx.ModelProto) -> list[str]:
    """Violations of the converter-clean contract (empty list = clean):
    no CumSum/And/Or/Not/Xor or Cast-to-BOOL node; no BOOL graph input or output; a BOOL tensor
    only as a comparison output read directly by a Cast to int32/float or as a Where condition
    (a constant BOOL tensor only as a Where condition);
    every graph input, output and intermediate shape static."""
    graph = import_graph(model)
    problems = []
    for n in graph.nodes:
        if n.op in FORBIDDEN_OPS:
            problems.append(f"node {n.name!r}: {n.op} is not allowed")
        if n.op == "Cast" and n.attrs.get("to") == onnx.TensorProto.BOOL:
            problems.append(f"node {n.name!r}: Cast to BOOL is not allowed")
    for t in graph.inputs:
        if is_bool(t):
            problems.append(f"graph input {t.name!r} is BOOL")
    for t in graph.outputs:
        if is_bool(t):
            problems.append(f"graph output {t.name!r} is BOOL")
    for t in graph.tensors().values():
        if t in graph.inputs or t in graph.outputs or not is_bool(t):
            continue
        is_const = getattr(t, "values", None) is not None
        prod = None if is_const or not t.inputs else t.inputs[0]
        where_cond = bool(t.outputs) and all(c.op == "Where" and c.inputs[0] is t for c in t.outputs)
        cast_or_where = bool(t.outputs) and all(
            (c.op == "Cast" and c.attrs.get("to") in (onnx.TensorProto.INT32, onnx.TensorProto.FLOAT,
                                                      onnx.TensorProto.FLOAT16))
            or (c.op == "Where" and c.inputs[0] is t) for c in t.outputs)
        if is_const and where_cond:
            continue            # a folded constant mask read only as a Where condition
        if prod is not None and prod.op in COMPARISONS and cast_or_where:
            continue
        what = "constant" if is_const else f"from {prod.op if prod else 'nothing'}"
        problems.append(f"BOOL tensor {t.name!r} ({what}) is not a comparison read by a Cast or Where condition")
    for t in list(graph.inputs) + list(graph.outputs):
        if t.shape is None or any(not isinstance(d, int) or d < 0 for d in t.shape):
            problems.append(f"{t.name!r} has a dynamic shape {t.shape}")
    for t in graph.tensors().values():
        if t.shape is not None and any(isinstance(d, str) for d in t.shape):
            problems.append(f"tensor {t.name!r} has a symbolic shape {t.shape}")
    return problems
