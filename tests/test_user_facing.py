"""What a new user meets first: unreadable model files, long silent stages, a wheel install, the
noise of the simulator stack (issue: rough edges). Quoting of command lines: test_qairt.py."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import pytest

from smolvla_build.model_files import load_onnx, load_safetensors
from smolvla_build.precisions import Precision
from smolvla_runtime.files import ModelFileError, load_npy
from smolvla_runtime.htp import Soc

from conftest import ROOT, doit, write_pipeline


def _bad_files(folder: Path, good: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    data = good.read_bytes()
    files = {"truncated": data[: len(data) // 3], "text": b"this is not a model\n", "empty": b""}
    out = {}
    for kind, content in files.items():
        out[kind] = folder / f"{kind}.onnx"
        out[kind].write_bytes(content)
    return out


@pytest.mark.parametrize("verb", ["preprocess", "check"])
def test_cli_names_the_unreadable_model_in_one_line(tiny_export, tmp_path, verb):
    for kind, bad in _bad_files(tmp_path / "in", tiny_export / "vision_encoder.onnx").items():
        out = tmp_path / f"out-{kind}.onnx"
        args = [bad, out] if verb == "preprocess" else [bad]
        proc = subprocess.run([sys.executable, "-m", "smolvla_build", verb, *map(str, args)], capture_output=True,
                              text=True, cwd=ROOT)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert lines[0].startswith(f"error: {bad}: ")
        assert ("empty file" if kind == "empty" else "not an ONNX model, or truncated") in lines[0]
        assert not out.exists()


def test_doit_on_an_onnx_source_with_a_corrupt_model_fails_in_one_line(tiny_export, tmp_path):
    src = tmp_path / "models"
    shutil.copytree(tiny_export, src)
    data = (src / "vision_encoder.onnx").read_bytes()
    (src / "vision_encoder.onnx").write_bytes(data[: len(data) // 2])
    pipe = write_pipeline(tmp_path, source={"preset": "tiny", "weights": "onnx", "path": str(src)})
    res = doit(pipe, "preprocess:vision_encoder", check=False)
    assert res.returncode != 0 and "Traceback" not in res.stdout + res.stderr
    assert f"{src / 'vision_encoder.onnx'}: not an ONNX model, or truncated" in res.stdout
    assert not (tmp_path / "artifacts" / "preprocessed" / "vision_encoder.onnx").exists()


def test_external_data_npy_safetensors_and_context_files(tmp_path):
    import onnx.numpy_helper as nh
    w = nh.from_array(np.ones((64, 64), np.float32), "W")
    g = oh.make_graph([oh.make_node("MatMul", ["x", "W"], ["y"])], "g", [oh.make_tensor_value_info("x", 1, [1, 64])],
                      [oh.make_tensor_value_info("y", 1, [1, 64])], [w])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)])
    onnx.save(m, str(tmp_path / "m.onnx"), save_as_external_data=True, location="m.data", size_threshold=0)
    assert load_onnx(tmp_path / "m.onnx").graph.initializer[0].raw_data       # reads fine
    data = (tmp_path / "m.data").read_bytes()
    (tmp_path / "m.data").write_bytes(data[:100])
    with pytest.raises(ModelFileError, match=r"m.onnx: external data file m.data is truncated"):
        load_onnx(tmp_path / "m.onnx")
    (tmp_path / "m.data").unlink()
    with pytest.raises(ModelFileError, match=r"m.onnx: external data file m.data missing"):
        load_onnx(tmp_path / "m.onnx")

    np.save(tmp_path / "t.npy", np.ones((100, 16), np.float32))
    (tmp_path / "t.npy").write_bytes((tmp_path / "t.npy").read_bytes()[:300])
    with pytest.raises(ModelFileError, match=r"t.npy: not a .npy array, or truncated"):
        load_npy(tmp_path / "t.npy", mmap_mode="r")
    (tmp_path / "w.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ModelFileError, match=r"w.safetensors: not a safetensors file, or truncated"):
        load_safetensors(tmp_path / "w.safetensors")

    from smolvla_build.toolchains.epcontext import wrap_context_binary
    from smolvla_build.toolchains.ort_qnn import load_session
    (tmp_path / "ctx.bin").write_bytes(b"")
    wrap_context_binary(tmp_path / "ctx.bin", tmp_path / "ctx.onnx", "g", [("x", 1, [1, 64])], [("y", 1, [1, 64])])
    with pytest.raises(ModelFileError, match=r"ctx.onnx: its context binary ctx.bin is missing or empty"):
        load_session(tmp_path / "ctx.onnx", Soc("Snapdragon X Elite", 60, 73),
                     {"context": {"fp16_relaxed_precision": True, "vtcm_mb": 8, "optimization_level": 3}})
    (tmp_path / "ctx.bin").write_bytes(b"not a QNN context")
    with pytest.raises(ModelFileError, match=r"ctx.onnx: onnxruntime cannot load this HTP context model"):
        load_session(tmp_path / "ctx.onnx", Soc("Snapdragon X Elite", 60, 73),
                     {"context": {"fp16_relaxed_precision": True, "vtcm_mb": 8, "optimization_level": 3}})


# --- progress --------------------------------------------------------------------------------------

def test_preprocess_reports_each_pass_and_the_equivalence_run(tiny_export, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "smolvla_build", "preprocess", str(tiny_export / "llm_backbone.onnx"),
                           str(tmp_path / "out.onnx"), "--embedding-on-cpu", "--sinusoid-on-cpu"],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    passes = [line for line in proc.stderr.splitlines() if ": pass " in line]
    assert len(passes) == 11 and passes[0].startswith("llm_backbone.onnx: pass 1/11 fold_constant_subgraphs")
    assert "llm_backbone.onnx: proving equivalence in onnxruntime" in proc.stderr


def test_heartbeat_and_steps_lines():
    from smolvla_build.progress import Announced, Steps, heartbeat

    class Log:
        def __init__(self):
            self.lines = []

        def info(self, fmt, *args):
            self.lines.append(fmt % args)
    log = Log()
    with heartbeat("validate vision_encoder-fp16", log, every=0.05):
        time.sleep(0.3)
    assert any(line.startswith("validate vision_encoder-fp16: still running (") for line in log.lines)

    class Slow:
        def infer(self, feeds):
            time.sleep(0.01)
            return feeds
    log = Log()
    runner = Announced(Slow(), Steps("validate action_head-fp16: HTP-emulated call", 3, log))
    for _ in range(3):
        runner.infer({})
    assert [line.split(" (")[0] for line in log.lines] == [
        f"validate action_head-fp16: HTP-emulated call {i}/3" for i in (1, 2, 3)]
    assert "s left)" in log.lines[0] and "left" not in log.lines[-1]


# --- a wheel install ---------------------------------------------------------------------------------

VALUES = dict(python="py", converter="conv", patch=None, onnx="m.onnx", cpp="m.cpp", float_bitwidth=16,
              float_bias_bitwidth=32, extra_args=[], clang_cl=["clang-cl"], crt_flag="/MD", target="aarch64-pc-windows-msvc",
              jni="jni", include="inc", msvc_include=["msvc"], source="a.cpp", obj="a.o", clang="clang", asm="w.S",
              weights=[{"name": "w", "raw": "w.raw"}], ctxgen="gen", model_lib="m.so", backend="libQnnHtp.so",
              binary_name="m.serialized", outdir="out", config="cfg.json", utility="util", binary="m.bin",
              json="m.json", lines=[[("x", "x.raw")]], lld_link="lld-link", dll="m.dll", libpaths=["lib"], objects=["a.o"],
              libs=["msvcrt.lib"], link_flags=[], libgen="libgen", bin="m.bin", name="m", netrun="net-run",
              context="m.bin", input_list="il.txt", native_inputs="g:x", log_level="warn", profiling_level=None)
RENDER_ALL = """
import json, sys, smolvla_build.templates as t
values = json.loads(sys.argv[1])
print(json.dumps({"file": t.__file__, "dir": str(t.TEMPLATES),
                  "rendered": {n: t.render(n, **values) for n in t.template_names()}}))
