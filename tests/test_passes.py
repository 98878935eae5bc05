"""Graph passes: each pattern built as a small ONNX graph, then the tiny SmolVLA end to end."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnx.helper as oh
import onnxruntime as ort
import pytest
from onnx import TensorProto as T

from smolvla_build.passes.activations import silu_through_tanh, tanh_gelu_half_first
from smolvla_build.passes.bool_logic import eliminate_bool_logic
from smolvla_build.passes.checker import census, check_htp_clean
from smolvla_build.passes.cumsum import cumsum_to_matmul
from smolvla_build.passes.embedding import embedding_on_cpu
from smolvla_build.passes.fold import fold_constant_subgraphs
from smolvla_build.passes.gemm import gemm_to_matmul
from smolvla_build.passes.masks import bound_mask_constants
from smolvla_build.passes.pipeline import preprocess
from smolvla_build.passes.rmsnorm import rmsnorm_over_max
from smolvla_build.passes.sinusoid import sinusoid_on_cpu
from smolvla_runtime.htp import Soc


def model(nodes, inputs, outputs, inits=()):
    g = oh.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def vi(name, dtype, shape):
    return oh.make_tensor_value_info(name, dtype, shape)


def run(m, feeds):
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = {i.name: i.type for i in s.get_inputs()}
    cast = {k: (v.astype(np.int32) if names[k] == "tensor(int32)" else v) for k, v in feeds.items() if k in names}
    return s.run(None, cast)


def same_serialization(a, b):
    return a.SerializeToString() == b.SerializeToString()


PAD = np.array([[1, 1, 1, 0, 0]], dtype=bool)   # real padding, not all ones


def test_constant_cumsum_chain_is_folded():
    # att flags [0,0,0,0,1] -> cumsum -> 2-D mask (cum[j] <= cum[i]) -> Where on scores
    flags = oh.make_tensor("flags", T.INT64, [1, 5], [0, 0, 0, 0, 1])
    nodes = [oh.make_node("CumSum", ["flags", "axis"], ["cum"]),
             oh.make_node("Unsqueeze", ["cum", "ax1"], ["cj"]), oh.make_node("Unsqueeze", ["cum", "ax2"], ["ci"]),
             oh.make_node("LessOrEqual", ["cj", "ci"], ["m"]),
             oh.make_node("Where", ["m", "s", "neg"], ["y"])]
    inits = [flags, oh.make_tensor("axis", T.INT64, [], [1]), oh.make_tensor("ax1", T.INT64, [1], [1]),
             oh.make_tensor("ax2", T.INT64, [1], [2]), oh.make_tensor("neg", T.FLOAT, [], [-1e9])]
    m = model(nodes, [vi("s", T.FLOAT, [1, 5, 5])], [vi("y", T.FLOAT, [1, 5, 5])], inits)
    assert any("CumSum" in p for p in check_htp_clean(m))
    folded = fold_constant_subgraphs(m)
    assert census(folded)["CumSum"] == 0 and check_htp_clean(folded) == []
    s = np.random.default_rng(0).standard_normal((1, 5, 5)).astype(np.float32)
    assert np.array_equal(run(m, {"s": s})[0], run(folded, {"s": s})[0])
    assert same_serialization(fold_constant_subgraphs(folded), folded)


def test_dynamic_cumsum_becomes_matmul():
    # positions = cumsum(pad) - 1 from a runtime mask
    nodes = [oh.make_node("Cast", ["pad"], ["padi"], to=T.INT64), oh.make_node("CumSum", ["padi", "axis"], ["cum"]),
             oh.make_node("Sub", ["cum", "one"], ["pos"])]
    m = model(nodes, [vi("pad", T.BOOL, [1, 5])], [vi("pos", T.INT64, [1, 5])],
              [oh.make_tensor("axis", T.INT64, [], [1]), oh.make_tensor("one", T.INT64, [], [1])])
    out = cumsum_to_matmul(m)
    assert census(out)["CumSum"] == 0
    assert np.array_equal(run(m, {"pad": PAD})[0], run(out, {"pad": PAD})[0])
    assert same_serialization(cumsum_to_matmul(out), out)


def _bool_graph():
    # Equal/Less/Greater feeding And/Or/Not, a Cast to bool, a Where on the result
    nodes = [oh.make_node("Greater", ["x", "zero"], ["gt"]), oh.make_node("Less", ["x", "two"], ["lt"]),
             oh.make_node("Equal", ["x", "one"], ["eq"]),
             oh.make_node("And", ["gt", "lt"], ["a"]), oh.make_node("Or", ["a", "eq"], ["o"]),
             oh.make_node("Not", ["o"], ["n"]), oh.make_node("Cast", ["f"], ["fb"], to=T.BOOL),
             oh.make_node("And", ["n", "fb"], ["nb"]), oh.make_node("And", ["nb", "pad"], ["mask"]),
             oh.make_node("Where", ["mask", "x", "neg"], ["y"])]
    inits = [oh.make_tensor(n, T.FLOAT, [], [v]) for n, v in (("zero", 0.0), ("two", 2.0), ("one", 1.0), ("neg", -5.0))]
    return model(nodes, [vi("x", T.FLOAT, [1, 5]), vi("f", T.FLOAT, [1, 5]), vi("pad", T.BOOL, [1, 5])],
                 [vi("y", T.FLOAT, [1, 5])], inits)


def test_bool_logic_becomes_int32_arithmetic():
    m = _bool_graph()
    raw = check_htp_clean(m)
    assert any("And" in p for p in raw) and any("Cast to BOOL" in p for p in raw) and any("input 'pad'" in p for p in raw)
    out = eliminate_bool_logic(m)
    assert check_htp_clean(out) == [], check_htp_clean(out)
    assert {i.name: i.type.tensor_type.elem_type for i in out.graph.input}["pad"] == T.INT32
    rng = np.random.default_rng(1)
    for _ in range(5):
        feeds = {"x": rng.integers(-1, 4, (1, 5)).astype(np.float32), "f": rng.integers(0, 2, (1, 5)).astype(np.float32),
                 "pad": PAD}
        assert np.array_equal(run(m, feeds)[0], run(out, feeds)[0])
    assert same_serialization(eliminate_bool_logic(out), out)


def test_bool_output_becomes_int32_output():
    m = model([oh.make_node("Not", ["pad"], ["inv"])], [vi("pad", T.BOOL, [1, 5])], [vi("inv", T.BOOL, [1, 5])])
    out = eliminate_bool_logic(m)
    assert out.graph.output[0].type.tensor_type.elem_type == T.INT32 and check_htp_clean(out) == []
    assert np.array_equal(run(out, {"pad": PAD})[0], (~PAD).astype(np.int32))


def _masked_softmax(neg):
    nodes = [oh.make_node("Where", ["mask", "s", "neg"], ["ms"]), oh.make_node("Softmax", ["ms"], ["p"], axis=-1)]
    return model(nodes, [vi("mask", T.BOOL, [1, 3, 4]), vi("s", T.FLOAT, [1, 3, 4])], [vi("p", T.FLOAT, [1, 3, 4])],
                 [oh.make_tensor("neg", T.FLOAT, [], [neg])])


@pytest.mark.parametrize("neg", [float(np.finfo(np.float32).min), float("-inf")])
def test_mask_constants_are_bounded(neg):
    m = _masked_softmax(neg)
    out = bound_mask_constants(m)
    assert census(m)["huge_negative_constants"] == 1 and census(out)["huge_negative_constants"] == 0
    mask = np.array([[[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]], dtype=bool)   # last row fully masked
    s = np.random.default_rng(2).standard_normal((1, 3, 4)).astype(np.float32)
    a, b = run(m, {"mask": mask, "s": s})[0], run(out, {"mask": mask, "s": s})[0]
    assert np.allclose(a[:, :2], b[:, :2], atol=1e-7)                # rows with a valid key: unchanged
    assert np.allclose(b[0, 2], 0.25)                                 # fully masked row: uniform, finite
    # fp16 (how the HTP runs it): the original gives NaN on the masked row, the bounded one does not
    s16 = s.astype(np.float16).astype(np.float32)
    logits = np.where(mask, s16, np.float16(max(neg, -65504.0)) if neg != float("-inf") else -np.inf)
    with np.errstate(invalid="ignore"):
        e = np.exp(logits - logits.max(-1, keepdims=True))
    assert np.isnan(e / e.sum(-1, keepdims=True))[0, 2].all() or neg != float("-inf")
    assert same_serialization(bound_mask_constants(out), out)


def test_embedding_gather_moves_to_the_cpu():
    table = np.random.default_rng(3).standard_normal((20, 4)).astype(np.float32)
    nodes = [oh.make_node("Gather", ["embed_tokens.weight", "ids"], ["/embed_tokens/Gather_output_0"]),
             oh.make_node("Mul", ["/embed_tokens/Gather_output_0", "scale"], ["y"])]
    m = model(nodes, [vi("ids", T.INT64, [1, 6])], [vi("y", T.FLOAT, [1, 6, 4])],
              [onnx.numpy_helper.from_array(table, "embed_tokens.weight"), oh.make_tensor("scale", T.FLOAT, [], [2.0])])
    out = embedding_on_cpu(m)
    assert [i.name for i in out.graph.input] == ["/embed_tokens/Gather_output_0"]
    assert not out.graph.initializer or all(i.name != "embed_tokens.weight" for i in out.graph.initializer)
    ids = np.array([[1, 5, 7, 0, 0, 19]])
    assert np.allclose(run(m, {"ids": ids})[0], run(out, {"/embed_tokens/Gather_output_0": table[ids]})[0])
    assert same_serialization(embedding_on_cpu(out), out)


def test_sinusoid_moves_to_the_cpu():
    nodes = [oh.make_node("Unsqueeze", ["t", "ax"], ["t2"]), oh.make_node("Mul", ["t2", "w"], ["a"]),
             oh.make_node("Sin", ["a"], ["s"]), oh.make_node("Cos", ["a"], ["c"]),
             oh.make_node("Concat", ["s", "c"], ["emb"], axis=1), oh.make_node("MatMul", ["emb", "W"], ["y"])]
    w = (2 * np.pi / np.linspace(4e-3, 4.0, 8)).astype(np.float32)[None]
    m = model(nodes, [vi("t", T.FLOAT, [1])], [vi("y", T.FLOAT, [1, 3])],
              [oh.make_tensor("ax", T.INT64, [1], [1]), onnx.numpy_helper.from_array(w, "w"),
               onnx.numpy_helper.from_array(np.ones((16, 3), np.float32), "W")])
    out = sinusoid_on_cpu(m)
    assert [i.name for i in out.graph.input] == ["emb"] and not {n.op_type for n in out.graph.node} & {"Sin", "Cos"}


def _rmsnorm_model(eps=1e-6):
    """LlamaRMSNorm as torch exports it: x * 1 / Sqrt(ReduceMean(x^2) + eps), then the weight."""
    nodes = [oh.make_node("Pow", ["x", "two"], ["sq"]), oh.make_node("ReduceMean", ["sq"], ["ms"], axes=[-1], keepdims=1),
             oh.make_node("Add", ["ms", "eps"], ["mse"]), oh.make_node("Sqrt", ["mse"], ["rms"]),
             oh.make_node("Div", ["one", "rms"], ["inv"]), oh.make_node("Mul", ["x", "inv"], ["normed"]),
             oh.make_node("Mul", ["normed", "w"], ["y"])]
    return model(nodes, [vi("x", T.FLOAT, [1, 5, 64])], [vi("y", T.FLOAT, [1, 5, 64])],
                 [oh.make_tensor("two", T.FLOAT, [], [2.0]), oh.make_tensor("eps", T.FLOAT, [], [eps]),
                  oh.make_tensor("one", T.FLOAT, [], [1.0]),
                  onnx.numpy_helper.from_array(np.linspace(0.5, 1.5, 64, dtype=np.float32), "w")])


def _with_output(m, name):
    out = onnx.ModelProto()
    out.CopyFrom(m)
    out.graph.output.append(onnx.helper.make_tensor_value_info(name, T.FLOAT, None))
    return out


def test_rmsnorm_over_max_keeps_its_squares_within_fp16():
    """Rows whose squares overflow fp16 (|x| up to 300: 9e4 > 65504) and rows whose squares are fp16
    subnormals (|x| ~ 1e-3): after the rewrite every square is at most 1 and their mean at least
    1 / width; the output is the same in fp32, in fp16 it stays close, and an all-zero row stays 0."""
    m = _rmsnorm_model()
    out = rmsnorm_over_max(m)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 3, (1, 5, 64)).astype(np.float32)
    x[0, 2, 7] = 300.0
    x[0, 3] *= 3e-4
    x[0, 4] = 0.0
    want, got = run(m, {"x": x})[0], run(out, {"x": x})[0]
    assert np.allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.array_equal(got[0, 4], np.zeros(64, np.float32))
    squares = run(_with_output(out, "sq"), {"x": x})[1]
    means = run(_with_output(out, "ms"), {"x": x})[1]
    assert squares.max() <= 1.0 and means[0, :4].min() >= 1 / 64
    assert run(_with_output(m, "sq"), {"x": x})[1].max() > 65504        # the original's square overflows fp16
    # the same graph computed in fp16, converted as the ort-qnn toolchain converts its fp16 builds
    from onnxruntime.transformers.float16 import convert_float_to_float16
    half = convert_float_to_float16(out, keep_io_types=True)
    got16 = run(half, {"x": x})[0]
    assert np.abs(got16 - want).max() <= 0.01 * np.abs(want).max()
    assert same_serialization(rmsnorm_over_max(out), out)                 # idempotent


def test_the_tiny_llm_has_every_rmsnorm_rewritten(tiny_export):
    m = onnx.load(str(tiny_export / "llm_backbone.onnx"))
    squares = {n.output[0] for n in m.graph.node if n.op_type == "Pow"}          # RoPE's base^k is a Pow too
    norms = sum(n.op_type == "ReduceMean" and n.input[0] in squares for n in m.graph.node)
    out = rmsnorm_over_max(m)
    assert norms == 3 and sum(n.name.endswith("/OverMax") for n in out.graph.node) == norms


# (tokens, input width, output width, std of x): where the HTP's kernels for the exported forms lose
# accuracy (measured: SiLU at the full LLM's sizes, 177 x 960 -> 2560, not at small ones; GELU on
# x ~ N(0, 3^2) at these sizes; in the full vision encoder on its own input)
ACTIVATION_SHAPES = {"gelu": (512, 64, 256, 3.0), "silu": (177, 960, 2560, 0.6)}


def _mlp_activation_model(activation: str):
    """A projection then its activation, as torch exports them: gelu(approximate="tanh")
    `0.5 * (x * (1 + Tanh(k * (x + 0.044715 * x*x*x))))` or SiLU `x * Sigmoid(x)`; x ~ N(0, std^2) on
    inputs ~ N(0, 1)."""
    tokens, k, width, std = ACTIVATION_SHAPES[activation]
    rng = np.random.default_rng(5)
    c = lambda name, v: oh.make_tensor(name, T.FLOAT, [], [v])
    inits = [onnx.numpy_helper.from_array((rng.standard_normal((k, width)) * std / np.sqrt(k)).astype(np.float32), "w")]
    if activation == "gelu":              # SigLIP's fc1 has a bias, the LLM's gate_proj none
        nodes = [oh.make_node("MatMul", ["h", "w"], ["hw"]), oh.make_node("Add", ["b", "hw"], ["x"])]
        inits.append(onnx.numpy_helper.from_array((rng.standard_normal(width) / 10).astype(np.float32), "b"))
    else:
        nodes = [oh.make_node("MatMul", ["h", "w"], ["x"])]
    if activation == "gelu":
        nodes += [oh.make_node("Mul", ["x", "x"], ["x2"]), oh.make_node("Mul", ["x", "x2"], ["x3"]),
                  oh.make_node("Mul", ["a", "x3"], ["ax3"]), oh.make_node("Add", ["x", "ax3"], ["inner"]),
                  oh.make_node("Mul", ["k", "inner"], ["z"]), oh.make_node("Tanh", ["z"], ["t"]),
                  oh.make_node("Add", ["one", "t"], ["one_t"]), oh.make_node("Mul", ["x", "one_t"], ["x_one_t"]),
                  oh.make_node("Mul", ["half", "x_one_t"], ["y"])]
        inits += [c("a", 0.044715), c("k", 0.7978845608028654), c("one", 1.0), c("half", 0.5)]
    else:
        nodes += [oh.make_node("Sigmoid", ["x"], ["s"]), oh.make_node("Mul", ["x", "s"], ["y"])]
    return model(nodes, [vi("h", T.FLOAT, [1, tokens, k])], [vi("y", T.FLOAT, [1, tokens, width])], inits)


@pytest.mark.parametrize("activation", ["gelu", "silu"])
def test_activations_are_rewritten_to_the_forms_the_htp_computes_op_by_op(activation):
    """The same function in fp32; the exported form is gone (GELU: its half taken from x first and the
    cube a Pow, onnxruntime's FastGelu pattern, which the CPU copy still fuses; SiLU: no Sigmoid,
    a Tanh of x / 2); idempotent; a Tanh or Sigmoid that is not the activation is left alone."""
    from smolvla_build.cpu_passes.gelu import fuse_tanh_gelu
    m = _mlp_activation_model(activation)
    rewrite = tanh_gelu_half_first if activation == "gelu" else silu_through_tanh
    out = rewrite(m)
    tokens, k, _, _ = ACTIVATION_SHAPES[activation]
    h = np.random.default_rng(0).normal(0, 5, (1, tokens, k)).astype(np.float32)       # into both tails
    want = run(m, {"h": h})[0]
    # preprocess's measure (max abs error / max abs value): SiLU's tail, x * (0.5 - 0.5 * (1 - tiny)),
    # cancels in fp32 where x * Sigmoid(x) does not, within 1e-6 of the largest value
    assert np.abs(run(out, {"h": h})[0] - want).max() <= 1e-6 * np.abs(want).max()
    ops = [n.op_type for n in out.graph.node]
    if activation == "gelu":
        assert ops.count("Pow") == 1 and ops.count("Tanh") == 1
        last = next(n for n in out.graph.node if n.output[0] == "y")
        producers = {o: n for n in out.graph.node for o in n.output}
        assert sorted(producers[i].op_type for i in last.input) == ["Add", "Mul"]      # (x * 0.5) * (1 + tanh)
        assert [n.op_type for n in fuse_tanh_gelu(out).graph.node].count("FastGelu") == 1
    else:
        assert "Sigmoid" not in ops and ops.count("Tanh") == 1
    assert same_serialization(rewrite(out), out)
    other = model([oh.make_node("Tanh" if activation == "gelu" else "Sigmoid", ["x"], ["y"])],
                  [vi("x", T.FLOAT, [4])], [vi("y", T.FLOAT, [4])])
    assert same_serialization(rewrite(other), other)


@pytest.mark.parametrize("activation", ["gelu", "silu"])
def test_the_htp_computes_the_rewritten_activations_closer_to_fp32(activation, tmp_path):
    """Why the rewrites exist: in HTP emulation (fp16, soc 60 / v73) the exported forms are computed by
    a less accurate kernel than the rewritten ones, op by op (docs/runtimes.md, "Activation forms";
    on the full models 4.9 to 5.9 times farther from fp32)."""
    from smolvla_build.toolchains.ort_qnn import to_float16
    from smolvla_runtime.htp import provider_options, session_options
    options = provider_options(Soc("Snapdragon X Elite", 60, 73),
                               {"context": {"fp16_relaxed_precision": True, "vtcm_mb": 8, "optimization_level": 3}})
    m = _mlp_activation_model(activation)
    tokens, k, _, _ = ACTIVATION_SHAPES[activation]
    h = np.random.default_rng(1).standard_normal((1, tokens, k)).astype(np.float32)
    ref = run(m, {"h": h})[0].astype(np.float64)
    errors = {}
    for label, graph in (("exported", m), ("rewritten", (tanh_gelu_half_first if activation == "gelu" else silu_through_tanh)(m))):
        onnx.save(graph, str(tmp_path / f"{label}.onnx"))
        to_float16(tmp_path / f"{label}.onnx", tmp_path / f"{label}_fp16.onnx")
        got = ort.InferenceSession(str(tmp_path / f"{label}_fp16.onnx"), sess_options=session_options(options)).run(None, {"h": h})[0]
        errors[label] = float(np.sqrt(np.mean((got - ref) ** 2)))
    assert errors["rewritten"] < 0.5 * errors["exported"], errors


def test_the_tiny_models_have_every_activation_rewritten(tiny_export):
    vision = onnx.load(str(tiny_export / "vision_encoder.onnx"))
    gelus = sum(n.op_type == "Tanh" for n in vision.graph.node)
    assert gelus > 0 and sum(n.op_type == "Pow" for n in tanh_gelu_half_first(vision).graph.node) == gelus
    for stage in ("llm_backbone", "action_head"):
        m = onnx.load(str(tiny_export / f"{stage}.onnx"))
        silus = sum(n.op_type == "Sigmoid" for n in m.graph.node)
        out = silu_through_tanh(m)
        assert silus > 0 and not any(n.op_type == "Sigmoid" for n in out.graph.node)
        assert sum(n.op_type == "Tanh" for n in out.graph.node) == silus


def test_a_float64_sinusoid_moves_to_the_cpu_with_its_cast():
    """LeRobot's timestep embedding in float64, then Cast to float32: the float32 value is the cut,
    so the HTP graph holds no float64, and the CPU sub-model computes exactly LeRobot's numbers."""
    from smolvla_build.passes.sinusoid import sinusoid_cpu_model
    nodes = [oh.make_node("Cast", ["t"], ["t64"], to=T.DOUBLE), oh.make_node("Unsqueeze", ["t64", "ax"], ["t2"]),
             oh.make_node("Mul", ["t2", "w"], ["a"]), oh.make_node("Sin", ["a"], ["s"]), oh.make_node("Cos", ["a"], ["c"]),
             oh.make_node("Concat", ["s", "c"], ["emb64"], axis=1), oh.make_node("Cast", ["emb64"], ["emb"], to=T.FLOAT),
             oh.make_node("MatMul", ["emb", "W"], ["y"])]
    w = 2 * np.pi / np.linspace(4e-3, 4.0, 8)[None]
    m = model(nodes, [vi("t", T.FLOAT, [1])], [vi("y", T.FLOAT, [1, 3])],
              [oh.make_tensor("ax", T.INT64, [1], [1]), onnx.numpy_helper.from_array(w, "w"),
               onnx.numpy_helper.from_array(np.ones((16, 3), np.float32), "W")])
    out = sinusoid_on_cpu(m)
    assert [i.name for i in out.graph.input] == ["emb"]
    assert {n.op_type for n in out.graph.node} == {"MatMul"}
    cpu = sinusoid_cpu_model(m)
    t = np.array([0.7], np.float32)
    emb = run(cpu, {"t": t})[0]
    a = np.float64(t[0]) * w                     # the float32 timestep, exactly, in float64
    want = np.concatenate([np.sin(a), np.cos(a)], axis=1).astype(np.float32)
    assert emb.dtype == np.float32 and np.array_equal(emb, want)
    assert np.allclose(run(m, {"t": t})[0], run(out, {"emb": emb})[0], rtol=1e-6)


