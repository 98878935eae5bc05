"""Validation metrics and the fp16 saturation guard (ort-qnn HTP emulation)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx.helper as oh
import pytest
from doit.exceptions import TaskFailed
from onnx import TensorProto as T

from smolvla_build.precisions import Precision
from smolvla_build.toolchains.ort_qnn import build_context
from smolvla_build.validation.measure import MeasureSpec, measure_task
from smolvla_build.validation.verdict import VerdictSpec, decide, validate_task
from smolvla_runtime.compare import compare, cosine, judge, psnr, saturation
from smolvla_runtime.htp import HtpPerformance, Soc

SOC = Soc("Snapdragon X Elite", 60, 73)
FP16 = Precision("fp16", {"converter": {"float_bitwidth": 16},
                          "context": {"fp16_relaxed_precision": True, "vtcm_mb": 8, "optimization_level": 3}})
GATES = {"cosine_min": 0.999, "max_abs": 5e-3, "max_relative": None}


def test_metrics():
    a = np.array([1.0, 2.0, 3.0])
    assert cosine(a, a) == pytest.approx(1.0) and cosine(a, -a) == pytest.approx(-1.0)
    assert psnr(a, a) == float("inf") and psnr(a, a + 0.1) == pytest.approx(10 * np.log10(9 / 0.01))
    s = saturation(np.array([1e5, -700.0, 3.0]), np.array([65504.0, -512.0, np.inf]))
    assert s["clamped_at_65504"] == 1 and s["clamped_at_512"] == 1 and s["inf"] == 1
    assert s["beyond_fp16_in_reference"] == 1
    assert compare(a, a + 0.5)["max_abs"] == pytest.approx(0.5)


def _overflowing_vision_model(path):
    """A stand-in 'vision encoder' with a decomposed norm whose square overflows fp16:
    m = 3000 * mean(pixels); y = m / sqrt(m^2 + 1) * 3  (m^2 ~ 4e5 > 65504)."""
    nodes = [oh.make_node("ReduceMean", ["pixel_values"], ["m0"], axes=[2, 3], keepdims=1),
             oh.make_node("Mul", ["m0", "k"], ["m"]), oh.make_node("Pow", ["m", "two"], ["sq"]),
             oh.make_node("Add", ["sq", "one"], ["sq1"]), oh.make_node("Sqrt", ["sq1"], ["rms"]),
             oh.make_node("Div", ["m", "rms"], ["n"]), oh.make_node("Mul", ["n", "three"], ["image_embeddings"])]
    g = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("pixel_values", T.FLOAT, [1, 3, 512, 512])],
                      [oh.make_tensor_value_info("image_embeddings", T.FLOAT, [1, 3, 1, 1])],
                      [oh.make_tensor(n, T.FLOAT, [], [v]) for n, v in (("k", 3000.0), ("two", 2.0), ("one", 1.0),
                                                                         ("three", 3.0))])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))


@pytest.fixture(scope="module")
def overflowing(tmp_path_factory):
    d = tmp_path_factory.mktemp("guard")
    _overflowing_vision_model(d / "vision_encoder.onnx")
    stage = {"name": "vision_encoder", "inputs": {"pixel_values": {"shape": [1, 3, 512, 512], "dtype": "float32"}},
             "outputs": {"image_embeddings": {"shape": [1, 3, 1, 1], "dtype": "float32"}}}
    (d / "vision_encoder.io.json").write_text(json.dumps({"stage": stage, "inputs": {}, "outputs": {},
                                                          "removed_inputs": [], "added_inputs": {}}))
    build_context(d / "vision_encoder.onnx", d / "ctx" / "vision_encoder_ctx.onnx", SOC, FP16)
    # measured once, in HTP emulation; each verdict below judges the same measurement
    assert measure_task(MeasureSpec(model="vision_encoder", precision=FP16, soc=SOC, performance=HtpPerformance(),
                                    preset="tiny", seed=0,
                                    reference=d / "vision_encoder.onnx", sidecar=d / "vision_encoder.io.json",
                                    context=d / "ctx" / "vision_encoder_ctx.onnx", qairt_io=None, embed_table=None,
                                    llm=None, vision=None, out=d / "measured.json", arrays=d / "measured.npz")) is True
    return d


def _validate(d, policy, fallback_to="fp32", on_fallback_miss="fail", fallback_target=False):
    out = d / f"report-{policy}-{on_fallback_miss}-{fallback_target}.json"
    result = validate_task(VerdictSpec(model="vision_encoder", precision="fp16", measured=d / "measured.json",
                                       gates=GATES, on_saturation=policy, on_fallback_miss=on_fallback_miss,
                                       fallback_to=fallback_to, fallback_target=fallback_target, out=out))
    return result, json.loads(out.read_text())


def test_guard_trips_and_falls_back(overflowing):
    result, report = _validate(overflowing, "fallback-fp32")
    assert result is True
    assert report["status"] == "fallback" and report["fallback_to"] == "fp32"
    flagged = {f["tensor"] for f in report["intermediates_beyond_fp16"]}
    assert "sq" in flagged and "sq1" in flagged
    assert any("beyond the fp16 range" in r for r in report["reasons"])


def test_guard_fail_policy_fails_the_task(overflowing):
    result, report = _validate(overflowing, "fail")
    assert isinstance(result, TaskFailed) and report["status"] == "fail"


def test_a_miss_of_the_precision_fallen_back_to_fails_unless_told_to_warn(overflowing):
    """Under fallback-fp32 the fp32 build has nothing left to fall back to: a miss fails the task,
    or (on_fallback_miss: warn) is used with status warn and its reasons in the report."""
    result, report = _validate(overflowing, "fallback-fp32", fallback_to=None, fallback_target=True)
    assert isinstance(result, TaskFailed) and report["status"] == "fail"
    result, report = _validate(overflowing, "fallback-fp32", fallback_to=None, on_fallback_miss="warn",
                               fallback_target=True)
    assert result is True and report["status"] == "warn" and report["reasons"]


def test_the_relative_gate_means_the_same_at_every_scale():
    """max abs / max |reference|: the same error relative to the output's size passes or misses the
    same way whatever the size; the absolute gate (the action chunk's) does not."""
    gates = {"cosine_min": 0.99, "max_abs": 5e-3, "max_relative": 2e-3}
    for scale in (1.0, 1000.0):
        ref = np.linspace(-4, 4, 50) * scale
        ok, off = compare(ref, ref + 1e-3 * 4 * scale), compare(ref, ref + 3e-3 * 4 * scale)
        assert not any("max |reference|" in r for r in judge(ok, [], "vision_encoder", gates))
        assert any("max |reference| 0.003 > 0.002" in r for r in judge(off, [], "vision_encoder", gates))
    assert judge(compare(ref, ref + 1e-3 * 4 * scale), [], "vision_encoder", dict(gates, max_relative=None)) == []


def test_the_decision_follows_the_policy():
    """The status rules alone (validation/verdict.py: decide), for every policy."""
    assert decide([], "fallback-fp32", "fail", "fp32", False) == "pass"
    assert decide(["x"], "fallback-fp32", "fail", "fp32", False) == "fallback"
    assert decide(["x"], "fallback-fp32", "fail", None, True) == "fail"
    assert decide(["x"], "fallback-fp32", "warn", None, True) == "warn"
    assert decide(["x"], "fallback-fp32", "warn", None, False) == "fail"   # not a fallback target
    assert decide(["x"], "warn", "fail", "fp32", False) == "warn"
    assert decide(["x"], "fail", "fail", "fp32", False) == "fail"


def test_every_action_receives_exactly_the_spec_its_key_holds_and_other_precisions_change_no_measurement(tmp_path):
    """Every task's action receives one frozen spec, and its up-to-date key holds that spec's
    serialization: drift between the two is impossible by construction. Removing the precision that
    falls back to fp32 changes fp32's verdict (fallback_target), never its measurement."""
    import dataclasses

    import yaml
    from conftest import write_pipeline

    from smolvla_build.stages import load_tasks

    def tasks(pipe):
        _, creators = load_tasks(pipe)
        return {f"{t['basename']}:{t.get('name', '')}".rstrip(":"): t for c in creators.values() for t in c()}
    both = tasks(write_pipeline(tmp_path, "both.yaml"))
    for name, task in both.items():
        (fn, (spec,)), = task["actions"]
        assert dataclasses.is_dataclass(spec) and spec.__dataclass_params__.frozen, name
        if task["uptodate"] != [False]:                    # eval and divergence check per episode
            assert task["uptodate"][0].config["spec"] == json.loads(json.dumps(dataclasses.asdict(spec), default=str))
    tiny = write_pipeline(tmp_path, "fp32.yaml")
    cfg = yaml.safe_load(tiny.read_text())
    del cfg["precisions"]["fp16"]
    cfg["evaluation"]["precision"] = "fp32"
    tiny.write_text(yaml.safe_dump(cfg))
    alone = tasks(tiny)
    a, b = (t["validate:action_head-fp32"]["actions"][0][1][0] for t in (both, alone))
    assert a.fallback_target and not b.fallback_target
    for m in ("vision_encoder", "llm_backbone", "action_head"):
        assert (both[f"measure:{m}-fp32"]["uptodate"][0]._calc_digest()
                == alone[f"measure:{m}-fp32"]["uptodate"][0]._calc_digest())


def test_guard_warn_policy_passes_with_a_warning(overflowing):
    result, report = _validate(overflowing, "warn")
    assert result is True and report["status"] == "warn" and report["reasons"]


def test_tiny_build_validates_and_reports(shared_build):
    """The tiny preset's whole chain through doit; every stage passes the gates."""
    res, root = shared_build.first, shared_build.clean_artifacts
    # progress inside the long stages (issue: rough edges): per model, per pass, per emulated call
    assert "export llm_backbone: " in res.stderr and "(2/3)" in res.stderr
    assert "preprocess llm_backbone: pass 1/11" in res.stderr
    assert "measure action_head-fp16: HTP-emulated call 10/10" in res.stderr
    report = json.loads((root / "report.json").read_text())
    for name, stage in report["stages"].items():
        assert stage["status"] == "pass", (name, stage["reasons"])
        assert stage["metrics"]["cosine"] >= 0.999
    for p in ("fp16", "fp32"):
        v = json.loads((root / "validation" / f"action_head-{p}.json").read_text())
        assert len(v["per_step"]) == 10 and v["metrics"]["max_abs"] < 5e-3
    md = (root / "report.md").read_text()
    assert "RANDOM WEIGHTS" in md
    # the tiny preset's fp32 keeps fp16_relaxed_precision: the report says it computes in fp16, as fp16 does
    assert report["computes_in"] == {"fp16": "fp16", "fp32": "fp16 (fp32 graph, relaxed precision)"}
    assert "**fp32**: fp16 (fp32 graph, relaxed precision)" in md


def test_what_each_precision_computes_in():
    from smolvla_build.precisions import Precision
    ctx = {"fp16_relaxed_precision": False, "vtcm_mb": 8, "optimization_level": 3}
    assert Precision("fp32", {"converter": {"float_bitwidth": 32}, "context": ctx}).computes_in == "fp32"
    relaxed = Precision("fp32", {"converter": {"float_bitwidth": 32}, "context": dict(ctx, fp16_relaxed_precision=True)})
    assert relaxed.computes_in == "fp16 (fp32 graph, relaxed precision)" and relaxed.cpu_proxy == "fp16-rounded"
    w8a16 = Precision("w8a16", {"quantization": {"weights": 8, "activations": 16}, "context": ctx})
    assert w8a16.computes_in == "int8 weights, int16 activations"


def test_the_census_finds_the_rmsnorm_square_beyond_fp16_and_the_rewrite_removes_it(tiny_export, tmp_path):
    """The tiny LLM as exported, on inputs scaled so that its RMSNorm squares pass 65504 (image
    embeddings x 400): the census over the samples flags those squares; with rmsnorm_over_max
    applied (the graph inputs are the same) none of them is left beyond fp16."""
    from smolvla_build import model_files
    from smolvla_build.passes.rmsnorm import rmsnorm_over_max
    from smolvla_build.validation.measure import census
    raw = model_files.load_onnx(tiny_export / "llm_backbone.onnx")
    rng = np.random.default_rng(0)
    n = 3
    samples = {"img_emb0": 400 * rng.normal(size=(n, 1, 64, 48)).astype(np.float32),
               "img_emb1": 400 * rng.normal(size=(n, 1, 64, 48)).astype(np.float32),
               "lang_tokens": rng.integers(0, 512, (n, 1, 48)).astype(np.int64),
               "lang_mask": np.ones((n, 1, 48), bool), "state": rng.normal(size=(n, 1, 32)).astype(np.float32)}
    model_files.save_onnx(raw, tmp_path / "raw.onnx")
    model_files.save_onnx(rmsnorm_over_max(raw), tmp_path / "rewritten.onnx")

    def squares(result):
        return [t for t in result["beyond_fp16"] if "/Pow" in t["tensor"] or "ReduceMean" in t["tensor"]]
    before, after = census(tmp_path / "raw.onnx", samples), census(tmp_path / "rewritten.onnx", samples)
    assert before["samples"] == after["samples"] == n
    assert squares(before) and min(t["max_abs"] for t in squares(before)) > 65504
    assert squares(after) == []
    assert census(tmp_path / "raw.onnx", {k: v / 400 if k.startswith("img") else v for k, v in samples.items()},
                  limit=1)["samples"] == 1
