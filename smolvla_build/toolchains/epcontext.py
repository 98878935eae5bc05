"""Wrap a serialized QNN context binary in an EPContext ONNX model, so onnxruntime-qnn can run a
context made by qnn-context-binary-generator (no qnn-net-run needed).

The node follows what onnxruntime's QNN EP writes itself (docs/qairt-sdk.md, "The EPContext wrapper"): op
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
    from ..model_files import save_onnx
    save_onnx(model, out_onnx)
    return model


# QNN data_type enum (docs/qairt-sdk.md, "The EPContext wrapper") -> ONNX elem_type
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
            out.append((name, QNN_TO_ONNX[t["data_type"]], tensor_dims(net_json, name, t)))
        return out
    return pick(0), pick(1)     # APP_WRITE, APP_READ


def tensor_dims(source: Path, name: str, tensor: dict) -> list[int]:
    """A tensor's static shape: `dims` (2.2x _net.json), else `current_dims`, else `max_dims` (the
    keys other releases write)."""
    for key in ("dims", "current_dims", "max_dims"):
        if key in tensor:
            return [int(d) for d in tensor[key]]
    raise ValueError(f"{source}: tensor {name}: no dims, current_dims or max_dims")


def binary_info(info_json: Path) -> dict:
    """What qnn-context-binary-utility says a serialized context holds: {graph name: (input names,
    output names)} from info.graphs[].info.{graphName, graphInputs[].info.name, graphOutputs[]...}."""
    info_json = Path(info_json)
    try:
        graphs = json.loads(info_json.read_text())["info"]["graphs"]
        return {g["info"]["graphName"]: ([t["info"]["name"] for t in g["info"]["graphInputs"]],
                                         [t["info"]["name"] for t in g["info"]["graphOutputs"]])
                for g in graphs}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{info_json}: not a qnn-context-binary-utility JSON (info.graphs[].info): {e!r}") from None


def context_graph(info_json: Path, net_json: Path) -> tuple[str, list, list]:
    """(graph name, inputs, outputs) of a single-graph context: the name from the binary itself
    (qnn-context-binary-utility), the I/O types and shapes from the converter's _net.json. The two
    must name the same tensors, or the binary is not the converted graph."""
    graphs = binary_info(info_json)
    if len(graphs) != 1:
        raise ValueError(f"{info_json}: expected one graph in the context, found {sorted(graphs)}")
    (graph, (ins, outs)), = graphs.items()
    inputs, outputs = net_json_signature(net_json)
    for side, have, want in (("inputs", ins, [n for n, _, _ in inputs]), ("outputs", outs, [n for n, _, _ in outputs])):
        if sorted(have) != sorted(want):
            raise ValueError(f"{info_json}: graph {graph} {side} {sorted(have)} differ from {net_json} {sorted(want)}")
    return graph, inputs, outputs


def graph_io(model_path) -> tuple[list, list]:
    """(inputs, outputs) of an ONNX graph as (name, numpy dtype name, dims)."""
    def np_names(triples):
        return [(n, onnx.helper.tensor_dtype_to_np_dtype(t).name, dims) for n, t, dims in triples]
    inputs, outputs = signature(model_path)
    return np_names(inputs), np_names(outputs)


def signature(model_path: Path) -> tuple[list, list]:
    """(inputs, outputs) of an ONNX model as (name, elem_type, dims) triples."""
    from ..model_files import load_onnx
    m = load_onnx(model_path, load_external_data=False)

    def triples(values):
        return [(v.name, v.type.tensor_type.elem_type, [d.dim_value for d in v.type.tensor_type.shape.dim]) for v in values]
    return triples(m.graph.input), triples(m.graph.output)
