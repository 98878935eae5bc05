"""pipeline.yaml validation: one line naming the file, the field and what was expected."""

from __future__ import annotations

import pytest
import yaml

from smolvla_runtime.htp import Soc
from smolvla_build.config import ConfigError, load_pipeline

from conftest import ROOT, doit, write_pipeline


def test_shipped_pipelines_load():
    default = load_pipeline(ROOT / "pipeline.yaml")
    assert default.source["preset"] == "smolvla-libero"
    assert list(default.precisions) == ["fp16"]           # fp32 is listed only when a user wants the fallback
    assert default.soc == Soc("Snapdragon X Elite", soc_model=60, htp_arch=73)
    assert default.toolchain["sdk_version"] == "2.43.0.260128"
    assert default.section("validation")["on_saturation"] == "fallback-fp32"
    tiny = load_pipeline(ROOT / "examples" / "tiny.yaml")
    assert tiny.source["preset"] == "tiny"
    assert tiny.artifacts != default.artifacts


def _error(tmp_path, text: str) -> str:
    p = tmp_path / "broken.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_pipeline(p)
    msg = str(exc.value)
    assert "\n" not in msg and str(p) in msg
    return msg


BASE = yaml.safe_load((ROOT / "examples" / "tiny.yaml").read_text())


@pytest.mark.parametrize("mutate, field, expected", [
    (lambda d: d.__setitem__("precisons", d.pop("precisions")), "precisons", "unknown key 'precisons'"),
    (lambda d: d["precisions"]["fp16"]["context"].__setitem__("vtcm_mb", "eight"),
     "precisions.fp16.context.vtcm_mb", "expected integer, got str 'eight'"),
    (lambda d: d["toolchain"].__setitem__("kind", "tensorrt"), "toolchain.kind",
     "expected one of ['auto', 'qairt', 'ort-qnn'], got 'tensorrt'"),
    (lambda d: d["precisions"].__setitem__("fp-16", d["precisions"]["fp16"]), "precisions",
     "'fp-16' is not a valid identifier"),
    (lambda d: d["precisions"]["fp32"]["converter"].__setitem__("float_bitwidth", 64),
     "precisions.fp32.converter.float_bitwidth", "expected one of [16, 32], got 64"),
    (lambda d: d["source"].update(weights="checkpoint", path="does/not/exist"), "source.path", "does not exist"),
    (lambda d: d["source"].update(weights="onnx"), "source.path", "required when source.weights is 'onnx'"),
    (lambda d: d["evaluation"].__setitem__("precision", "int8"), "evaluation.precision", "not one of the declared"),
    (lambda d: d["evaluation"].__setitem__("divergence", ["fp16", "w8a16"]), "evaluation.divergence",
     "'w8a16' is not one of the declared precisions"),
])
def test_broken_pipeline_is_one_line(tmp_path, mutate, field, expected):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    mutate(data)
    msg = _error(tmp_path, yaml.safe_dump(data))
    assert f": {field}" in msg and expected in msg, msg


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_pipeline(tmp_path / "nope.yaml")
    assert "not valid YAML" in _error(tmp_path, "source: [unclosed\n")


def test_doit_prints_one_line_and_no_traceback(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["precisions"]["fp16"]["converter"]["float_bitwidth"] = "sixteen"
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data))
    res = doit(p, "list", check=False)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr + res.stdout
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {p}: precisions.fp16.converter.float_bitwidth: expected one of [16, 32], got 'sixteen'"]


def test_qairt_without_sdk_fails_at_once(tmp_path, monkeypatch):
    p = write_pipeline(tmp_path, toolchain={"kind": "qairt"})
    env = dict(__import__("os").environ)
    env.pop("QNN_SDK_ROOT", None)
    env.pop("QAIRT_SDK_ROOT", None)
    res = doit(p, "list", check=False, env=env)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "set QAIRT_SDK_ROOT (or QNN_SDK_ROOT" in lines[0] and "install" in lines[0]


def test_the_default_pipeline_builds_the_cards_converter():
    """The card's qnn-onnx-converter is patched (matmul_to_fc disabled): every precision of the
    default pipeline gets the patch unless it says otherwise."""
    from smolvla_build.config import load_pipeline
    pipe = load_pipeline(ROOT / "pipeline.yaml")
    assert all(p.settings["converter"]["disable_matmul_to_fc"] for p in pipe.precisions.values())
    assert pipe.section("evaluation")["qnn_net_run"]["perf_profile"] == "burst"
