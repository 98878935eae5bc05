"""embedding_on_cpu: cut the token-embedding Gather out of the LLM graph."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ..onnx_graph import export_graph, import_graph

EMBED_OUTPUT = "/embed_tokens/Gather_output_0"


def _find_gather(graph: gs.Graph, tensor_name: str):
    t = graph.tensors().get(tensor_name)
    if t is None or not t.inputs or t.inputs[0].op != "Gather":
        return None, None
    node = t.inputs[0]
    table = node.inputs[0]
    return node, table if isinstance(table, gs.Constant) else None


def embedding_table(model: onnx.ModelProto, tensor_name: str = EMBED_OUTPUT) -> np.ndarray | None:
    """The embedding table (initializer) that the Gather producing `tensor_name` reads, if any."""
    graph = import_graph(model)
    _, table = _find_gather(graph, tensor_name)
    return None if table is None else np.asarray(table.values)


def embedding_on_cpu(model: onnx.ModelProto, tensor_name: str = EMBED_OUTPUT) -> onnx.ModelProto:
    """Make `tensor_name` (the output of the token-embedding Gather) a float graph input and drop
    the Gather, its table and the token-id input.

    Pattern: Gather(embed_tokens [49280, 960], input_ids) at /embed_tokens/Gather_output_0.
    Why: a 47M-parameter table bloats the context binary and HTP memory traffic for 48 rows read
    per step, and int64 ids/negative indices need converter workarounds; Qualcomm's own LLM
    runtime (Genie) does this lookup on the CPU. The Mul by sqrt(hidden) after it stays in the
    graph, so the CPU feeds raw, unscaled rows (`embedding_table`).
    A model without that Gather (e.g. already cut) is returned unchanged.
    """
    graph = import_graph(model)
    node, _ = _find_gather(graph, tensor_name)
    if node is None:
        return export_graph(graph, model)
    out = node.outputs[0]
    if out.dtype is None:
        out.dtype = np.float32
    node.outputs.clear()
    node.inputs.clear()
    graph.inputs = [i for i in graph.inputs if i.outputs] + [out]
    graph.cleanup()
    graph.inputs = [i for i in graph.inputs if i.outputs or i is out]
    return export_graph(graph, model)
