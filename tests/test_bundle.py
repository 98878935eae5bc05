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
    from smolvla_runtime.bench import synthetic_observation

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


def _provider_options(python, bundle_dir) -> dict:
    code = ("import json; from smolvla_runtime.policy import Policy; p = Policy.load('.', runtime='ort-qnn'); "
            "print(json.dumps({m: s.runner.session.get_provider_options()['QNNExecutionProvider'] "
            "for m, s in p.stages.items()}))")
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=bundle_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_htp_session_runs_with_the_pipelines_performance_settings(bundle):
    """evaluation.ort_qnn (burst, 100 us RPC control latency by default; docs/runtimes.md, "HTP
    performance settings") reaches every onnxruntime-qnn session: the bundle's, recorded in its
    manifest, and the project's on the artifacts."""
    folder, pipe, bdir, python = bundle
    manifest = json.loads((bdir / "manifest.json").read_text())
    assert manifest["htp_performance"] == {"mode": "burst", "rpc_control_latency_us": 100, "context_priority": "normal"}
    want = {"htp_performance_mode": "burst", "rpc_control_latency": "100", "qnn_context_priority": "normal"}
    for m, options in _provider_options(python, bdir).items():
        assert want.items() <= options.items(), (m, options)
    from smolvla_build.config import load_pipeline
    from smolvla_build.runtime.artifacts import load_policy
    p = load_pipeline(pipe)
    policy = load_policy(p.policy_source(p.layout(), "ort-qnn"))
    for m, s in policy.stages.items():
        assert want.items() <= s.runner.session.get_provider_options()["QNNExecutionProvider"].items(), m


def _check(python, bundle_dir, *args):
    return subprocess.run([str(python), "-m", "smolvla_runtime", "check", str(bundle_dir), *args], capture_output=True,
                          text=True, cwd=bundle_dir)


def test_check_proves_the_bundle_and_refuses_a_context_built_from_other_weights(bundle, tmp_path):
    """`python -m smolvla_runtime check`: validation's recorded inputs through each stage, judged with
    the build's gates against the fp32 reference; a vision context compiled from other weights, its
    manifest made consistent again, fails it (and only that stage)."""
    import onnx
    from onnx import numpy_helper

    from smolvla_build.precisions import Precision
    from smolvla_build.toolchains.ort_qnn import build_context
    from smolvla_runtime.htp import Soc
    folder, _, bdir, python = bundle
    for runtime in ("reference", "ort-qnn"):
        proc = _check(python, bdir, "--runtime", runtime)
        assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
        assert "every stage passes its gates against the fp32 reference" in proc.stdout
        assert proc.stdout.count("| pass |") == 3 and f"on the {runtime} runtime" in proc.stdout
    result = json.loads(_check(python, bdir, "--runtime", "ort-qnn", "--json").stdout)
    assert [s["model"] for s in result["stages"]] == ["vision_encoder", "llm_backbone", "action_head"]
    assert all(s["vs_emulation"]["max_abs"] < 1e-5 for s in result["stages"])    # the very outputs the build recorded
    # another vision encoder: every weight matrix of the preprocessed graph shuffled
    model = onnx.load(str(folder / "artifacts" / "preprocessed" / "vision_encoder.onnx"))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.ndim == 2 and a.size > 64:
            init.CopyFrom(numpy_helper.from_array(rng.permutation(a.ravel()).reshape(a.shape), init.name))
    onnx.save(model, str(tmp_path / "other.onnx"))
    fp16 = json.loads((bdir / "manifest.json").read_text())["precisions"]["fp16"]
    build_context(tmp_path / "other.onnx", tmp_path / "ctx" / "vision_encoder_ctx.onnx", Soc("", 60, 73),
                  Precision("fp16", fp16))
    copy = tmp_path / "bundle"
    shutil.copytree(bdir, copy)
    for f in ("vision_encoder_ctx.onnx", "vision_encoder_ctx_qnn.bin"):
        shutil.copyfile(tmp_path / "ctx" / f, copy / "models" / f)
    from smolvla_runtime.bundle import sha256
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"] = {rel: sha256(copy / rel) for rel in manifest["files"]}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    proc = _check(python, copy, "--runtime", "ort-qnn")
    assert proc.returncode == 1, proc.stdout + proc.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line for line in proc.stdout.splitlines() if line.startswith("| ")}
    assert "FAIL: cosine" in rows["vision_encoder"] and "| pass |" in rows["llm_backbone"]
    assert "1 stage(s) miss their gates" in proc.stdout
    assert _check(python, copy, "--runtime", "reference").returncode == 0     # the fp32 copies are the build's


def test_bench_times_each_stage_and_the_control_step(bundle):
    folder, _, bdir, python = bundle
    proc = subprocess.run([str(python), "-m", "smolvla_runtime", "bench", str(bdir), "--runtime", "reference",
                           "--runs", "3"], capture_output=True, text=True, cwd=bdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    assert got["runtime"] == "reference" and got["runs"] == 3
    assert {m: s["calls_per_step"] for m, s in got["stages"].items()} == {"vision_encoder": 2, "llm_backbone": 1,
                                                                          "action_head": 10}
    for timing in [*got["stages"].values(), got["control_step"]]:
        assert 0 < timing["median_s"] <= timing["p95_s"] and timing["runs"] == 3
    assert "against the card's 8-10 s per step" in got["summary"] and got["summary"] in proc.stderr


def test_the_bundle_rebuilds_only_when_an_input_changes(bundle):
    folder, pipe, _, _ = bundle
    assert doit(pipe, "bundle").ran == set()
    cfg = yaml.safe_load(pipe.read_text())
    cfg["bundle"] = {"precision": "fp32"}
    pipe.write_text(yaml.safe_dump(cfg))
    assert doit(pipe, "bundle").ran == {"bundle"}
    assert (folder / "artifacts" / "bundle" / "smolvla-fp32.zip").is_file()
    assert doit(pipe, "bundle").ran == set()
    cfg["evaluation"]["ort_qnn"] = {"htp_performance_mode": "high_performance"}
    pipe.write_text(yaml.safe_dump(cfg))
    assert "bundle" in doit(pipe, "bundle").ran
    manifest = json.loads((folder / "artifacts" / "bundle" / "fp32" / "manifest.json").read_text())
    assert manifest["htp_performance"]["mode"] == "high_performance"
