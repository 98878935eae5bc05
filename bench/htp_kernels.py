"""`python -m bench.htp_kernels`: the HTP emulation's fp16 kernels op by op, against fp16 storage.

Each op of the SmolVLA graphs runs alone on random inputs three ways: onnxruntime CPU in fp32 (the
reference); fp16 storage (the op computed exactly on fp16-rounded inputs, its output rounded to
fp16: what the fp16-rounded CPU proxy models, docs/runtimes.md); and the op compiled as the fp16
precision is (float16 graph, `enable_htp_fp16_precision`) and run in onnxruntime-qnn's HTP
emulation. Per op: the RMS distance of each to the reference, and of the HTP to fp16 storage. Where
the last is small next to the storage error, fp16 storage models the kernel; where it is not, the
kernel computes its own way, which a CPU proxy cannot follow without knowing it.

Then, for the kernels fp16 storage does not model, what would: each elementwise kernel on every finite
fp16 value, at two positions (is it a function of its input alone, so that a table of 63488 entries
reproduces it?); Div against x times the Reciprocal kernel's own output; and Softmax on the same
logits, split into a per-row scale (its normalization) and the rest.
Runs alone, in a few minutes; merged into bench/results.json and BENCHMARKS.md (section 14)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from smolvla_runtime.htp import Soc

SOC = Soc("Snapdragon X Elite", 60, 73)
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


def _fp16_values(a) -> np.ndarray:
    """The emulation's float32 outputs are fp16 values with the lowest float32 bit set (its output
    conversion does it; measured: every nonzero output has it): that bit cleared."""
    a = np.ascontiguousarray(a, np.float32)
    return (a.view(np.uint32) & ~np.uint32(1)).view(np.float32)


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


UNARY = {"Sigmoid": lambda x: 1 / (1 + np.exp(-x)), "Tanh": np.tanh, "Exp": np.exp, "Reciprocal": lambda x: 1 / x,
         "Sqrt": np.sqrt}


def _unary_inputs(op: str) -> np.ndarray:
    """Every finite fp16 value (63488), in rows of 1024; Exp's clipped below its overflow, the
    Reciprocal's and Sqrt's made positive."""
    x = np.arange(65536, dtype=np.uint16).view(np.float16)
    x = x[np.isfinite(x)].astype(np.float32)
    x = np.concatenate([x, np.zeros((-x.size) % 1024, np.float32)]).reshape(-1, 1024)
    if op == "Exp":
        x = np.clip(x, -17, 11)
    if op in ("Reciprocal", "Sqrt"):
        x = np.where(x == 0, 1, np.abs(x)).astype(np.float32)
    return x


def unary_tables(tmp: Path, log) -> tuple[list[dict], dict]:
    """Per elementwise kernel: the same output for the same input at another position (the array
    reversed), and its error in units of the fp16 spacing at the exact result (where that is a normal
    fp16 value). Returns the rows and each kernel's (inputs, outputs)."""
    rows, tables = [], {}
    for op, exact in UNARY.items():
        x = _unary_inputs(op)
        model = _model(op, {"x": x}, {}, {})
        y = _fp16_values(_htp(model, {"x": x}, tmp))
        flipped = _fp16_values(_htp(model, {"x": x[::-1, ::-1].copy()}, tmp))[::-1, ::-1]
        with np.errstate(over="ignore", divide="ignore"):
            e = exact(x.astype(np.float64))
        normal = np.isfinite(e) & (np.abs(e) >= 2.0 ** -14) & (np.abs(e) <= 65504)
        ulps = (y[normal] - e[normal]) / np.spacing(np.abs(e[normal]).astype(np.float16)).astype(np.float64)
        rows.append({"op": op, "values": int(np.unique(x).size), "same_at_other_positions": bool(np.array_equal(y, flipped)),
                     "fp16_outputs": float(np.mean(y.astype(np.float16).astype(np.float32) == y)),
                     "round_to_nearest": float(np.mean(y[normal] == e[normal].astype(np.float16).astype(np.float64))),
                     "mean_ulp": float(ulps.mean()), "p99_abs_ulp": float(np.percentile(np.abs(ulps), 99))})
        tables[op] = (x, y)
        log(f"  {op} on every fp16 value: same at other positions {rows[-1]['same_at_other_positions']}, "
            f"round-to-nearest {rows[-1]['round_to_nearest']:.3f}, mean error {rows[-1]['mean_ulp']:+.2f} ulp")
    return rows, tables


def _table(x: np.ndarray, y: np.ndarray):
    """The kernel as a lookup on its fp16 input."""
    t = np.full(65536, np.nan, np.float32)
    t[x.astype(np.float16).ravel().view(np.uint16)] = y.ravel()
    return lambda a: t[np.asarray(a, np.float32).astype(np.float16).view(np.uint16)]