def test_rope_tables_of_mask_positions_move_to_the_cpu_once():
    """Positions from a padding mask (ReduceSum + arange) -> angle -> Sin/Cos, repeated per layer
    as the exporter writes it: each distinct table becomes one graph input, computed on the CPU."""
    from onnxruntime import InferenceSession
    from smolvla_build.passes.sinusoid import sinusoid_cpu_model
    nodes = []
    for k in range(2):          # two "layers" with identical position -> angle -> sin/cos cones
        nodes += [oh.make_node("ReduceSum", ["mask", "ax"], [f"n{k}"], keepdims=1),
                  oh.make_node("Add", [f"n{k}", "ar"], [f"pos{k}"]),
                  oh.make_node("Unsqueeze", [f"pos{k}", "ax2"], [f"p{k}"]),
                  oh.make_node("Mul", [f"p{k}", "inv"], [f"a{k}"]),
                  oh.make_node("Sin", [f"a{k}"], [f"s{k}"]), oh.make_node("Cos", [f"a{k}"], [f"c{k}"]),
                  oh.make_node("Mul", ["x" if k == 0 else "y0", f"c{k}"], [f"xc{k}"]),
                  oh.make_node("Mul", ["x" if k == 0 else "y0", f"s{k}"], [f"xs{k}"]),
                  oh.make_node("Add", [f"xc{k}", f"xs{k}"], [f"y{k}"])]
    inv = (1.0 / 10000 ** (np.arange(4) / 4)).astype(np.float32)
    m = model(nodes, [vi("mask", T.FLOAT, [1, 200]), vi("x", T.FLOAT, [1, 6, 4])], [vi("y1", T.FLOAT, [1, 6, 4])],
              [oh.make_tensor("ax", T.INT64, [1], [1]), oh.make_tensor("ax2", T.INT64, [1], [2]),
               onnx.numpy_helper.from_array(np.arange(6, dtype=np.float32)[None], "ar"),
               onnx.numpy_helper.from_array(inv, "inv")])
    cpu = sinusoid_cpu_model(m)
    out = sinusoid_on_cpu(m)
    assert not {n.op_type for n in out.graph.node} & {"Sin", "Cos"}
    assert [i.name for i in out.graph.input] == ["x", "s0", "c0"]           # two copies, one input each
    assert [o.name for o in cpu.graph.output] == ["s0", "c0"]
    rng = np.random.default_rng(0)
    mask = (np.arange(200) < 180).astype(np.float32)[None]
    x = rng.standard_normal((1, 6, 4)).astype(np.float32)
    ref = InferenceSession(m.SerializeToString()).run(None, {"mask": mask, "x": x})[0]
    s0, c0 = InferenceSession(cpu.SerializeToString()).run(None, {"mask": mask})
    got = InferenceSession(out.SerializeToString()).run(None, {"x": x, "s0": s0, "c0": c0})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-6)


