"""Shared helpers: tiny pipelines in a temp folder and doit driven through its CLI."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))          # make_fake_sdk
TINY = yaml.safe_load((ROOT / "examples" / "tiny.yaml").read_text())


def write_pipeline(folder: Path, name: str = "pipeline.yaml", **changes) -> Path:
    data = copy.deepcopy(TINY)
    data["artifacts"] = "artifacts"
    for key, value in changes.items():
        data[key] = value
    path = Path(folder) / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class DoitResult:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.proc = proc
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.ran = {m.group(1) for m in re.finditer(r"^\.  (\S+)", proc.stdout, re.M)}
        self.uptodate = {m.group(1) for m in re.finditer(r"^-- (\S+)", proc.stdout, re.M)}


def doit(pipeline: Path, *args: str, check: bool = True, env=None) -> DoitResult:
    cmd = [sys.executable, "-m", "doit", "-f", str(ROOT / "dodo.py"), "-d", str(ROOT), *args, f"pipeline={pipeline}"]
    # unbuffered: with `-n 2` the worker processes share the pipe, and block-buffered output flushed
    # mid-line would break the `.  <task>` lines this helper reads
    env = dict(env or os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    res = DoitResult(proc)
    if check and proc.returncode != 0:
        raise AssertionError(f"doit {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return res


def chain(model: str, precisions=("fp16", "fp32")) -> set[str]:
    """The tasks downstream of one model's source ONNX."""
    out = {f"preprocess:{model}", f"reference:{model}"}
    for p in precisions:
        out |= {f"context:{model}-{p}", f"validate:{model}-{p}"}
    if model == "llm_backbone":   # the action head's validation uses the LLM's KV cache
        out |= {f"validate:action_head-{p}" for p in precisions}
    if model == "vision_encoder":  # the LLM's (and so the head's) validation inputs: its image embeddings
        out |= {f"validate:{m}-{p}" for m in ("llm_backbone", "action_head") for p in precisions}
    return out | {"report"}


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> Path:
    """The tiny preset's three raw ONNX models and side files (exported once per session)."""
    from smolvla_build.export.onnx_export import export_all
    out = tmp_path_factory.mktemp("tiny_export")
    export_all(out, "tiny", "random", 0)
    return out


@pytest.fixture(scope="session")
def fake_sdk(tmp_path_factory) -> Path:
    """The test-double QAIRT SDK (tests/fixtures/make_fake_sdk.py), its converter modules built for
    this interpreter's Python."""
    from make_fake_sdk import fake_qairt_sdk
    return fake_qairt_sdk(tmp_path_factory.mktemp("sdk") / "qairt" / "2.25.0.240728")


@pytest.fixture(scope="session")
def fake_msvc(tmp_path_factory) -> dict:
    """The test-double MSVC STL/CRT + Windows SDK for ARM64: {"include": [...], "lib": [...]}."""
    from make_fake_sdk import fake_msvc as make
    return make(tmp_path_factory.mktemp("msvc"))
