"""Wrap a serialized QNN context binary in an EPContext ONNX model, so onnxruntime-qnn can run a
context made by qnn-context-binary-generator (no qnn-net-run needed).

The node follows what onnxruntime's QNN EP writes itself (../shared/docs/qnn.md §7): op
`com.microsoft::EPContext` named after the QNN graph, `main_context=1` and `partition_name` set
explicitly (gen_qnn_ctx_onnx_model.py leaves them out and the loader then fails), `embed_mode=0`
with a bare file name beside the .onnx (absolute paths and `..` are rejected).
"""

from __future__ import annotations

import json
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


# QNN data_type enum (qnn.md 1.1) -> ONNX elem_type
QNN_TO_ONNX = {0x0232: onnx.TensorProto.FLOAT, 0x0216: onnx.TensorProto.FLOAT16, 0x0032: onnx.TensorProto.INT32,
               0x0064: onnx.TensorProto.INT64, 0x0508: onnx.TensorProto.BOOL, 0x0008: onnx.TensorProto.INT8,
               0x0108: onnx.TensorProto.UINT8, 0x0016: onnx.TensorProto.INT16, 0x0116: onnx.TensorProto.UINT16,
               0x0132: onnx.TensorProto.UINT32}


def net_json_signature(net_json: Path) -> tuple[list, list]:
    """(inputs, outputs) of the QNN graph from the converter's <model>_net.json, sorted by tensor id as
    onnxruntime's gen_qnn_ctx_onnx_model.py does: the names are the converter's sanitized ones and the
    dims/dtypes what the context really takes (channel-last, fp16), which is what the EPContext node
    must declare for onnxruntime-qnn to bind them."""
    net_json = Path(net_json)
    try:
        tensors = json.loads(net_json.read_text())["graph"]["tensors"]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{net_json}: not a qnn-onnx-converter model JSON (graph.tensors): {e}") from None

    def pick(kind):
        out = []
        for name, t in sorted(tensors.items(), key=lambda kv: kv[1]["id"]):
            if t["type"] != kind:
                continue
            if t["data_type"] not in QNN_TO_ONNX:
                raise ValueError(f"{net_json}: tensor {name}: QNN data_type {t['data_type']:#06x} has no ONNX type here")
            out.append((name, QNN_TO_ONNX[t["data_type"]], list(t["dims"])))
        return out
    return pick(0), pick(1)     # APP_WRITE, APP_READ


def signature(model_path: Path) -> tuple[list, list]:
    """(inputs, outputs) of an ONNX model as (name, elem_type, dims) triples."""
    m = onnx.load(str(model_path), load_external_data=False)

    def triples(values):
        return [(v.name, v.type.tensor_type.elem_type, [d.dim_value for d in v.type.tensor_type.shape.dim]) for v in values]
    return triples(m.graph.input), triples(m.graph.output)