"""


def test_a_wheel_install_renders_every_template(tmp_path):
    src = tmp_path / "src"              # a copy: building in the checkout would leave build/ there
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "templates", "smolvla_build"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, src / name, **(
            {"symlinks": True, "ignore": shutil.ignore_patterns("__pycache__")} if (ROOT / name).is_dir() else {}))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(wheels), str(src)], check=True, capture_output=True, env=dict(os.environ, PIP_ROOT_USER_ACTION="ignore"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", *map(str, wheels.glob("*.whl"))],
                   check=True, capture_output=True, env=dict(os.environ, PIP_ROOT_USER_ACTION="ignore"))
    out = subprocess.run([str(py), "-c", RENDER_ALL, json.dumps(VALUES)], capture_output=True, text=True,
                         cwd=tmp_path, check=True)
    got = json.loads(out.stdout)
    assert got["file"].startswith(str(venv)) and got["dir"].startswith(str(venv))     # the wheel's copy, not the checkout
    from smolvla_build.templates import render, template_names
    assert sorted(got["rendered"]) == template_names() and len(got["rendered"]) >= 10
    assert got["rendered"] == {n: render(n, **VALUES) for n in template_names()}


# --- the simulator stack's noise -------------------------------------------------------------------

def test_libero_check_prints_only_its_own_line(tmp_path):
    pytest.importorskip("libero", reason="LIBERO is installed by scripts/install_libero.sh (scripts/test.sh runs it)")
    proc = subprocess.run([sys.executable, "-m", "smolvla_build", "libero-check", "--config-dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("LIBERO ok: "), lines


def test_install_script_prints_only_the_builds_own_line():
    pytest.importorskip("libero", reason="LIBERO is installed by scripts/install_libero.sh (scripts/test.sh runs it)")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "install_libero.sh")], capture_output=True, text=True,
                          check=True)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("LIBERO ok: "), lines


def test_quiet_simulator_imports_keeps_a_users_own_macro_file(tmp_path, monkeypatch):
    from smolvla_build.evaluate import libero_env
    pkg = tmp_path / "robosuite"
    pkg.mkdir()
    monkeypatch.setattr(libero_env, "_package_dir", lambda name: pkg)
    monkeypatch.delitem(sys.modules, "robosuite.macros_private", raising=False)
    libero_env.quiet_simulator_imports()
    assert "robosuite.macros_private" in sys.modules and logging.getLogger("OpenGL").level == logging.WARNING
    monkeypatch.delitem(sys.modules, "robosuite.macros_private")
    (pkg / "macros_private.py").write_text("MUJOCO_GPU_RENDERING = False\n")
    libero_env.quiet_simulator_imports()
    assert "robosuite.macros_private" not in sys.modules


def test_the_project_documents_itself():
    """A newcomer's README (the two commands first, under 150 lines), and every document the code,
    scripts and docs cite is in the repository: none outside it (the notes beside the checkout)."""
    import re
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 150
    commands = re.findall(r"^bash (\S+)$", readme, re.M)
    assert commands[:2] == ["scripts/build.sh", "scripts/test.sh"]
    files = [p for p in ROOT.rglob("*") if p.is_file() and p.suffix in (".py", ".sh", ".md", ".yaml", ".toml", ".j2")
             and not {".git", ".venv-lerobot", "artifacts"} & set(p.relative_to(ROOT).parts)]
    for f in files:
        text = f.read_text(errors="replace")
        assert "../" + "shared" not in text, f
        for cited in set(re.findall(r"\bdocs/[\w.-]+\.md", text)):
            assert (ROOT / cited).is_file(), f"{f.relative_to(ROOT)} cites {cited}"


def test_a_soc_model_the_htp_backend_does_not_know_stops_the_context_in_one_line(tmp_path, capfd):
    """soc_model 61 is a valid number but no SoC onnxruntime-qnn knows: its HTP backend takes no node,
    and with CPU fallback off onnxruntime's own error would name neither the setting nor the cause."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from smolvla_build.toolchains import ToolchainError
    from smolvla_build.toolchains.ort_qnn import build_context
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])],
                              [numpy_helper.from_array(np.ones((8, 8), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "m.onnx"))
    precision = Precision("fp16", {"converter": {"float_bitwidth": 16},
                                   "context": {"fp16_relaxed_precision": True, "vtcm_mb": 8, "optimization_level": 3}})
    with pytest.raises(ToolchainError) as err:
        build_context(tmp_path / "m.onnx", tmp_path / "ctx" / "m_ctx.onnx", Soc("Snapdragon X Elite", 61, 73), precision)
    assert "soc.soc_model 61" in str(err.value) and "\n" not in str(err.value)
    assert "\x1b[" not in capfd.readouterr().err          # not onnxruntime's coloured log first: that line alone
    assert not (tmp_path / "ctx" / "m_ctx.onnx").exists()
    build_context(tmp_path / "m.onnx", tmp_path / "ctx" / "m_ctx.onnx", Soc("Snapdragon X Elite", 60, 73), precision)


def test_a_misspelt_doit_variable_is_refused_not_a_default_build(tmp_path):
    """`doit pipline=...` once started the full-size default build: doit takes any name=value as a
    variable, so dodo.py refuses the ones it does not read, naming the known one."""
    pipe = write_pipeline(tmp_path)
    res = doit(pipe, "list", "pipline=examples/tiny.yaml", check=False)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode != 0 and len(lines) == 1 and "Traceback" not in res.stderr
    assert "unknown doit variable 'pipline='" in lines[0] and "pipeline= (the pipeline file" in lines[0]
    assert not (tmp_path / "artifacts").exists()                        # refused before anything is made
    assert "export" in doit(pipe, "list").stdout.split()               # the known one still works


@pytest.mark.parametrize("weights, needs", [("checkpoint", "--path FOLDER"), ("hub", "--repo-id REPO")])
def test_export_without_the_source_its_weights_need_is_one_line(tmp_path, weights, needs):
    proc = subprocess.run([sys.executable, "-m", "smolvla_build", "export", str(tmp_path / "out"), "--weights", weights],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: --weights {weights} needs {needs}" + (
        " (a LeRobot checkpoint folder)" if weights == "checkpoint" else " (a Hugging Face repository in the local cache)")
    assert not (tmp_path / "out").exists()


def test_an_artifacts_folder_that_cannot_be_written_is_one_line(tmp_path):
    """The artifacts folder cannot be made (here: a file stands where its parent should be; a
    read-only disk is the same OSError, which the suite cannot make as root): one line naming it."""
    (tmp_path / "blocked").write_text("a file, not a folder\n")
    pipe = write_pipeline(tmp_path)
    text = pipe.read_text().replace("artifacts: artifacts", "artifacts: blocked/artifacts")
    pipe.write_text(text)
    res = doit(pipe, "list", check=False)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith(f"error: the artifacts folder {tmp_path / 'blocked' / 'artifacts'}: Not a directory")


def test_a_task_refused_by_the_machine_fails_in_one_line():
    """A read-only or full disk under a task (PermissionError, ENOSPC): the task fails with the file
    and the reason, not a traceback; the project's own bugs still raise."""
    import errno

    from doit.exceptions import TaskFailed

    from smolvla_build.stages import Guarded

    def read_only(spec):
        raise PermissionError(errno.EACCES, "Permission denied", "/a/validation/action_head-fp16.json")

    def full(spec):
        raise OSError(errno.ENOSPC, "No space left on device", "/a/contexts/x.bin")

    def bug(spec):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/a/missing")
    for fn, line in ((read_only, "/a/validation/action_head-fp16.json: Permission denied"),
                     (full, "/a/contexts/x.bin: No space left on device")):
        result = Guarded(fn)(None)
        assert isinstance(result, TaskFailed) and str(result.message).startswith(line) and "\n" not in result.message
    with pytest.raises(FileNotFoundError):
        Guarded(bug)(None)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="the per-task peak needs Linux's clear_refs")
