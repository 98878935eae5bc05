"""fold_constant_subgraphs: evaluate every subgraph whose inputs are all constant."""

from __future__ import annotations

import onnx

from ..onnx_graph import export_graph, import_graph


def fold_constant_subgraphs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace constant subgraphs by initializers (onnx-graphsurgeon's `fold_constants`, which
    evaluates them with onnxruntime).

    Pattern: CumSum chains over constant autoregressive flags, Range/Shape arithmetic, constant
    masks built by ScatterND/Expand/Equal/Where, ConstantOfShape. torch exports leave these in the
    graph; the HTP has no CumSum kernel on many SoCs, rejects ScatterND/BOOL tensors, and every
    constant chain costs device time at each inference. Folding them is exact.
    """
    graph = import_graph(model)
    graph.fold_constants(fold_shapes=True, partitioning="basic", error_ok=True)
    return export_graph(graph, model)