# --- the tiny SmolVLA exports end to end ---------------------------------------------------------

@pytest.mark.parametrize("stage", ["vision_encoder", "llm_backbone", "action_head"])
def test_tiny_smolvla_stage_end_to_end(tiny_export, stage):
    raw = onnx.load(str(tiny_export / f"{stage}.onnx"))
    if stage != "vision_encoder":      # the raw vision export has no bool/CumSum pattern at all
        assert check_htp_clean(raw), "the checker must reject the raw export"
    res = preprocess(raw, embedding_cpu=stage == "llm_backbone", sinusoid_cpu=stage != "vision_encoder")
    assert check_htp_clean(res.model) == []
    assert res.report["equivalence"]["passed"]
    assert all(e <= 1e-5 for e in res.report["equivalence"]["relative_error"].values())
    again = preprocess(res.model, embedding_cpu=stage == "llm_backbone", sinusoid_cpu=stage != "vision_encoder")
    assert same_serialization(again.model, res.model), "passes must be idempotent"
    if stage == "llm_backbone":
        assert res.io_changes["inputs"] == {"lang_mask": {"from": "bool", "to": "int32"}}
        assert "/embed_tokens/Gather_output_0" in res.io_changes["added_inputs"]
        assert res.embedding_table.shape == (512, 48)