def test_the_reports_peak_memory_is_the_tasks_own():
    """The report's peak column was the doit process's peak in whichever run built that row: a task
    now measures from its own start, itself and the tools it runs (toolchains/rss.py)."""
    from smolvla_build.toolchains import rss
    from smolvla_build.toolchains.qairt.run import run
    rss.reset_peak()
    big = bytearray(400 * 1024 * 1024)
    big[::4096] = b"x" * len(big[::4096])                 # touch every page: resident
    after_big = rss.peak_rss_mb()
    del big
    rss.reset_peak()                                      # the next task: the earlier peak is forgotten
    small = rss.peak_rss_mb()
    assert after_big >= 400 and small < after_big - 300, (after_big, small)
    run(f"{sys.executable} -c 'b = bytearray(600 * 1024 * 1024); b[::4096] = bytes(len(b[::4096]))'")
    assert rss.peak_rss_mb() >= 600                      # a tool's own peak (wait4), beyond this process's


def test_prune_removes_what_a_removed_precision_made_and_only_that(tmp_path, tiny_export):
    """`doit clean` cannot see a removed precision's tasks; the ledger of what each task made can:
    prune lists them, removes them only with --yes, and leaves the build up to date."""
    import yaml
    source = {"preset": "tiny", "weights": "onnx", "path": str(tiny_export)}
    pipe = write_pipeline(tmp_path, source=source)
    doit(pipe, "context:action_head-fp16", "context:action_head-fp32")
    root = tmp_path / "artifacts"
    fp32 = sorted(p.name for p in (root / "ort-qnn" / "fp32").iterdir())
    assert fp32 == ["action_head_ctx.json", "action_head_ctx.onnx", "action_head_ctx_qnn.bin"]
    data = yaml.safe_load(pipe.read_text())
    del data["precisions"]["fp32"]
    data["evaluation"] = dict(data.get("evaluation") or {}, precision="fp16")
    pipe.write_text(yaml.safe_dump(data))

    def prune(*args):
        return subprocess.run([sys.executable, "-m", "smolvla_build", "prune", "--pipeline", str(pipe), *args],
                              capture_output=True, text=True, cwd=tmp_path)
    listed = prune()
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert sorted(line.split(" (")[0] for line in listed.stdout.splitlines()[:-1]) == [f"ort-qnn/fp32/{n}" for n in fp32]
    assert listed.stdout.splitlines()[-1].endswith("run again with --yes to remove them")
    assert (root / "ort-qnn" / "fp32").is_dir()                                   # listing removes nothing
    removed = prune("--yes")
    assert removed.returncode == 0 and removed.stdout.splitlines()[-1].startswith("removed 3 path(s)")
    assert not (root / "ort-qnn" / "fp32").exists() and (root / "ort-qnn" / "fp16" / "action_head_ctx.onnx").is_file()
    assert "nothing to prune" in prune().stdout
    assert doit(pipe, "context:action_head-fp16").ran == set()


def test_a_task_needing_an_extra_this_environment_lacks_names_the_extra():
    """`doit eval` after installing only `.[export]` raised ModuleNotFoundError: ray. The extra that
    brings a module is read from the installed package's own metadata (pyproject.toml)."""
    from doit.exceptions import TaskFailed

    from smolvla_build.stages import Guarded

    def needs(module):
        def action(spec):
            raise ModuleNotFoundError(f"No module named '{module}'", name=module)
        return action
    for module, extra in (("ray", "eval"), ("torch", "export"), ("mujoco", "libero")):
        result = Guarded(needs(module))(None)
        assert isinstance(result, TaskFailed) and result.message.startswith(
            f"{module} is not installed: it comes with the project's `{extra}` extra (pip install -e .[{extra}]")
    assert Guarded(needs("libero"))(None).message.startswith("LIBERO is not installed: pip install -e .[libero], then")
    with pytest.raises(ModuleNotFoundError):                       # not the project's: a bug, with its traceback
        Guarded(needs("no_such_module_anywhere"))(None)
