"""bound_mask_constants: finfo(float32).min / -inf attention-mask constants -> a bounded value."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..onnx_graph import export_graph, import_graph

HUGE_NEGATIVE = -1.0e30       # anything below this is a "minus infinity" mask value
PASS_THROUGH = {"Add", "Where", "Reshape", "Cast", "Expand", "Unsqueeze", "Squeeze", "Transpose",
                "Concat", "Slice", "Mul", "Sub", "Identity"}


def _reaches_softmax(t: gs.Tensor, depth: int = 6) -> bool:
    for consumer in t.outputs:
        if consumer.op == "Softmax":
            return True
        if depth > 0 and consumer.op in PASS_THROUGH and any(_reaches_softmax(o, depth - 1) for o in consumer.outputs):
            return True
    return False


def bound_mask_constants(model: onnx.ModelProto, bound: float = -1.0e4) -> onnx.ModelProto:
    """Replace mask constants below -1e30 (finfo(float32).min, -inf) that feed a Where or Add
    on the way to a Softmax with `bound` (default -1e4).

    Pattern: `where(mask, scores, finfo(f32).min)` / `scores + (1 - mask) * -inf` before Softmax.
    Why: the HTP runs float graphs in fp16, where these constants become -inf; a fully masked row
    (a padded language query) then gives Softmax(-inf, ..., -inf) = NaN, and 0 * NaN poisons valid
    rows downstream. exp(-1e4) is 0 in fp16 and fp32, so rows with at least one valid key are
    unchanged; a fully masked row of a Where mask stays uniform, as in fp32.
    """
    graph = import_graph(model)
    for node in graph.nodes:
        if node.op not in ("Where", "Add") or not any(_reaches_softmax(o) for o in node.outputs):
            continue
        for i, t in enumerate(node.inputs):
            if node.op == "Where" and i == 0:
                continue
            if isinstance(t, gs.Constant):
                vals = t.values
            elif len(t.inputs) == 1 and t.inputs[0].op == "Constant":
                vals = t.inputs[0].attrs["value"].values
            else:
                continue
            if not np.issubdtype(vals.dtype, np.floating) or not np.any(vals < HUGE_NEGATIVE):
                continue
            fixed = np.where(vals < HUGE_NEGATIVE, np.asarray(bound, dtype=vals.dtype), vals).astype(vals.dtype)
            node.inputs[i] = gs.Constant(f"{t.name}/bounded", fixed)
    return export_graph(graph, model)
