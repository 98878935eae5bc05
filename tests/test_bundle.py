"""`doit bundle`: the device bundle of the tiny preset, unzipped into a fresh virtual environment that
has only the runtime's dependencies (requirements.txt), gives the project Policy's actions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import yaml

from smolvla_runtime.model import declaration
from smolvla_runtime.model import PRESETS

from conftest import doit


@pytest.fixture(scope="module")
def bundle(own_build):
    folder, pipe = own_build.folder, own_build.pipe
    res = doit(pipe, "bundle")
    assert "bundle" in res.ran and "python -m smolvla_runtime" in res.stderr
    unpacked = folder / "laptop"
    with zipfile.ZipFile(folder / "artifacts" / "bundle" / "smolvla-fp16.zip") as z:
        z.extractall(unpacked)
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)       # nothing from this environment
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r",
                    str(unpacked / "fp16" / "requirements.txt")], check=True, capture_output=True,
                   env=dict(os.environ, PIP_ROOT_USER_ACTION="ignore"))
    return folder, pipe, unpacked / "fp16", venv / "bin" / "python"


def run_bundle(python, bundle_dir, *args, check=True):
    proc = subprocess.run([str(python), "-m", "smolvla_runtime", str(bundle_dir), *args], capture_output=True,
                          text=True, cwd=bundle_dir)     # the bundle's own copy of the runtime
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-3000:])
    return proc


def project_actions(pipe_path, runtime: str, seed: int = 0) -> np.ndarray:
    """The project's Policy on the synthetic observation and noise of `python -m smolvla_runtime`."""
    from smolvla_runtime.__main__ import synthetic_observation

    from smolvla_build.config import load_pipeline
    from smolvla_build.runtime.artifacts import load_policy
    pipe = load_pipeline(pipe_path)
    policy = load_policy(pipe.policy_source(pipe.layout(), runtime, precision="fp16", n_action_steps=10, seed=seed))
    images, state, task = synthetic_observation(seed, policy.preset)
    noise = np.random.default_rng(seed + 1).standard_normal(policy.chunk_shape).astype(np.float32)
    return policy.predict_chunk(images, state, task, noise=noise)


def test_the_bundle_holds_what_the_manifest_says(bundle):
    folder, _, bdir, _ = bundle
    manifest = json.loads((bdir / "manifest.json").read_text())
    assert manifest["soc"]["soc_model"] == 60 and manifest["toolchain"] == "ort-qnn"
    assert set(manifest["models"]) == {"vision_encoder", "llm_backbone", "action_head"}
    assert all(v["stage"] == declaration(PRESETS["tiny"], m) for m, v in manifest["models"].items())
    assert all(v["validation"]["status"] == "pass" for v in manifest["models"].values())
    assert {"smolvla_runtime/policy.py", "requirements.txt", "README.md", "tokenizer.json",
            "models/llm_backbone_ctx_qnn.bin", "models/embed_tokens.npy"} <= set(manifest["files"])
    reqs = (bdir / "requirements.txt").read_text()
    assert all(f"{p}==" in reqs for p in ("numpy", "onnxruntime", "onnxruntime-qnn", "tokenizers"))
    # the vision position-id convention the export used, and why, as the report says it (issue #25)
    said = {"convention": "transformers-4", "why": "the default (random weights): LeRobot 0.4.4's, the PyPI release "
                                                   "(transformers 4)"}
    assert manifest["vision_position_ids"] == said
    assert json.loads((folder / "artifacts" / "report.json").read_text())["meta"]["vision_position_ids"] == said
    assert f"vision position ids: transformers-4 ({said['why']})" in (folder / "artifacts" / "report.md").read_text()


def test_a_fresh_environment_with_only_the_runtime_reproduces_the_policy(bundle):
    folder, pipe, bdir, python = bundle
    absent = subprocess.run([str(python), "-c", "import importlib.util as u; print([m for m in ('torch', 'onnx', "
                             "'doit', 'transformers', 'libero', 'smolvla_build') if u.find_spec(m)])"],
                            capture_output=True, text=True, check=True, cwd=bdir).stdout.strip()
    assert absent == "[]"
    for runtime in ("reference", "ort-qnn"):          # ort-qnn: the HTP contexts in emulation
        got = json.loads(run_bundle(python, bdir, "--runtime", runtime).stdout)
        assert got["runtime"] == runtime
        want = project_actions(pipe, runtime)
        assert np.allclose(np.asarray(got["actions"]), want, atol=1e-5), (runtime, np.abs(np.asarray(got["actions"]) - want).max())


def test_a_corrupted_file_or_another_soc_is_refused(bundle, tmp_path):
    folder, _, bdir, python = bundle
    copy = tmp_path / "fp16"
    shutil.copytree(bdir, copy)
    proc = run_bundle(python, copy, "--soc-model", "57", check=False)
    assert proc.returncode == 2 and "compiled for soc_model 60" in proc.stderr and "not 57" in proc.stderr
    ctx = copy / "models" / "action_head_ctx_qnn.bin"
    data = bytearray(ctx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ctx.write_bytes(bytes(data))
    proc = run_bundle(python, copy, "--runtime", "reference", check=False)
    assert proc.returncode == 2 and "action_head_ctx_qnn.bin: corrupted or changed since `doit bundle`" in proc.stderr


def test_the_bundle_rebuilds_only_when_an_input_changes(bundle):
    folder, pipe, _, _ = bundle
    assert doit(pipe, "bundle").ran == set()
    cfg = yaml.safe_load(pipe.read_text())
    cfg["bundle"] = {"precision": "fp32"}
    pipe.write_text(yaml.safe_dump(cfg))
    assert doit(pipe, "bundle").ran == {"bundle"}
    assert (folder / "artifacts" / "bundle" / "smolvla-fp32.zip").is_file()
    assert doit(pipe, "bundle").ran == set()
