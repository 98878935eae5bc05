"""sinusoid_on_cpu: compute sinusoidal (timestep) embeddings on the CPU, outside the HTP graph."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.utils
import onnx_graphsurgeon as gs

from ._graph import export_graph, import_graph

MAX_SOURCE_ELEMENTS = 16   # the embedding must hang off tiny inputs (a timestep), never activations


def _sources(t: gs.Tensor, graph: gs.Graph) -> list[gs.Variable] | None:
    """Graph inputs `t` depends on, or None if it depends on anything else than inputs/constants."""
    seen, stack, found = set(), [t], {}
    while stack:
        cur = stack.pop()
        if id(cur) in seen or isinstance(cur, gs.Constant):
            continue
        seen.add(id(cur))
        if cur in graph.inputs:
            found[cur.name] = cur
            continue
        if not cur.inputs:
            return None
        stack.extend(cur.inputs[0].inputs)
    return list(found.values())


def find_sinusoid_embeddings(graph: gs.Graph) -> list[tuple[gs.Tensor, list[gs.Variable]]]:
    """Concat(Sin(a), Cos(a)) outputs fed only by small graph inputs: (tensor, its inputs)."""
    out = []
    for node in graph.nodes:
        if node.op != "Concat" or len(node.inputs) != 2:
            continue
        prods = [i.inputs[0] if i.inputs else None for i in node.inputs]
        if not all(prods) or {p.op for p in prods} != {"Sin", "Cos"} or prods[0].inputs[0] is not prods[1].inputs[0]:
            continue
        srcs = _sources(node.outputs[0], graph)
        if not srcs or any(s.shape is None or int(np.prod(s.shape)) > MAX_SOURCE_ELEMENTS for s in srcs):
            continue
        out.append((node.outputs[0], sorted(srcs, key=lambda s: s.name)))
    return out


def sinusoid_on_cpu(model: onnx.ModelProto) -> onnx.ModelProto:
    """Make each sinusoidal embedding `Concat(Sin(t*w), Cos(t*w))` of a small input (the flow
    timestep) a float graph input; `sinusoid_cpu_model` gives the removed part for the CPU.

    Pattern: lerobot's create_sinusoidal_pos_embedding(t): frequencies up to 2*pi/4e-3 = 1571,
    so t*w reaches ~1571. Why: the HTP runs float graphs in fp16, whose spacing at 1024-2048 is
    1.0: the phase is lost and sin/cos are garbage (measured on the tiny action head: per-step
    velocity cosine 0.995 in HTP with the embedding inside, 0.99999 with it on the CPU). The
    embedding costs microseconds on the CPU.
    """
    graph = import_graph(model)
    for tensor, _ in find_sinusoid_embeddings(graph):
        producer = tensor.inputs[0]
        producer.outputs.clear()
        if tensor.dtype is None:
            tensor.dtype = np.float32
        graph.inputs.append(tensor)
        graph.cleanup()
        graph.inputs = [i for i in graph.inputs if i.outputs]
    return export_graph(graph, model)


def sinusoid_cpu_model(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """The CPU sub-model computing the embeddings `sinusoid_on_cpu` cuts out (None if none)."""
    graph = import_graph(model)
    found = find_sinusoid_embeddings(graph)
    if not found:
        return None
    inputs = sorted({s.name for _, srcs in found for s in srcs})
    outputs = [t.name for t, _ in found]
    inferred = onnx.shape_inference.infer_shapes(model)
    return onnx.utils.Extractor(inferred).extract_model(inputs, outputs)