def division(rng, reciprocal, tmp: Path) -> dict:
    """Div against models of it, on the inputs of the op-by-op row: distance to the HTP over the HTP's
    distance to fp32 (the proxies' ratio, docs/runtimes.md)."""
    x = (rng.standard_normal((64, 1024)) * 3).astype(np.float32)
    d = (np.abs(rng.standard_normal((64, 1024))) + 0.5).astype(np.float32)
    htp = _fp16_values(_htp(_model("Div", {"x": x, "d": d}, {}, {}), {"x": x, "d": d}, tmp)).astype(np.float64)
    base = _rms(htp, x.astype(np.float64) / d)
    return {"storage": _rms(_f16(_f16(x) / _f16(d)), htp) / base,
            "times_reciprocal_kernel": _rms(_f16(_f16(x) * reciprocal(d)), htp) / base}


def softmax_structure(rng, exp, tmp: Path, spread: tuple[float, float]) -> dict:
    """Softmax rows = exponentials times a per-row normalization. How much of the HTP's error is that
    scale (RMS left after each row is rescaled to sum 1), whether the scale's error is a function of
    the row sum (its spread between rows with neighbouring sum mantissas, against its whole spread),
    and a model with the Exp kernel's table and the measured row scales (an oracle: the best a proxy
    without the normalization's algorithm could do is worse)."""
    x = (rng.standard_normal((4096, 1024)) * rng.uniform(*spread, (4096, 1))).astype(np.float32)
    htp = _fp16_values(_htp(_model("Softmax", {"x": x}, {"axis": -1}, {}), {"x": x}, tmp)).astype(np.float64)
    e = np.exp(x.astype(np.float64) - x.max(-1, keepdims=True))
    ref = e / e.sum(-1, keepdims=True)
    base = _rms(htp, ref)
    rescaled = htp / htp.sum(-1, keepdims=True)
    big = e > 0.05                                  # where fp16 output rounding is small against the scale error
    scale = np.array([np.median(h[b] / r[b]) for h, r, b in zip(htp, ref, big)])
    mantissa = np.frexp(e.sum(-1))[0]
    by_mantissa = scale[np.argsort(mantissa)]
    diff = _f16(x) - _f16(x).max(-1, keepdims=True)
    model = _f16(exp(np.maximum(_f16(diff), -17)) / e.sum(-1, keepdims=True) * scale[:, None])  # exp(-17) rounds to 0 in fp16
    return {"rows": int(x.shape[0]), "spread": list(spread), "row_sum_median": float(np.median(e.sum(-1))),
            "row_scale_share": 1 - _rms(rescaled, ref) / base,
            "scale_error_mean": float(scale.mean() - 1), "scale_error_std": float(scale.std()),
            "scale_error_std_between_neighbours": float(np.diff(by_mantissa).std() / np.sqrt(2)),
            "storage_ratio": _rms(_f16(np.exp(diff) / np.exp(diff).sum(-1, keepdims=True)), htp) / base,
            "oracle_scale_ratio": _rms(model, htp) / base}


def first_layer(pipeline: Path, tmp: Path, log) -> list[dict]:
    """The built vision encoder's first layer on validation's own input, cut after each part: the HTP's
    distance to fp32 there, and the fp16-rounded proxy's distance to the HTP (where the proxy stops
    following it). Cuts found by structure: the LayerNorms and the first Softmax."""
    import onnx
    import onnxruntime as ort
    from onnx.utils import Extractor

    from smolvla_build.config import load_pipeline
    from smolvla_build.cpu_passes.fp16_rounding import round_to_fp16
    layout = load_pipeline(pipeline).layout("ort-qnn")
    model = onnx.shape_inference.infer_shapes(onnx.load(str(layout.preprocessed("vision_encoder"))))
    norms = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    cuts = [("embeddings", norms[0].input[0]), ("layer_norm1", norms[0].output[0]),
            ("attention Softmax", softmax.output[0]), ("attention + residual", norms[1].input[0]),
            ("layer output (MLP + residual)", norms[2].input[0])]
    arrays = np.load(layout.validation_arrays("vision_encoder", "fp16"))
    feeds = {k[len("in/"):]: arrays[k] for k in arrays.files if k.startswith("in/")}
    cpu = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    extractor, rows = Extractor(model), []
    for label, name in cuts:
        # a graph per cut: an intermediate made a graph output changes what the HTP compiles around it
        part = extractor.extract_model(list(feeds), [name])
        ref, proxy, htp = cpu(part), cpu(round_to_fp16(part)), _fp16_values(_htp(part, feeds, tmp))
        rows.append({"cut": label, "htp_to_reference": _rms(htp, ref), "proxy_to_htp": _rms(proxy, htp),
                     "proxy_to_reference": _rms(proxy, ref), "mean_abs_output": float(np.abs(ref).mean())})
        rows[-1]["ratio"] = rows[-1]["proxy_to_htp"] / rows[-1]["htp_to_reference"]
        log(f"  vision encoder layer 0, {label}: proxy ratio {rows[-1]['ratio']:.2f}")
    return rows


