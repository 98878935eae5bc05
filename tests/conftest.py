"""Shared helpers: tiny pipelines in a temp folder and doit driven through its CLI."""

from __future__ import annotations

import contextlib
import copy
import os
import re
import shutil
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


def doit_command(pipeline: Path, *args: str, python=sys.executable) -> list[str]:
    return [str(python), "-m", "doit", "-f", str(ROOT / "dodo.py"), "-d", str(ROOT), *args, f"pipeline={pipeline}"]


def doit(pipeline: Path, *args: str, check: bool = True, env=None, python=sys.executable) -> DoitResult:
    cmd = doit_command(pipeline, *args, python=python)
    # unbuffered: with `-n 2` the worker processes share the pipe, and block-buffered output flushed
    # mid-line would break the `.  <task>` lines this helper reads
    env = dict(env or os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    res = DoitResult(proc)
    if check and proc.returncode != 0:
        raise AssertionError(f"doit {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return res


def validated(model: str, precision: str) -> set[str]:
    """The measurement of a model x precision and its verdict."""
    return {f"measure:{model}-{precision}", f"validate:{model}-{precision}"}


def chain(model: str, precisions=("fp16", "fp32")) -> set[str]:
    """The tasks downstream of one model's source ONNX."""
    out = {f"preprocess:{model}", f"reference:{model}"}
    for p in precisions:
        out |= {f"context:{model}-{p}"} | validated(model, p)
    if model == "llm_backbone":   # the action head's validation uses the LLM's KV cache
        out |= {t for p in precisions for t in validated("action_head", p)}
    if model == "vision_encoder":  # the LLM's (and so the head's) validation inputs: its image embeddings
        out |= {t for m in ("llm_backbone", "action_head") for p in precisions for t in validated(m, p)}
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


def _uses_shared_build(item) -> bool:
    return "shared_build" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(session, config, items):
    """What waits for an environment made in the background runs after the rest, each module's tests
    in file order: the modules that read the shared build (built in the declared-dependencies venv),
    then the LeRobot parity test (LeRobot's environment)."""
    later = {item.module.__name__ for item in items if _uses_shared_build(item)}
    items.sort(key=lambda item: 2 if item.module.__name__ == "test_lerobot_parity" else item.module.__name__ in later)


def pytest_collection_finish(session):
    """Made while the earlier tests run, if the session needs them: LeRobot's own environment
    (scripts/lerobot_env.sh) for the parity test, and the declared-dependencies venv."""
    if any(getattr(getattr(item, "module", None), "__name__", "") == "test_lerobot_parity" for item in session.items):
        from lerobot_parity import prepare_in_background
        prepare_in_background()
    if any(_uses_shared_build(item) for item in session.items):
        import tempfile

        from declared_env import prepare_in_background
        prepare_in_background(Path(tempfile.mkdtemp(prefix="smolvla-declared-env-")))


def pytest_sessionfinish(session, exitstatus):
    import declared_env
    import lerobot_parity
    lerobot_parity.stop_background()
    declared_env.stop_background()


def traced_env(folder: Path) -> dict:
    """The environment of a doit run that records the project modules it loads and each file access
    its tasks make (tests/fixtures/build_trace)."""
    return dict(os.environ, SMOLVLA_IMPORT_TRACE=str(folder / "imports.txt"),
                SMOLVLA_ACCESS_TRACE=str(folder / "access.txt"),
                PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "fixtures" / "build_trace")]
                                           + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))


class SharedBuild:
    """The tiny pipeline built once per session (traced), in `folder`. A test module that changes it
    checks it out: the module works in the same folder (doit's keys hold absolute paths, so a copy
    elsewhere would rebuild), and on leaving, the folder returns to the clean build, file times
    included, so doit sees it as it was."""

    def __init__(self, folder: Path, first: DoitResult):
        self.folder, self.pipe, self.first = folder, folder / "pipeline.yaml", first
        self.pristine = folder.with_name(folder.name + "-pristine")
        shutil.copytree(folder, self.pristine, symlinks=True)        # copy2: file times kept
        self.checked_out = False

    @property
    def artifacts(self) -> Path:
        return self.folder / "artifacts"

    @property
    def clean_artifacts(self) -> Path:
        """The clean build's artifacts as they were made (never changed)."""
        return self.pristine / "artifacts"

    def differences_from_clean(self, artifacts: Path) -> list[str]:
        """How an artifacts folder differs from the clean build (tests/fixtures/build_equality.py)."""
        from build_equality import differences
        return differences(artifacts, self.clean_artifacts, b_built_in=self.folder)

    @contextlib.contextmanager
    def checkout(self):
        assert not self.checked_out, "the shared build is checked out by another module"
        self.checked_out = True
        try:
            yield self
        finally:
            shutil.rmtree(self.folder)
            shutil.copytree(self.pristine, self.folder, symlinks=True)
            self.checked_out = False


@pytest.fixture(scope="session")
def declared_env(tmp_path_factory) -> Path:
    """The python of a venv holding only the project's declared build dependencies
    (tests/fixtures/declared_env.py)."""
    from declared_env import declared_python
    return declared_python(tmp_path_factory.mktemp("declared-env"))


@pytest.fixture(scope="session")
def shared_build(tmp_path_factory, declared_env) -> SharedBuild:
    """The tiny pipeline's default build, made once with one worker in the declared-dependencies
    venv (traced: imports.txt and access.txt beside it). Read it freely; a module that changes it
    uses `checkout()`."""
    folder = tmp_path_factory.mktemp("tiny-build")
    pipe = write_pipeline(folder)
    first = doit(pipe, env=traced_env(folder), python=declared_env)
    return SharedBuild(folder, first)


@pytest.fixture(scope="module")
def own_build(shared_build):
    """The shared tiny build, this module's to change; restored when the module ends."""
    with shared_build.checkout() as b:
        yield b
