"""round_to_fp16: a CPU proxy of an fp16 HTP graph, every float value rounded to fp16 where the
HTP stores one."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper


def round_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Round every float32 weight to its fp16 value, and put a Cast to float16 and back after every
    graph input and every node output that is float32: onnxruntime's CPU EP then computes each op
    in fp32 on fp16-representable inputs and stores its result as fp16 would, saturating to inf
    beyond 65504 and flushing below fp16's subnormals.

    Pattern: any float32 graph. Why: an fp16 HTP context (and an fp32 one with
    fp16_relaxed_precision) stores weights and activations in fp16; emulating it costs 90-130 s per
    full vision call (docs/runtimes.md, "CPU proxies"), while this graph runs at about fp32 speed on
    the CPU, close enough for closed-loop episodes where its measured distance to the HTP output is
    well under the HTP's own distance to fp32 (`proxy` tasks; the kernels' own accumulation order is
    not modelled, which is why the distance is measured, not assumed)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    from ..onnx_graph import value_types
    floats = {name for name, t in value_types(model).items() if t == TensorProto.FLOAT}
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT:
            rounded = numpy_helper.to_array(init).astype(np.float16).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(rounded, init.name))
    initializers = {i.name for i in g.initializer}
    nodes: list[onnx.NodeProto] = []

    def rounding(src: str, dst: str) -> list[onnx.NodeProto]:
        return [onnx.helper.make_node("Cast", [src], [f"{dst}/fp16"], to=TensorProto.FLOAT16, name=f"{dst}/to_fp16"),
                onnx.helper.make_node("Cast", [f"{dst}/fp16"], [dst], to=TensorProto.FLOAT, name=f"{dst}/from_fp16")]

    renamed_inputs = {}
    for i in g.input:
        if i.name in floats and i.name not in initializers:
            renamed_inputs[i.name] = f"{i.name}/rounded"
            nodes += rounding(i.name, renamed_inputs[i.name])
    for node in g.node:
        for k, name in enumerate(node.input):
            if name in renamed_inputs:
                node.input[k] = renamed_inputs[name]
        rounded_outputs = []
        for k, name in enumerate(node.output):
            if name in floats:
                node.output[k] = f"{name}/fp32"
                rounded_outputs += rounding(node.output[k], name)
        nodes += [node] + rounded_outputs
    del g.node[:]
    g.node.extend(nodes)
    return out
