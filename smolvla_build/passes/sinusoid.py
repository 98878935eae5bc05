"""sinusoid_on_cpu: compute sinusoidal (timestep) embeddings on the CPU, outside the HTP graph."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.utils
import onnx_graphsurgeon as gs

from ..onnx_graph import skeleton, export_graph, import_graph

MAX_SOURCE_ELEMENTS = 16   # a timestep embedding hangs off tiny inputs (a timestep), never activations
# RoPE angle tables hang off the 0/1 padding masks positions come from ([1,48] language, [1,177] prefix)
MAX_POSITION_SOURCE_ELEMENTS = 1024


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


def _small(srcs, limit: int) -> bool:
    return bool(srcs) and all(s.shape is not None and all(isinstance(d, int) for d in s.shape)
                              and int(np.prod(s.shape)) <= limit for s in srcs)


def _value_key(t: gs.Tensor, memo: dict) -> tuple:
    """A structural key of the value `t` holds: equal keys = the same computation on the same inputs
    (the exporter repeats RoPE's position -> angle -> sin/cos per layer, once per q and k)."""
    if id(t) in memo:
        return memo[id(t)]
    if isinstance(t, gs.Constant):
        v = np.asarray(t.values)
        key = ("const", v.dtype.str, v.shape, v.tobytes())
    elif not t.inputs:
        key = ("input", t.name)
    else:
        node = t.inputs[0]
        attrs = tuple(sorted((k, repr(v)) for k, v in node.attrs.items()))
        key = (node.op, attrs, node.outputs.index(t), tuple(_value_key(i, memo) for i in node.inputs))
    memo[id(t)] = key
    return key


def _as_float32(t: gs.Tensor) -> gs.Tensor:
    """`t`, or the float32 Cast that is its only use (an embedding computed in float64)."""
    if len(t.outputs) == 1 and t.outputs[0].op == "Cast" and t.outputs[0].attrs.get("to") == onnx.TensorProto.FLOAT:
        return t.outputs[0].outputs[0]
    return t


def find_sinusoid_embeddings(graph: gs.Graph) -> list[tuple[gs.Tensor, list[gs.Variable]]]:
    """Concat(Sin(a), Cos(a)) outputs (or their one Cast to float32) fed only by small graph inputs:
    (tensor, its inputs)."""
    out = []
    for node in graph.nodes:
        if node.op != "Concat" or len(node.inputs) != 2:
            continue
        prods = [i.inputs[0] if i.inputs else None for i in node.inputs]
        if not all(prods) or {p.op for p in prods} != {"Sin", "Cos"} or prods[0].inputs[0] is not prods[1].inputs[0]:
            continue
        srcs = _sources(node.outputs[0], graph)
        if not _small(srcs, MAX_SOURCE_ELEMENTS):
            continue
        out.append((_as_float32(node.outputs[0]), sorted(srcs, key=lambda s: s.name)))
    return out


def find_position_sinusoids(graph: gs.Graph, exclude: set) -> list[tuple[gs.Tensor, list[gs.Variable]]]:
    """Sin/Cos outputs whose whole input cone is constants and small graph inputs (the RoPE cos/sin
    tables of positions derived from padding masks), other than the nodes in `exclude`."""
    out = []
    for node in graph.nodes:
        if node.op not in ("Sin", "Cos") or id(node) in exclude:
            continue
        srcs = _sources(node.outputs[0], graph)
        if _small(srcs, MAX_POSITION_SOURCE_ELEMENTS):
            out.append((node.outputs[0], sorted(srcs, key=lambda s: s.name)))
    return out


def find_cpu_sinusoids(graph: gs.Graph) -> list[tuple[gs.Tensor, list[gs.Tensor], list[gs.Variable]]]:
    """Every cut point, deduplicated: (kept tensor, the tensors holding the same value, its inputs)."""
    embeddings = find_sinusoid_embeddings(graph)
    concats = [t.inputs[0] if t.inputs[0].op == "Concat" else t.inputs[0].inputs[0].inputs[0] for t, _ in embeddings]
    inside = {id(i.inputs[0]) for concat in concats for i in concat.inputs}         # their Sin and Cos
    groups: dict = {}
    memo: dict = {}
    for tensor, srcs in embeddings + find_position_sinusoids(graph, inside):
        key = _value_key(tensor, memo)
        if key in groups:
            groups[key][1].append(tensor)
        else:
            groups[key] = (tensor, [], srcs)
    return list(groups.values())


def sinusoid_on_cpu(model: onnx.ModelProto) -> onnx.ModelProto:
    """Make the sinusoids of small inputs float graph inputs; `sinusoid_cpu_model` gives the removed
    part for the CPU. Two patterns:
    - the timestep embedding `Concat(Sin(t*w), Cos(t*w))` (lerobot create_sinusoidal_pos_embedding),
      with its Cast to float32 when it is computed in float64 as LeRobot does: frequencies up to
      2*pi/4e-3 = 1571, so t*w reaches ~1571;
    - the RoPE tables `Sin/Cos(positions * inv_freq)` with positions derived from the padding masks
      (up to 176 in the prefix, 226 in the action head's suffix), once per layer and per q/k in the
      export: identical copies become one input.
    Why: the HTP runs float graphs in fp16, whose spacing is 1.0 at 1024-2048 and 0.125 at 128-256:
    the phase is lost and sin/cos are wrong by up to 1.0 (timestep) or ~0.06 (RoPE at position 226).
    Measured with the timestep embedding inside on the tiny action head: per-step velocity cosine
    0.995 in HTP, 0.99999 with it on the CPU. The tables cost microseconds on the CPU.
    """
    graph = import_graph(model)
    for tensor, same, _ in find_cpu_sinusoids(graph):
        for dup in same:                      # consumers of a copy read the kept tensor
            for consumer in list(dup.outputs):
                for k, i in enumerate(consumer.inputs):
                    if i is dup:
                        consumer.inputs[k] = tensor
        producer = tensor.inputs[0]
        producer.outputs.clear()
        if tensor.dtype is None:
            tensor.dtype = np.float32
        graph.inputs.append(tensor)
    graph.cleanup()
    graph.inputs = [i for i in graph.inputs if i.outputs]
    return export_graph(graph, model)


def sinusoid_cpu_model(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """The CPU sub-model computing the sinusoids `sinusoid_on_cpu` cuts out (None if none)."""
    graph = import_graph(model)
    found = find_cpu_sinusoids(graph)
    if not found:
        return None
    inputs = sorted({s.name for _, _, srcs in found for s in srcs})
    outputs = [t.name for t, _, _ in found]
    # extracted from the weight-less skeleton (no copy of the weights), then the few constants it
    # reads get their data back
    inferred = onnx.shape_inference.infer_shapes(skeleton(model))
    sub = onnx.utils.Extractor(inferred).extract_model(inputs, outputs)
    real = {t.name: t for t in model.graph.initializer}
    for t in sub.graph.initializer:
        if t.name in real:
            t.CopyFrom(real[t.name])
    return sub
