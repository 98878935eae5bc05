"""Wrap a serialized QNN context binary in an EPContext ONNX model, so onnxruntime-qnn can run a
context made by qnn-context-binary-generator (no qnn-net-run needed).

The node follows what onnxruntime's QNN EP writes itself (../shared/docs/qnn.md §7): op
`com.microsoft::EPContext` named after the QNN graph, `main_context=1` and `partition_name` set
explicitly (gen_qnn_ctx_onnx_model.py leaves them out and the loader then fails), `embed_mode=0`
with a bare file name beside the .onnx (absolute paths and `..` are rejected).
"""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx.helper as oh


def wrap_context_binary(binary: Path, out_onnx: Path, graph_name: str, inputs: list[tuple[str, int, list[int]]],
                        outputs: list[tuple[str, int, list[int]]], sdk_version: str = "") -> onnx.ModelProto:
    binary, out_onnx = Path(binary), Path(out_onnx)
    if binary.parent.resolve() != out_onnx.parent.resolve():
        raise ValueError(f"{binary}: the context binary must sit beside {out_onnx} (embed_mode 0 takes a bare file name)")
    node = oh.make_node("EPContext", [n for n, _, _ in inputs], [n for n, _, _ in outputs], name=graph_name,
                        domain="com.microsoft", main_context=1, ep_cache_context=binary.name, embed_mode=0,
                        partition_name=graph_name, source="QNN", ep_sdk_version=sdk_version)
    graph = oh.make_graph([node], f"{graph_name}_ctx",
                          [oh.make_tensor_value_info(n, t, d) for n, t, d in inputs],
                          [oh.make_tensor_value_info(n, t, d) for n, t, d in outputs])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    from ..onnx_io import save
    save(model, out_onnx)
    return model


def signature(model_path: Path) -> tuple[list, list]:
    """(inputs, outputs) of an ONNX model as (name, elem_type, dims) triples."""
    m = onnx.load(str(model_path), load_external_data=False)

    def triples(values):
        return [(v.name, v.type.tensor_type.elem_type, [d.dim_value for d in v.type.tensor_type.shape.dim]) for v in values]
    return triples(m.graph.input), triples(m.graph.output)
