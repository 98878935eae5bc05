"""The built policy equals LeRobot's own SmolVLA: a policy made and saved by LeRobot's code (PyPI
`lerobot`, in its own environment: scripts/lerobot_env.sh) at the tiny preset's dimensions, built
with doit from the checkpoint folder exactly as saved, compared stage by stage and end to end on the
same observation and the same noise (tests/fixtures/lerobot_parity.py; the full preset: python -m bench)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lerobot_parity import compare_built_policy, run_lerobot

from smolvla_runtime.model import PRESETS

from conftest import doit, write_pipeline

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def lerobot(tmp_path_factory):
    """LeRobot's policy saved by LeRobot, and what LeRobot computes for one observation."""
    out = tmp_path_factory.mktemp("lerobot")
    try:
        return (out, *run_lerobot(out, TINY))
    except RuntimeError as e:
        pytest.fail(str(e))


def test_lerobot_saves_what_the_build_reads(lerobot):
    out, _, saved, _ = lerobot
    files = saved["files"]
    assert {"config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json"} <= set(files)
    assert any(f.endswith("normalizer_processor.safetensors") for f in files)
    # LeRobot 0.4.4 saves no tokenizer file: the preprocessor names where its tokenizer came from
    from smolvla_build.export.tokenizer import find_tokenizer, preprocessor_tokenizer_name
    name = preprocessor_tokenizer_name(Path(saved["checkpoint"]))
    assert name == str(out / "vlm") and "tokenizer.json" not in files
    assert find_tokenizer(Path(saved["checkpoint"])).origin == f"policy_preprocessor.json tokenizer_name: {name}"


def test_the_built_policy_equals_lerobots(lerobot, tmp_path):
    from smolvla_build.config import load_pipeline
    from smolvla_build.runtime.artifacts import load_policy
    out, spec, saved, want = lerobot
    pipe_path = write_pipeline(tmp_path, source={"preset": "tiny", "weights": "checkpoint", "path": saved["checkpoint"]})
    res = doit(pipe_path, "reference")                        # export, preprocess, CPU copy from the folder as saved
    assert "export" in res.ran and "tokenizer from policy_preprocessor.json tokenizer_name" in res.stderr
    pipe = load_pipeline(pipe_path)
    policy = load_policy(pipe.policy_source(pipe.layout("ort-qnn"), "reference", precision="fp16", n_action_steps=10))
    got = compare_built_policy(policy, spec, want)
    assert got["tokens_equal"]                                 # LeRobot's tokenizer processor step's ids and mask
    assert got["pixels_max_abs"] <= 1e-5                       # LIBERO flip, resize with pad, [-1, 1]
    assert got["vision_cosine"] > 0.9999 and got["vision_max_abs"] <= 1e-4, got
    assert got["actions_shape"] == got["reference_shape"] == [TINY.chunk_size, TINY.action_dim]
    assert got["actions_cosine"] > 0.9999 and got["actions_max_abs"] <= 1e-4, got
