"""The qairt toolchain: the Qualcomm AI Runtime SDK command-line tools, as the deployed card uses them.

  preprocessed ONNX -> qnn-onnx-converter -> model.cpp + model.bin (+ _net.json)
  -> weights: objects defining _binary_obj_binary_<name>_raw_start/_end (what BINVARSTART expects) for
     each raw tensor of model.bin. On a Windows ARM64 host the SDK's qnn-model-lib-generator
     -t windows-aarch64 makes them (object-generator.exe) and leaves them under tmp_*/obj/windows-aarch64;
     on a Linux host, which the lib generator offers no Windows target, clang assembles them (.incbin)
  -> clang-cl --target=aarch64-pc-windows-msvc: QnnModel.cpp, QnnWrapperUtils.cpp, QnnModelPal.cpp
     (windows/), QnnNetworkModel.cpp (= model.cpp) -> .o
  -> lld-link /DLL /MACHINE:ARM64 -> lib<model>_htp.dll (the ARM64 model library for the device)
  -> qnn-context-binary-generator with a model library the host can load (the host x86_64 .so from
     qnn-model-lib-generator on Linux; the ARM64 DLL itself on a Windows ARM64 host)
     -> lib<model>_htp_<precision>.serialized.bin
Every command line is rendered from templates/qairt/ (smolvla_build.templates). Both hosts are
configurations (`HOSTS`) of the same templates and code.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import ToolchainError

log = logging.getLogger("smolvla_build.qairt")
TARGET = "aarch64-pc-windows-msvc"

# host name -> SDK folder names, tools and where the weight objects come from; the same templates
# render for both. context_lib: the model library qnn-context-binary-generator loads (host .so on
# Linux, the ARM64 DLL itself on Windows ARM64). weights: "libgen" (the SDK's lib generator) or
# "assemble" (clang, see module docstring).
HOSTS = {
    "x86_64-linux-clang": {"backend": "libQnnHtp.so", "extensions": "libQnnHtpNetRunExtensions.so",
                           "context_lib": "host", "exe": "", "weights": "assemble"},
    "aarch64-windows-msvc": {"backend": "QnnHtp.dll", "extensions": "QnnHtpNetRunExtensions.dll",
                             "context_lib": "device", "exe": ".exe", "weights": "libgen"},
}


def host_name(configured: str = "auto") -> str:
    """The SDK host layout: toolchain.host from pipeline.yaml, else this machine's."""
    if configured != "auto":
        return configured
    if platform.system() == "Windows" and platform.machine().upper() in ("ARM64", "AARCH64"):
        return "aarch64-windows-msvc"
    if platform.system() == "Linux" and platform.machine() == "x86_64":
        return "x86_64-linux-clang"
    raise ToolchainError(f"qairt: no QAIRT host layout for {platform.system()} {platform.machine()} "
                         "(supported: Linux x86_64, Windows ARM64)")


@dataclass(frozen=True)
class Sdk:
    root: Path
    version: str
    host: str

    @property
    def bin(self) -> Path:
        return self.root / "bin" / self.host

    @property
    def lib(self) -> Path:
        return self.root / "lib" / self.host

    @property
    def jni(self) -> Path:
        return self.root / "share" / "QNN" / "converter" / "jni"

    @property
    def include(self) -> Path:
        return self.root / "include" / "QNN"

    def tool(self, name: str) -> Path:
        exe = HOSTS[self.host]["exe"]
        p = self.bin / (name + (exe if name not in ("qnn-onnx-converter", "qnn-model-lib-generator") else ""))
        if not p.is_file():
            raise ToolchainError(f"qairt: {p} missing: the SDK at {self.root} is incomplete for host {self.host}")
        return p

    def env(self) -> dict:
        """The converter imports qti.aisw.* from the SDK (PYTHONPATH) and its native libs."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(self.root / "lib" / "python")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["LD_LIBRARY_PATH"] = os.pathsep.join([str(self.lib)] + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else []))
        env["QNN_SDK_ROOT"] = str(self.root)
        return env


def read_version(root: Path) -> str:
    """The SDK's version: `version:` in <root>/sdk.yaml, else a version-shaped folder name
    (QAIRT unpacks to qairt/<version>/). Not checked against a real SDK here (proprietary)."""
    f = root / "sdk.yaml"
    if f.is_file():
        m = re.search(r"^\s*version\s*:\s*['\"]?([\d.]+)", f.read_text(), re.M)
        if m:
            return m.group(1)
    m = re.fullmatch(r"v?(\d+\.\d+\.\d+(?:\.\d+)?)", root.name)
    return m.group(1) if m else "unknown"


def discover(pipe) -> Sdk:
    from . import find_sdk
    root = find_sdk(pipe)
    if root is None:
        raise ToolchainError("toolchain 'qairt' needs the Qualcomm AI Runtime SDK: install QAIRT "
                             f"{pipe.toolchain['sdk_version']} and set QNN_SDK_ROOT (or toolchain.sdk_root)")
    sdk = Sdk(root.resolve(), read_version(root), host_name(pipe.toolchain.get("host", "auto")))
    if not sdk.bin.is_dir():
        raise ToolchainError(f"qairt: {sdk.bin} missing: the SDK at {sdk.root} has no tools for host {sdk.host}")
    want = pipe.toolchain["sdk_version"]
    if sdk.version != want:
        msg = f"qairt: the SDK at {sdk.root} is version {sdk.version}, pipeline.yaml expects {want}"
        if pipe.toolchain["on_version_mismatch"] == "error":
            raise ToolchainError(msg + " (set toolchain.on_version_mismatch: warn to build anyway)")
        log.warning("%s: building anyway (on_version_mismatch: warn)", msg)
    return sdk


def host_tools() -> dict:
    """clang-cl / lld-link / clang: the LLVM ones on PATH (Debian's -16 names or plain names)."""
    def find(*names):
        for n in names:
            p = shutil.which(n)
            if p:
                return p
        return None
    clang = find("clang-16", "clang")
    clang_cl = find("clang-cl-16", "clang-cl")
    lld_link = find("lld-link-16", "lld-link")
    if not (clang and lld_link):
        raise ToolchainError("qairt: clang and lld-link not found: install LLVM (Debian: apt-get install clang-16 lld-16)")
    return {"clang": clang, "clang_cl": clang_cl and f'"{clang_cl}"' or f'"{clang}" --driver-mode=cl',
            "lld_link": f'"{lld_link}"'}


def tool_versions(tools: dict) -> dict:
    out = {}
    for k in ("clang", "lld_link"):
        exe = tools[k].strip('"')
        try:
            out[k] = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            out[k] = "unknown"
    return out


def run(cmd: str, env=None, cwd=None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a rendered command line in the host shell; a failure shows the command and its output."""
    proc = subprocess.run(cmd, shell=True, env=env, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {cmd}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc


def sanitize(name: str) -> str:
    """qnn-onnx-converter's tensor-name sanitization (ir_to_qnn.py::sanitize_name):
    `output.1` -> `output_1`, `/model/x:0` -> `_model_x_0`."""
    s = re.sub(r"\W+", "_", name)
    return s if s[:1].isalpha() or s[:1] == "_" else "_" + s


PYTHON = sys.executable