def htp_kernels(log, pipeline: Path | None = None) -> dict:
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
        unary, tables = unary_tables(Path(tmp), log)
        div = division(rng, _table(*tables["Reciprocal"]), Path(tmp))
        log(f"  Div: ratio {div['storage']:.2f} as fp16 storage, {div['times_reciprocal_kernel']:.3f} as x times the Reciprocal kernel")
        # flat rows, as the random-weight vision encoder's first attention (row std 0.10-0.45), and peaked ones
        soft = [softmax_structure(rng, _table(*tables["Exp"]), Path(tmp), spread) for spread in ((0.1, 0.5), (1, 3))]
        for v in soft:
            log(f"  Softmax, row std {v['spread']}: {100 * v['row_scale_share']:.0f}% of the error is a per-row scale; "
                f"oracle model ratio {v['oracle_scale_ratio']:.2f}")
        layer = first_layer(pipeline, Path(tmp), log) if pipeline else None
    return {"machine": machine(), "ops": rows, "unary": unary, "division": div, "softmax": soft,
            **({"first_layer": layer, "pipeline": str(pipeline)} if layer else {})}


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
    if "unary" not in k:
        return L
    L += ["", "What would model the others. Each elementwise kernel on every finite fp16 value, run twice with the "
          "values at other positions; its outputs are fp16 values (after clearing the lowest float32 bit, which the "
          "emulation's output conversion sets); error in units of the fp16 spacing at the exact result:", "",
          "| kernel | inputs | same output at other positions | fp16 outputs | round-to-nearest | mean error, ulp | p99 abs error, ulp |",
          "|---|---|---|---|---|---|---|"]
    L += [f"| {u['op']} | {u['values']} | {'yes' if u['same_at_other_positions'] else 'no'} | {u['fp16_outputs']:.3f} | "
          f"{u['round_to_nearest']:.3f} | {u['mean_ulp']:+.2f} | {u['p99_abs_ulp']:.2f} |" for u in k["unary"]]
    d = k["division"]
    L += ["", f"Each is a function of its fp16 input alone, so a table of its outputs reproduces it exactly. Div "
          f"(the row above's inputs): fp16 storage of x / d is {d['storage']:.2f} of the HTP's distance to fp32 away "
          f"from the HTP; fp16(x times the Reciprocal kernel's output for d) is {d['times_reciprocal_kernel']:.3f}.",
          "", "Softmax, 4096 rows of 1024 logits ~N(0, s^2) per group. Row scale = the median over a row's larger "
          "outputs of HTP / fp32 (its normalization's error); share = the part of the HTP's RMS distance to fp32 "
          "that rescaling each row to sum 1 removes; neighbours = the scale error's spread between rows whose sums "
          "have neighbouring mantissas (small against its whole spread: a function of the sum). Oracle: the Exp "
          "kernel's table times each row's measured scale, rounded to fp16, as a ratio to the HTP's distance to fp32.",
          "", "| rows | median row sum | share | scale error mean | std | neighbours | fp16 storage ratio | oracle ratio |",
          "|---|---|---|---|---|---|---|---|"]
    L += [f"| s {v['spread'][0]}-{v['spread'][1]} | {v['row_sum_median']:.3g} | {100 * v['row_scale_share']:.0f}% | "
          f"{v['scale_error_mean']:+.1e} | {v['scale_error_std']:.1e} | {v['scale_error_std_between_neighbours']:.1e} | "
          f"{v['storage_ratio']:.2f} | {v['oracle_scale_ratio']:.2f} |" for v in k["softmax"]]
    if k.get("first_layer"):
        L += ["", f"Where the fp16-rounded proxy stops following the HTP: the first layer of the built full-preset vision "
              f"encoder (`--pipeline {k['pipeline']}`), on validation's own input, cut after each part (a graph per cut, "
              "compiled as the fp16 precision is: an intermediate made a graph output changes what the HTP compiles). ratio = proxy to HTP / HTP to fp32, as the proxies' (section 13).", "",
              "| cut | HTP to fp32 | proxy to HTP | proxy to fp32 | ratio | mean abs |", "|---|---|---|---|---|---|"]
        L += [f"| {r['cut']} | {r['htp_to_reference']:.2e} | {r['proxy_to_htp']:.2e} | {r['proxy_to_reference']:.2e} | "
              f"{r['ratio']:.2f} | {r['mean_abs_output']:.3g} |" for r in k["first_layer"]]
    return L


def main() -> int:
    import argparse

    from .benchmarks_md import merge_scenario
    ap = argparse.ArgumentParser(prog="python -m bench.htp_kernels")
    ap.add_argument("--pipeline", type=Path, help="a built full-preset pipeline (validated in fp16): "
                    "also cut its vision encoder's first layer")
    args = ap.parse_args()
    command = "python -m bench.htp_kernels" + (f" --pipeline {args.pipeline}" if args.pipeline else "")
    merge_scenario("htp_kernels", htp_kernels(lambda m: print(m, file=sys.stderr, flush=True), args.pipeline), command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