def test_htp_acceptance_of_the_preprocessed_tiny_models(tiny_export, tmp_path):
    """Every preprocessed tiny model compiles for the HTP (soc 60, v73, fp16) with CPU fallback off."""
    from smolvla_build import model_files
    from smolvla_build.precisions import Precision
    from smolvla_build.toolchains.ort_qnn import build_context
    soc = Soc("Snapdragon X Elite", 60, 73)
    precision = Precision("fp16", {"converter": {"float_bitwidth": 16},
                                   "context": {"fp16_relaxed_precision": True, "vtcm_mb": 8, "optimization_level": 3}})
    for stage in ("vision_encoder", "llm_backbone", "action_head"):
        res = preprocess(onnx.load(str(tiny_export / f"{stage}.onnx")), embedding_cpu=stage == "llm_backbone",
                         sinusoid_cpu=stage != "vision_encoder")
        model_files.save_onnx(res.model, tmp_path / f"{stage}.onnx")
        info = build_context(tmp_path / f"{stage}.onnx", tmp_path / "ctx" / f"{stage}_ctx.onnx", soc, precision)
        assert info["context_bytes"] > 0


def test_external_data_models_round_trip(tmp_path, monkeypatch):
    """Models saved with external data (> 2 GB in real life) go through the passes and back."""
    from smolvla_build import model_files
    table = np.random.default_rng(4).standard_normal((512, 16)).astype(np.float32)
    nodes = [oh.make_node("Gather", ["embed_tokens.weight", "ids"], ["/embed_tokens/Gather_output_0"]),
             oh.make_node("Where", ["pad", "/embed_tokens/Gather_output_0", "zero"], ["y"])]
    m = model(nodes, [vi("ids", T.INT64, [1, 5]), vi("pad", T.BOOL, [1, 5, 1])], [vi("y", T.FLOAT, [1, 5, 16])],
              [onnx.numpy_helper.from_array(table, "embed_tokens.weight"), oh.make_tensor("zero", T.FLOAT, [], [0.0])])
    monkeypatch.setattr(model_files, "TWO_GB", 0)      # force the external-data path on a small model
    model_files.save_onnx(m, tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx.data").stat().st_size >= table.nbytes
    res = preprocess(model_files.load_onnx(tmp_path / "m.onnx"), embedding_cpu=True)
    assert check_htp_clean(res.model) == [] and np.array_equal(res.embedding_table, table)
    model_files.save_onnx(res.model, tmp_path / "out" / "m.onnx")
    assert model_files.load_onnx(tmp_path / "out" / "m.onnx").graph.input[-1].name == "/embed_tokens/Gather_output_0"


def test_cli_on_a_model_that_is_not_smolvla(tmp_path):
    onnx.save(_bool_graph(), str(tmp_path / "other.onnx"))
    res = subprocess.run([sys.executable, "-m", "smolvla_build", "preprocess", str(tmp_path / "other.onnx"),
                          str(tmp_path / "clean.onnx")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert '"clean": true' in res.stdout and (tmp_path / "clean.report.json").is_file()
    chk = subprocess.run([sys.executable, "-m", "smolvla_build", "check", str(tmp_path / "other.onnx")],
                         capture_output=True, text=True)
    assert chk.returncode == 1 and "And" in chk.stdout


def test_shape_inference_never_copies_the_weights():
    """import_graph infers types on a skeleton (large initializers as dims and type only) and leaves
    the model it reads unchanged: a full-size model is not copied once per pass."""
    from smolvla_build.onnx_graph import SKELETON_BYTES, import_graph, skeleton
    w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    shape = np.array([1, 4096], np.int64)
    g = oh.make_graph([oh.make_node("MatMul", ["x", "w"], ["y"]), oh.make_node("Reshape", ["y", "shape"], ["r"]),
                       oh.make_node("Relu", ["r"], ["z"])], "g",
                      [oh.make_tensor_value_info("x", T.FLOAT, [1, 64, 64])], [oh.make_tensor_value_info("z", T.FLOAT, None)],
                      [onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(shape, "shape")])
    model = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)])
    before = model.SerializeToString()
    sk = skeleton(model)
    inits = {t.name: t for t in sk.graph.initializer}
    assert w.nbytes > SKELETON_BYTES and not inits["w"].raw_data and list(inits["w"].dims) == [64, 64]
    assert inits["shape"].raw_data                           # small constants keep their values (data propagation)
    graph = import_graph(model)
    assert model.SerializeToString() == before
    r = graph.tensors()["r"]
    assert r.dtype == np.float32 and list(r.shape) == [1, 4096]   # inferred through the Reshape's constant
    np.testing.assert_array_equal(graph.tensors()["w"].values, w)


