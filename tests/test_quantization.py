"""Integer precisions (W8A16 ...) added by editing a copy of examples/tiny.yaml: calibration on
LIBERO episodes, onnxruntime's QNN quantizer, real HTP contexts, validation, report and episodes."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import yaml

from smolvla_runtime.model import MODELS, PRESETS
from smolvla_build.config import ConfigError, load_pipeline

from conftest import ROOT, doit, write_pipeline

W8A16 = {"quantization": {"weights": 8, "activations": 16, "per_channel": True, "calibration": {"samples": 8}}}


def quantized_pipeline(folder, **changes):
    """examples/tiny.yaml with w8a16 listed first: a miss falls back to the next precision (fp16)."""
    tiny = yaml.safe_load((ROOT / "examples" / "tiny.yaml").read_text())
    precisions = {"w8a16": W8A16, **tiny["precisions"]}
    return write_pipeline(folder, precisions=precisions, calibration={"tasks": [0, 1], "seed": 0}, **changes)


@pytest.fixture(scope="module")
def quant_build(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quant")
    pipe = quantized_pipeline(folder)
    first = doit(pipe)
    return folder, pipe, first


def test_w8a16_builds_calibrates_validates_and_reports(quant_build):
    folder, pipe, first = quant_build
    art = folder / "artifacts"
    assert {"calibrate:libero_spatial-n8"} | {f"quantize:{m}-w8a16" for m in MODELS} <= first.ran
    cal = json.loads((art / "calibration" / "libero_spatial-n8" / "calibration.json").read_text())
    assert cal["samples"] == 8 and [e["task"] for e in cal["episodes"]] == [0, 1]
    assert cal["models"]["action_head"]["calls"] == 80 and cal["models"]["vision_encoder"]["calls"] == 16
    for m in MODELS:
        qdq = onnx.load(str(art / "quantized" / "w8a16" / f"{m}.qdq.onnx"), load_external_data=False)
        ops = {n.op_type for n in qdq.graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        weights = {t.data_type for t in qdq.graph.initializer if len(t.dims) == 2 and min(t.dims) > 1}
        assert onnx.TensorProto.UINT8 in weights                    # 8-bit weights
        v = json.loads((art / "validation" / f"{m}-w8a16.json").read_text())
        assert v["status"] == "pass", v
        assert v["gates"] == {"cosine_min": 0.999, "max_abs": 0.05, "max_relative": None}   # the integer defaults
        assert v["metrics"]["cosine"] > 0.999
        assert (art / "ort-qnn" / "w8a16" / f"{m}_ctx_qnn.bin").stat().st_size > 0
        # onnxruntime's quantizer's expected warnings are kept in the info JSON, not printed
        said = json.loads((art / "quantized" / "w8a16" / f"{m}.qdq.json").read_text())["quantizer_messages"]
        assert isinstance(said, list) and not any(line in first.stderr for line in said)
        assert f"message(s) are in {art / 'quantized' / 'w8a16' / f'{m}.qdq.json'}" in first.stderr
    assert "Please verify the quantized model" not in first.stderr
    report = json.loads((art / "report.json").read_text())
    row = report["stages"]["llm_backbone-w8a16"]
    assert row["calibration_seconds"] == cal["seconds"] and row["status"] == "pass"
    assert report["stages"]["llm_backbone-fp16"]["calibration_seconds"] is None
    md = (art / "report.md").read_text()
    assert "| calibration s |" in md and "| llm_backbone | w8a16 |" in md
    png = art / "report_size_vs_error.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_calibration_set_is_deterministic_for_a_seed(quant_build, tmp_path):
    from smolvla_build.evaluate.calibration import record
    from smolvla_build.runtime.artifacts import load_policy
    folder, pipe, _ = quant_build
    p = load_pipeline(pipe)
    layout = p.layout()
    policy = load_policy(p.policy_source(layout, "reference", n_action_steps=10, seed=0))
    record(policy, "libero_spatial", [0, 1], 8, 0, tmp_path / "libero-config", tmp_path)
    for m in MODELS:
        a = np.load(layout.calibration_set("libero_spatial", 8, m))
        b = np.load(tmp_path / f"{m}.npz")
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{m} {k}")
    # the action head's samples come from several flow-matching steps, not one: its timestep
    # embedding (the CPU-computed input that is not a RoPE table) takes several values
    import json
    added = json.loads(layout.io_sidecar("action_head").read_text())["added_inputs"]
    (embedding,) = [k for k, v in added.items() if "cpu_model" in v and "/Sin" not in k and "/Cos" not in k]
    t = np.load(layout.calibration_set("libero_spatial", 8, "action_head"))[embedding]
    assert len({row.tobytes() for row in t}) > 1


def test_runtime_runs_the_quantized_contexts(quant_build):
    from smolvla_build.runtime.artifacts import stage_runners
    folder, pipe, _ = quant_build
    data = yaml.safe_load(pipe.read_text())
    data["evaluation"].update(precision="w8a16", runtime="ort-qnn", max_steps=2)
    pipe.write_text(yaml.safe_dump(data, sort_keys=False))
    p = load_pipeline(pipe)
    runners = stage_runners(p.policy_source(p.layout()), "ort-qnn")
    for m in MODELS:
        assert "/ort-qnn/w8a16/" in str(runners[m].runner.ctx_onnx)
    res = doit(pipe, "infer:task0")
    assert "infer:task0" in res.ran
    info = json.loads((folder / "artifacts" / "eval" / "libero_spatial" / "task0" / "eval_info.json").read_text())
    assert info["runtime"] == "ort-qnn"
    actions = json.loads((folder / "artifacts" / "eval" / "libero_spatial" / "task0" / "actions.json").read_text())
    assert len(actions["actions"]) == 2 and np.isfinite(actions["actions"]).all()


def test_a_w8a16_bundle_runs_the_integer_contexts(quant_build):
    from smolvla_runtime.bench import synthetic_observation
    from smolvla_runtime.policy import Policy as BundlePolicy

    from smolvla_build.runtime.artifacts import load_policy
    folder, pipe, _ = quant_build
    data = yaml.safe_load(pipe.read_text())
    data["bundle"] = {"precision": "w8a16"}
    pipe.write_text(yaml.safe_dump(data, sort_keys=False))
    assert "bundle" in doit(pipe, "bundle").ran
    bdir = folder / "artifacts" / "bundle" / "w8a16"
    manifest = json.loads((bdir / "manifest.json").read_text())
    assert {m["precision"] for m in manifest["models"].values()} == {"w8a16"}
    assert manifest["precisions"]["w8a16"]["quantization"]["weights"] == 8
    images, state, task = synthetic_observation(0, PRESETS["tiny"])
    noise = np.random.default_rng(1).standard_normal((1, 50, 32)).astype(np.float32)
    got = BundlePolicy.load(bdir, runtime="ort-qnn").predict_chunk(images, state, task, noise=noise)
    p = load_pipeline(pipe)
    want = load_policy(p.policy_source(p.layout(), "ort-qnn", precision="w8a16", n_action_steps=10)).predict_chunk(
        images, state, task, noise=noise)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_per_model_precision_and_fallback_to_the_next_listed(quant_build):
    folder, pipe, _ = quant_build
    data = yaml.safe_load(pipe.read_text())
    data["evaluation"]["precision"] = {"default": "w8a16", "action_head": "fp16"}
    data.setdefault("validation", {})["gates"] = {"w8a16": {"cosine_min": 0.99999999}}   # a miss for every model
    pipe.write_text(yaml.safe_dump(data, sort_keys=False))
    res = doit(pipe)
    assert {f"validate:{m}-w8a16" for m in MODELS} | {"report"} <= res.ran
    assert not {t for t in res.ran if t.startswith("measure")}            # a gate changes verdicts, not measurements
    assert not {t for t in res.ran if t.startswith(("quantize", "calibrate", "context")) or t.endswith(("fp16", "fp32"))}
    report = json.loads((folder / "artifacts" / "report.json").read_text())
    rp = report["runtime_precision"]
    assert rp["vision_encoder"]["precision"] == "fp16" and rp["vision_encoder"]["fell_back_from"] == "w8a16"
    assert "cosine" in rp["vision_encoder"]["why"][0]
    assert rp["action_head"] == {"precision": "fp16", "requested": "fp16"}
    assert report["stages"]["vision_encoder-w8a16"]["status"] == "fallback"


def test_editing_quantization_weights_rebuilds_only_that_precision(quant_build):
    folder, pipe, _ = quant_build
    data = yaml.safe_load(pipe.read_text())
    data["precisions"]["w8a16"]["quantization"]["weights"] = 16          # W16A16
    data["evaluation"]["precision"] = "fp16"
    data["validation"]["gates"] = {}
    pipe.write_text(yaml.safe_dump(data, sort_keys=False))
    res = doit(pipe)
    want = {f"{s}:{m}-w8a16" for s in ("quantize", "context", "measure", "validate") for m in MODELS} | {"report"}
    assert res.ran == want, res.ran ^ want
    qdq = onnx.load(str(folder / "artifacts" / "quantized" / "w8a16" / "llm_backbone.qdq.onnx"), load_external_data=False)
    assert onnx.TensorProto.INT16 in {t.data_type for t in qdq.graph.initializer if len(t.dims) == 2}
    assert doit(pipe).ran == set()


@pytest.mark.parametrize("block, field, expected", [
    ({"quantization": {"weights": 16, "activations": 8}}, "precisions.q.quantization",
     "weights 16 with activations 8 is not a combination the HTP runs; expected one of W8A8, W8A16, W16A16"),
    ({"quantization": {"weights": 4, "activations": 16}}, "precisions.q.quantization.weights", "expected one of [8, 16], got 4"),
    ({"quantization": {"weights": 8, "activations": 16, "per_chanel": True}}, "precisions.q.quantization.per_chanel",
     "unknown key 'per_chanel'"),
    ({"quantization": {"weights": 8, "activations": 16}, "converter": {"float_bitwidth": 16}}, "precisions.q",
     "both given; expected either converter.float_bitwidth"),
    ({"context": {"vtcm_mb": 8}}, "precisions.q", "neither given"),
    ({"quantization": {"weights": 8, "activations": 16, "calibration": {"samples": 0}}},
     "precisions.q.quantization.calibration.samples", "0 is less than the minimum of 1"),
])
def test_bad_quantization_block_is_one_line(tmp_path, block, field, expected):
    tiny = yaml.safe_load((ROOT / "examples" / "tiny.yaml").read_text())
    pipe = write_pipeline(tmp_path, precisions={**tiny["precisions"], "q": block})
    with pytest.raises(ConfigError) as exc:
        load_pipeline(pipe)
    msg = str(exc.value)
    assert "\n" not in msg and str(pipe) in msg and f": {field}: " in msg and expected in msg, msg
    res = doit(pipe, "list", check=False)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and expected in res.stderr


def test_per_model_precision_needs_every_model(tmp_path):
    pipe = quantized_pipeline(tmp_path, evaluation={"precision": {"action_head": "fp16"}})
    with pytest.raises(ConfigError, match=r"evaluation.precision: no precision for vision_encoder, llm_backbone"):
        load_pipeline(pipe)
    pipe = quantized_pipeline(tmp_path, evaluation={"precision": {"default": "w4a16"}})
    with pytest.raises(ConfigError, match=r"evaluation.precision.default: 'w4a16' is not one of the declared"):
        load_pipeline(pipe)


def test_float_only_pipeline_has_no_calibration_tasks():
    from smolvla_build.stages import load_tasks
    _, creators = load_tasks(ROOT / "examples" / "tiny.yaml")
    assert "task_quantize" not in creators
    assert list(creators["task_calibrate"]()) == []


def test_fallback_is_the_next_precision_listed(tmp_path):
    q = {"quantization": {"weights": 8, "activations": 8}}
    fp16, fp32 = {"converter": {"float_bitwidth": 16}}, {"converter": {"float_bitwidth": 32}}
    ladder = load_pipeline(write_pipeline(tmp_path, precisions={"w8a8": q, "w8a16": W8A16, "fp16": fp16, "fp32": fp32}))
    assert [ladder.precisions.fallback(p) for p in ladder.precisions] == ["w8a16", "fp16", "fp32", None]
    last = load_pipeline(write_pipeline(tmp_path, precisions={"fp16": fp16, "fp32": fp32, "w8a16": W8A16}))
    assert last.precisions.fallback("w8a16") == "fp16"          # listed last: the first float precision
