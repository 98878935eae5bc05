"""`python -m bench.htp_kernels`: the HTP emulation's fp16 kernels op by op, against fp16 storage.

Each op of the SmolVLA graphs runs alone on random inputs three ways: onnxruntime CPU in fp32 (the
reference); fp16 storage (the op computed exactly on fp16-rounded inputs, its output rounded to
fp16: what the fp16-rounded CPU proxy models, docs/runtimes.md); and the op compiled as the fp16
precision is (float16 graph, `enable_htp_fp16_precision`) and run in onnxruntime-qnn's HTP
emulation. Per op: the RMS distance of each to the reference, and of the HTP to fp16 storage. Where
the last is small next to the storage error, fp16 storage models the kernel; where it is not, the
kernel computes its own way, which a CPU proxy cannot follow without knowing it.
Runs alone, in about a minute; merged into bench/results.json and BENCHMARKS.md (section 14)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

SOC = {"soc_model": 60, "htp_arch": 73}
FP16 = {"context": {"fp16_relaxed_precision": True, "vtcm_mb": 8, "optimization_level": 3}}


def _model(op: str, inputs: dict[str, np.ndarray], attrs: dict, weights: dict[str, np.ndarray]):
    from onnx import TensorProto, helper, numpy_helper
    graph = helper.make_graph(
        [helper.make_node(op, [*inputs, *weights], ["y"], **attrs)], op,
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)) for k, v in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _htp(model, feeds: dict, tmp: Path) -> np.ndarray:
    import onnx
    import onnxruntime as ort

    from smolvla_build.toolchains.ort_qnn import to_float16
    from smolvla_runtime.htp import provider_options, session_options
    src, fp16 = tmp / "op.onnx", tmp / "op_fp16.onnx"
    onnx.save(model, str(src))
    to_float16(src, fp16)                         # as the fp16 precision's context is compiled
    sess = ort.InferenceSession(str(fp16), sess_options=session_options(provider_options(SOC, FP16)))
    return sess.run(None, feeds)[0]


def _cpu(model, feeds: dict) -> np.ndarray:
    import onnxruntime as ort
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _f16(x) -> np.ndarray:
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


def _rms(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def cases(rng) -> list[tuple]:
    """(label, op, inputs, attributes, weights): the op types of the three graphs, on inputs of
    their scale."""
    x = (rng.standard_normal((64, 1024)) * 3).astype(np.float32)
    pos = (np.abs(x) + 0.1).astype(np.float32)
    out = []
    for k in (64, 960, 3072):
        w = (rng.standard_normal((k, 128)) / np.sqrt(k)).astype(np.float32)
        out.append((f"MatMul, K={k}", "MatMul", {"x": rng.standard_normal((64, k)).astype(np.float32)}, {}, {"w": w}))
    out += [("Softmax (logits ~N(0, 3))", "Softmax", {"x": x}, {"axis": -1}, {}),
            ("Sigmoid", "Sigmoid", {"x": x}, {}, {}), ("Tanh", "Tanh", {"x": x}, {}, {}),
            ("Exp", "Exp", {"x": x / 3}, {}, {}), ("Sqrt", "Sqrt", {"x": pos}, {}, {}),
            ("Reciprocal", "Reciprocal", {"x": pos}, {}, {}),
            ("Div (by a row scalar)", "Div", {"x": x, "d": (np.abs(rng.standard_normal((64, 1))) + 0.5).astype(np.float32)}, {}, {}),
            ("ReduceMean of squares", "ReduceMean", {"x": x * x}, {"axes": [-1], "keepdims": 1}, {}),
            ("ReduceMax", "ReduceMax", {"x": x}, {"axes": [-1], "keepdims": 1}, {}),
            ("LayerNormalization", "LayerNormalization", {"x": x}, {"axis": -1, "epsilon": 1e-6},
             {"g": (1 + 0.1 * rng.standard_normal(1024)).astype(np.float32),
              "b": (0.1 * rng.standard_normal(1024)).astype(np.float32)})]
    return out


def htp_kernels(log) -> dict:
    from .common import machine
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, op, inputs, attrs, weights in cases(rng):
            model = _model(op, inputs, attrs, weights)
            reference = _cpu(model, inputs)
            storage = _f16(_cpu(_model(op, inputs, attrs, {k: _f16(v) for k, v in weights.items()}),
                                {k: _f16(v) for k, v in inputs.items()}))
            htp = _htp(model, inputs, Path(tmp))
            row = {"op": label, "storage_to_reference": _rms(storage, reference), "htp_to_reference": _rms(htp, reference),
                   "htp_to_storage": _rms(htp, storage), "mean_abs_output": float(np.abs(reference).mean())}
            row["unmodelled_share"] = row["htp_to_storage"] / row["htp_to_reference"] if row["htp_to_reference"] else 0.0
            rows.append(row)
            log(f"  {label}: HTP to fp16 storage {row['htp_to_storage']:.2e}, HTP to fp32 {row['htp_to_reference']:.2e}")
    return {"machine": machine(), "ops": rows}


def section(k: dict) -> list[str]:
    L = ["", "## 14. The HTP emulation's fp16 kernels, op by op", "",
         f"Measured by `{k['command']}` on {k['date']}, on {k['machine']} (a separate run from the sections above). "
         "Each op alone on seeded random inputs: fp32 on the CPU, fp16 storage (exact op on fp16-rounded inputs, "
         "output rounded to fp16: what the fp16-rounded CPU proxy computes) and the HTP emulation of the op compiled "
         "as the fp16 precision is. RMS distances; share = HTP to storage / HTP to fp32.", "",
         "| op | storage to fp32 | HTP to fp32 | HTP to storage | share | mean abs output |", "|---|---|---|---|---|---|"]
    L += [f"| {r['op']} | {r['storage_to_reference']:.2e} | {r['htp_to_reference']:.2e} | {r['htp_to_storage']:.2e} | "
          f"{r['unmodelled_share']:.2f} | {r['mean_abs_output']:.3g} |" for r in k["ops"]]
    L += ["", "A share near 0: fp16 storage models the kernel (it rounds its inputs and its result, and computes "
          "in between as fp32 does). A share near 1 or above: the kernel has an error of its own that storage "
          "rounding does not reproduce (docs/runtimes.md, \"CPU proxies\")."]
    return L


def main() -> int:
    from .report import merge_scenario
    merge_scenario("htp_kernels", htp_kernels(lambda m: print(m, file=sys.stderr, flush=True)),
                   "python -m bench.htp_kernels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
