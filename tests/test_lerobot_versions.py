"""The vision position-id convention of each LeRobot (docs/lerobot-versions.md): transformers-4
(LeRobot 0.4.4 on PyPI; its own SmolVLA is compared end to end in tests/test_lerobot_parity.py) and
transformers-5 (LeRobot's main branch), compared here with transformers 5's own vision tower on the
same weights; how the build chooses between them, and where it says which it used."""

from __future__ import annotations

import json
import logging

import numpy as np
import onnxruntime as ort
import pytest
import torch

from smolvla_build.export import conventions
from smolvla_build.export.onnx_export import export_all
from smolvla_runtime.model import PRESETS

from test_export import _random_tokenizer, write_checkpoint

TINY = PRESETS["tiny"]


def within(got, want) -> float:
    """max abs / max(1, max |ref|): the issue's tolerance is 1e-4 of it."""
    return float(np.abs(got - want).max() / max(1.0, np.abs(want).max()))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("versions")
    model = write_checkpoint(root / "ckpt", seed=5)
    (root / "ckpt" / "tokenizer.json").write_text(_random_tokenizer(root).read_text())
    return root, model


@pytest.fixture(scope="module")
def exports(checkpoint):
    """The checkpoint's vision encoder exported with each convention."""
    root, _ = checkpoint
    out = {}
    for convention in conventions.VISION_POSITION_IDS:
        info = export_all(root / convention, "tiny", "checkpoint", path=str(root / "ckpt"), stages=["vision_encoder"],
                          vision_position_ids=convention)
        out[convention] = (root / convention / "vision_encoder.onnx", info)
    return out


def _encode(path, pixels):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"pixel_values": pixels})[0]


def test_transformers_5_convention_equals_transformers_5s_own_vision_tower(checkpoint, exports):
    import transformers
    assert int(transformers.__version__.split(".")[0]) == 5        # the export environment's transformers
    _, model = checkpoint
    inner = model.model.vlm_with_expert.vlm.model
    pixels = torch.rand(1, 3, TINY.image_size, TINY.image_size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        # transformers' SmolVLMVisionTransformer computes its own position ids (all patches valid)
        want = inner.connector(inner.vision_model(pixels).last_hidden_state).numpy()
    got5 = _encode(exports["transformers-5"][0], pixels.numpy())
    assert within(got5, want) <= 1e-4
    got4 = _encode(exports["transformers-4"][0], pixels.numpy())
    assert within(got4, want) > 1e-3          # the other convention is a different model: it must be chosen


def test_each_convention_gives_the_ids_its_transformers_gives():
    from smolvla_build.export.model import vision_position_ids
    n = TINY.image_size // 16
    rows4 = vision_position_ids(n, "transformers-4").reshape(n, n)[:, 0] // n
    rows5 = vision_position_ids(n, "transformers-5").reshape(n, n)[:, 0] // n
    assert rows4.tolist() == [0] + list(range(n - 1))         # 0, 0, 1, ..., n-2 (issue #25: 0,0,1,...,30)
    assert rows5.tolist() == list(range(n))


def test_the_convention_is_recorded_with_its_reason(exports):
    for convention, (_, info) in exports.items():
        assert info["vision_position_ids"] == {"convention": convention,
                                               "why": "source.vision_position_ids in the pipeline file"}


def test_without_a_setting_the_checkpoint_files_decide_else_the_default_is_said(checkpoint, tmp_path, caplog):
    root, _ = checkpoint
    ckpt = root / "ckpt"
    convention, why = conventions.vision_position_ids(None, ckpt, None)
    assert convention == "transformers-4" and why.startswith("the default:") and "transformers-5" in why
    # a VLM folder saved by transformers records its version (save_pretrained's config.json)
    vlm = tmp_path / "vlm"
    vlm.mkdir()
    (vlm / "config.json").write_text(json.dumps({"model_type": "smolvlm", "transformers_version": "5.5.0"}))
    assert conventions.vision_position_ids(None, ckpt, vlm) == (
        "transformers-5", f"the VLM folder's config.json ({vlm / 'config.json'}) records transformers 5.5.0")
    assert conventions.vision_position_ids("transformers-4", ckpt, vlm)[0] == "transformers-4"
    # LeRobot's main branch saves the tokenizer into the checkpoint and says so in its preprocessor
    main = tmp_path / "main-ckpt"
    main.mkdir()
    (main / "policy_preprocessor.json").write_text(json.dumps({"name": "policy_preprocessor", "steps": [
        {"registry_name": "tokenizer_processor", "config": {"tokenizer_name": "tokenizer"},
         "artifacts": {"tokenizer_name": "tokenizer"}}]}))
    assert conventions.vision_position_ids(None, main, None)[0] == "transformers-5"
    # the export says it in one log line, a warning when it is the default
    with caplog.at_level(logging.INFO, logger="smolvla_build.export"):
        info = export_all(tmp_path / "out", "tiny", "checkpoint", path=str(ckpt), stages=["vision_encoder"])
    said = [r for r in caplog.records if "vision position ids" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    assert said[0].getMessage() == f"export: vision position ids transformers-4, {why}"
    assert info["vision_position_ids"] == {"convention": "transformers-4", "why": why}


def test_the_setting_is_checked(tmp_path):
    from conftest import write_pipeline

    from smolvla_build.config import ConfigError, load_pipeline
    pipe = write_pipeline(tmp_path, source={"preset": "tiny", "weights": "random", "vision_position_ids": "transformers-6"})
    with pytest.raises(ConfigError) as err:
        load_pipeline(pipe)
    assert "source.vision_position_ids" in str(err.value) and "transformers-4" in str(err.value)