@pytest.mark.parametrize("trans_b,alpha,beta,bias", [(1, 1.0, 1.0, "const"), (0, 0.5, 2.0, "const"),
                                                      (1, 1.0, 3.0, "input"), (1, 1.0, 1.0, None)])
def test_gemm_with_a_constant_weight_becomes_matmul(trans_b, alpha, beta, bias):
    """nn.Linear on a 2-D input (Gemm, transB=1): QAIRT would make it FullyConnected whatever
    MATMUL_TO_FC says; as MatMul (+ Add) it is the same function."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 3) if trans_b else (3, 5)).astype(np.float32)
    inits = [oh.make_tensor("w", T.FLOAT, w.shape, w.ravel())]
    inputs = [vi("x", T.FLOAT, [2, 3])]
    if bias == "const":
        inits.append(oh.make_tensor("b", T.FLOAT, [5], rng.standard_normal(5).astype(np.float32)))
    elif bias == "input":
        inputs.append(vi("b", T.FLOAT, [2, 5]))
    node = oh.make_node("Gemm", ["x", "w"] + (["b"] if bias else []), ["y"], transB=trans_b, alpha=alpha, beta=beta)
    m = model([node], inputs, [vi("y", T.FLOAT, [2, 5])], inits)
    out = gemm_to_matmul(m)
    assert [n.op_type for n in out.graph.node] == ["MatMul"] + (["Add"] if bias == "const" else
                                                                ["Mul", "Add"] if bias == "input" else [])
    feeds = {"x": rng.standard_normal((2, 3)).astype(np.float32), "b": rng.standard_normal((2, 5)).astype(np.float32)}
    np.testing.assert_allclose(run(out, feeds)[0], run(m, feeds)[0], rtol=1e-6, atol=1e-6)
    assert same_serialization(gemm_to_matmul(out), out)
    assert gemm_to_matmul(m).graph.node[0].op_type == "MatMul" and m.graph.node[0].op_type == "Gemm"   # pure


def test_two_unnamed_gemms_keep_their_own_weights():
    """Names of the new tensors come from each Gemm's output when the node has no name."""
    rng = np.random.default_rng(1)
    w1, w2 = (rng.standard_normal((4, 4)).astype(np.float32) for _ in range(2))
    nodes = [oh.make_node("Gemm", ["x", "w1"], ["h"], transB=1), oh.make_node("Gemm", ["h", "w2"], ["y"], transB=1)]
    m = model(nodes, [vi("x", T.FLOAT, [2, 4])], [vi("y", T.FLOAT, [2, 4])],
              [oh.make_tensor("w1", T.FLOAT, [4, 4], w1.ravel()), oh.make_tensor("w2", T.FLOAT, [4, 4], w2.ravel())])
    out = gemm_to_matmul(m)
    assert [n.op_type for n in out.graph.node] == ["MatMul", "MatMul"] and len(out.graph.initializer) == 2
    x = rng.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x": x})[0], run(m, {"x": x})[0], rtol=1e-6, atol=1e-6)
