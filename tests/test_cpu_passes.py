"""The reference runtime's CPU copy: each CPU-only fusion on the pattern it rewrites, the check
that guards the copy, and `doit reference` on the tiny build."""

from __future__ import annotations

import collections
import json
import math

import numpy as np
import onnx
import onnx.helper as oh
import pytest
from onnx import TensorProto as T
from onnx import numpy_helper as nh

from smolvla_build.cpu_passes.attention import fuse_attention_to_multihead
from smolvla_build.cpu_passes.cpu_copy import cpu_copy
from smolvla_build.cpu_passes.gelu import fuse_tanh_gelu
from test_passes import model, run, vi

S, N, H = 16, 2, 8          # tokens, heads, head size
D = N * H


def ops(m) -> collections.Counter:
    return collections.Counter(n.op_type for n in m.graph.node)


def attention_model(masked: bool = False, softmax_casts: bool = True):
    """SigLIP's exported self-attention: q/k/v [1,S,D] split into heads, K transposed to
    [0,2,3,1], scores scaled by a Mul, no-op float Casts after the Softmax, heads merged back.
    `masked`: the LLM's form, Softmax(Where(mask, scores, -1e4))."""
    split = nh.from_array(np.array([1, S, N, H], np.int64), "split")
    merge = nh.from_array(np.array([1, S, D], np.int64), "merge")
    scale = nh.from_array(np.array(H ** -0.5, np.float32), "scale")
    nodes = [oh.make_node("Reshape", [x, "split"], [f"{x}4"]) for x in "qkv"]
    nodes += [oh.make_node("Transpose", ["q4"], ["qt"], perm=[0, 2, 1, 3]),
              oh.make_node("Transpose", ["k4"], ["kt"], perm=[0, 2, 3, 1]),
              oh.make_node("Transpose", ["v4"], ["vt"], perm=[0, 2, 1, 3]),
              oh.make_node("MatMul", ["qt", "kt"], ["scores"]),
              oh.make_node("Mul", ["scores", "scale"], ["scaled"])]
    inits, inputs = [split, merge, scale], [vi(x, T.FLOAT, [1, S, D]) for x in "qkv"]
    if masked:
        inits.append(nh.from_array(np.array(-1e4, np.float32), "bound"))
        inputs.append(vi("mask", T.BOOL, [1, 1, S, S]))
        nodes.append(oh.make_node("Where", ["mask", "scaled", "bound"], ["logits"]))
    nodes.append(oh.make_node("Softmax", ["logits" if masked else "scaled"], ["p0"], axis=-1))
    if softmax_casts:
        nodes += [oh.make_node("Cast", ["p0"], ["p1"], to=T.FLOAT), oh.make_node("Cast", ["p1"], ["p"], to=T.FLOAT)]
    nodes += [oh.make_node("MatMul", ["p" if softmax_casts else "p0", "vt"], ["o"]),
              oh.make_node("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3]),
              oh.make_node("Reshape", ["ot", "merge"], ["out"])]
    return model(nodes, inputs, [vi("out", T.FLOAT, [1, S, D])], inits)


def feeds(masked: bool = False, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    f = {x: rng.standard_normal((1, S, D)).astype(np.float32) for x in "qkv"}
    if masked:
        f["mask"] = np.tril(np.ones((S, S), bool))[None, None]
    return f


@pytest.mark.parametrize("softmax_casts", [True, False])
def test_unmasked_attention_becomes_multihead_attention(softmax_casts):
    m = attention_model(softmax_casts=softmax_casts)
    fused = fuse_attention_to_multihead(m)
    assert ops(fused) == {"MultiHeadAttention": 1}, ops(fused)
    node = fused.graph.node[0]
    attrs = {a.name: oh.get_attribute_value(a) for a in node.attribute}
    assert node.domain == "com.microsoft" and attrs["num_heads"] == N and math.isclose(attrs["scale"], H ** -0.5, rel_tol=1e-6)
    assert list(node.input) == ["q", "k", "v"]            # the [1,S,D] tensors the heads were split from
    np.testing.assert_allclose(run(fused, feeds())[0], run(m, feeds())[0], rtol=1e-5, atol=1e-6)
    assert ops(m)["Softmax"] == 1                          # the input model is left as it was


def test_masked_attention_is_left_alone():
    """A bias cannot express Where on a fully masked row; the masked form is not rewritten."""
    m = attention_model(masked=True)
    assert ops(fuse_attention_to_multihead(m)) == ops(m)


def test_heads_not_split_by_a_reshape_get_one():
    """q4 produced by another op than a Reshape (e.g. RoPE's Concat): a Reshape to [B,S,N*H] is added."""
    m = attention_model()
    for n in m.graph.node:                                   # q4 = Identity(Reshape(q)) instead of Reshape(q)
        if list(n.output) == ["q4"]:
            n.output[0] = "q4r"
    m.graph.node.insert(1, oh.make_node("Identity", ["q4r"], ["q4"]))
    onnx.checker.check_model(m)
    fused = fuse_attention_to_multihead(onnx.shape_inference.infer_shapes(m))
    assert ops(fused)["MultiHeadAttention"] == 1 and ops(fused)["Reshape"] == 2   # split q, merge q
    np.testing.assert_allclose(run(fused, feeds())[0], run(m, feeds())[0], rtol=1e-5, atol=1e-6)


def gelu_model():
    """The tanh-approximated GELU after a biased Linear, as our export of SigLIP's MLP writes it:
    h = x W + b; 0.5 * (h * (1 + tanh(sqrt(2/pi) * (h + 0.044715 * (h * (h * h))))))."""
    rng = np.random.default_rng(1)
    c = {"w": rng.standard_normal((D, 4 * D)).astype(np.float32), "b": rng.standard_normal(4 * D).astype(np.float32),
         "k": np.array(0.044715, np.float32), "s": np.array(math.sqrt(2 / math.pi), np.float32),
         "one": np.array(1.0, np.float32), "half": np.array(0.5, np.float32)}
    nodes = [oh.make_node("MatMul", ["x", "w"], ["xw"]), oh.make_node("Add", ["b", "xw"], ["h"]),
             oh.make_node("Mul", ["h", "h"], ["h2"]), oh.make_node("Mul", ["h", "h2"], ["h3"]),
             oh.make_node("Mul", ["k", "h3"], ["kh3"]), oh.make_node("Add", ["h", "kh3"], ["inner"]),
             oh.make_node("Mul", ["s", "inner"], ["arg"]), oh.make_node("Tanh", ["arg"], ["t"]),
             oh.make_node("Add", ["one", "t"], ["t1"]), oh.make_node("Mul", ["h", "t1"], ["ht1"]),
             oh.make_node("Mul", ["half", "ht1"], ["y"])]
    return model(nodes, [vi("x", T.FLOAT, [1, S, D])], [vi("y", T.FLOAT, [1, S, 4 * D])],
                 [nh.from_array(v, k) for k, v in c.items()])


def test_tanh_gelu_becomes_fast_gelu_with_its_bias():
    m = gelu_model()
    fused = fuse_tanh_gelu(m)
    assert ops(fused) == {"MatMul": 1, "FastGelu": 1}, ops(fused)
    assert any(o.domain == "com.microsoft" for o in fused.opset_import)
    x = {"x": np.random.default_rng(2).standard_normal((1, S, D)).astype(np.float32)}
    np.testing.assert_allclose(run(fused, x)[0], run(m, x)[0], rtol=1e-4, atol=1e-5)
    assert ops(m)["Tanh"] == 1


def test_cpu_copy_is_checked_against_the_unfused_model():
    m = attention_model()
    ok = cpu_copy(m, max_relative_error=1e-5)
    assert ok.model is not None and ok.report["uses"] == "fused" and ok.report["fusions"]["MultiHeadAttention"] == 1
    assert ok.report["relative_error"]["out"] <= 1e-5
    assert set(ok.report["seconds_per_call"]) == {"unfused", "fused"}
    # a check it cannot pass: the copy is refused and the report says by how much
    strict = cpu_copy(m, max_relative_error=1e-30)
    assert strict.model is None and strict.report["uses"] == "unfused"
    assert strict.report["reason"].startswith("fused copy's relative error") and "> max_relative_error 1e-30" in strict.report["reason"]
    none = cpu_copy(attention_model(masked=True), max_relative_error=1e-5)
    assert none.model is None and none.report["reason"] == "no fusion pattern matched"


def test_doit_reference_on_the_tiny_build(own_build):
    """The vision encoder's copy is fused and checked; the LLM's and the action head's (masked
    attention, SiLU) have nothing to fuse and are the preprocessed models; the reference runtime's
    actions stay those of the unfused models."""
    from conftest import doit

    from smolvla_build.config import load_pipeline
    pipe_path, res = own_build.pipe, own_build.first          # the shared tiny build, this module's to change
    assert {"reference:vision_encoder", "reference:llm_backbone", "reference:action_head"} <= res.ran
    layout = load_pipeline(pipe_path).layout()
    info = {m: json.loads(layout.reference_info(m).read_text()) for m in ("vision_encoder", "llm_backbone", "action_head")}
    assert info["vision_encoder"]["uses"] == "fused" and info["vision_encoder"]["fusions"] == {"MultiHeadAttention": 2, "FastGelu": 2}
    assert max(info["vision_encoder"]["relative_error"].values()) <= 1e-5
    for m in ("llm_backbone", "action_head"):
        assert info[m]["uses"] == "unfused"
        assert layout.reference_model(m).read_bytes() == layout.preprocessed(m).read_bytes()
    assert "fused 2 MultiHeadAttention, 2 FastGelu" in res.stderr
    # the runtime runs the copy; its actions are the unfused models' within the check's tolerance
    from smolvla_build.runtime.artifacts import load_policy
    from smolvla_runtime.runners import ReferenceRunner
    pipe = load_pipeline(pipe_path)
    policy = load_policy(pipe.policy_source(layout, "reference", precision="fp16", n_action_steps=10))
    assert policy.stages["vision_encoder"].runner.model == layout.reference_model("vision_encoder")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    noise = rng.standard_normal((1, 50, 32)).astype(np.float32)
    got = policy.predict_chunk(images, np.zeros(8, np.float32), "pick up the bowl", noise=noise)
    policy.stages["vision_encoder"].runner = ReferenceRunner(layout.preprocessed("vision_encoder"))
    want = policy.predict_chunk(images, np.zeros(8, np.float32), "pick up the bowl", noise=noise)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert doit(pipe_path, "reference").ran == set()     # up to date

    # reference.cpu_fusions: false -> every copy is the preprocessed model, and only the copies rebuild
    import yaml
    data = yaml.safe_load(pipe_path.read_text())
    data["reference"] = {"cpu_fusions": False}
    pipe_path.write_text(yaml.safe_dump(data))
    res = doit(pipe_path, "reference")
    assert res.ran == {"reference:vision_encoder", "reference:llm_backbone", "reference:action_head"}
    assert json.loads(layout.reference_info("vision_encoder").read_text())["reason"] == "reference.cpu_fusions is false"
    assert layout.reference_model("vision_encoder").read_bytes() == layout.preprocessed("vision_encoder").read_bytes()


def test_cli_cpu_copy(tmp_path):
    """`python -m smolvla_build cpu-copy` mirrors the stage: fused and checked, or nothing written."""
    import subprocess
    import sys
    src, out = tmp_path / "attn.onnx", tmp_path / "attn.cpu.onnx"
    onnx.save(attention_model(), str(src))
    ok = subprocess.run([sys.executable, "-m", "smolvla_build", "cpu-copy", str(src), str(out)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["uses"] == "fused" and ops(onnx.load(str(out)))["MultiHeadAttention"] == 1
    out.unlink()
    bad = subprocess.run([sys.executable, "-m", "smolvla_build", "cpu-copy", str(src), str(out), "--max-relative-error", "1e-30"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and not out.exists()
    assert "error:" in bad.stderr and "fused copy's relative error" in bad.stderr and "not written" in bad.stderr


# --- the fp16 CPU proxy ------------------------------------------------------------------------------

def test_round_to_fp16_rounds_weights_and_every_activation_and_saturates_like_fp16():
    """Pattern: x * w, then a square. Each float value the graph holds is what fp16 would hold:
    the weight 1.0001 becomes 1, the product 300^2 overflows to inf, 1e-9 flushes to 0."""
    from smolvla_build.cpu_passes.fp16_rounding import round_to_fp16
    w = nh.from_array(np.array([[1.0001, 300.0, 1e-9, 2.0]], np.float32), "w")
    m = model([oh.make_node("Mul", ["x", "w"], ["m"]), oh.make_node("Mul", ["m", "m"], ["y"])],
              [vi("x", T.FLOAT, [1, 4])], [vi("y", T.FLOAT, [1, 4])], [w])
    x = np.array([[1.0, 1.0, 1.0, 1.0001]], np.float32)
    exact = run(m, {"x": x})[0]
    got = run(round_to_fp16(m), {"x": x})[0]
    with np.errstate(over="ignore"):                      # fp16's own overflow, the point of the test
        want = ((x.astype(np.float16) * nh.to_array(w).astype(np.float16)) ** 2).astype(np.float32)
    assert np.isinf(got[0, 1]) and got[0, 2] == 0 and np.isfinite(exact).all()
    assert np.array_equal(got, want)
    assert ops(round_to_fp16(m))["Cast"] == 2 * 3          # after the input and each of the two Muls
