"""The QAIRT SDK on disk: where it is, which release, and where each tool and library lives for a host.

Everything here is a plain function of (SDK tree, host name): `doctor --host aarch64-windows-msvc`
checks a Windows layout from Linux, and the tests run the same decisions on SDK test doubles laid out
as the public 2.25 tree is. The layout facts and their sources are in docs/qairt-sdk.md.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .. import ToolchainError, find_sdk

log = logging.getLogger("smolvla_build.qairt")


@dataclass(frozen=True)
class HostLayout:
    """One SDK host: its folders and how the chain runs there (docs/qairt-sdk.md, "Hosts").

    tool_dirs: per tool, the bin/ folders searched in order (the first holds it on newer releases,
      the others are where the 2.25 tree has it). A tool found in none is missing on that release.
    lib: the lib/ folder of the HTP backend the native tools load (qnn-net-run, the context
      generator). pymodules: the folders of the converter's compiled modules, in the order the SDK's
      qti/aisw/converters/common/__init__.py picks them. context_lib: the model library the context
      generator loads (the x86_64 host .so on Linux, the ARM64 DLL itself on Windows ARM64).
      weights: who makes the weight objects of the DLL ("libgen": the SDK's lib generator, "assemble":
      clang, see chain.py). converter_machine: the architecture the converter's Python must be.
    """
    name: str
    windows: bool
    tool_dirs: dict
    lib: str
    pymodules: tuple
    context_lib: str
    weights: str
    converter_machine: str

    def exe(self, tool: str) -> str:
        return tool + (".exe" if self.windows and tool not in PYTHON_TOOLS else "")

    @property
    def backend(self) -> str:
        return "QnnHtp.dll" if self.windows else "libQnnHtp.so"

    @property
    def extensions(self) -> str:
        return "QnnHtpNetRunExtensions.dll" if self.windows else "libQnnHtpNetRunExtensions.so"

    @property
    def system_lib(self) -> str:
        return "QnnSystem.dll" if self.windows else "libQnnSystem.so"


PYTHON_TOOLS = ("qnn-onnx-converter", "qnn-model-lib-generator")     # Python scripts: run with `python <path>`
REQUIRED_TOOLS = ("qnn-onnx-converter", "qnn-model-lib-generator", "qnn-context-binary-generator")
OPTIONAL_TOOLS = {"qnn-context-binary-utility": "the context's graph name and I/O are read from the converter's "
                                                "_net.json instead",
                  "qnn-net-run": "needed only for evaluation.runtime: qnn-net-run"}
LINUX = "x86_64-linux-clang"
WIN_ARM64, WIN_ARM64X, WIN_X64 = "aarch64-windows-msvc", "arm64x-windows-msvc", "x86_64-windows-msvc"

HOSTS = {
    LINUX: HostLayout(
        LINUX, windows=False,
        tool_dirs={t: (LINUX,) for t in REQUIRED_TOOLS + tuple(OPTIONAL_TOOLS)},
        lib=LINUX, pymodules=("linux-x86_64",), context_lib="host", weights="assemble", converter_machine="x64"),
    WIN_ARM64: HostLayout(
        WIN_ARM64, windows=True,
        tool_dirs={
            # 2.25: no converter in aarch64-windows-msvc; the docs send Windows on Snapdragon to the x64
            # scripts, which arm64x-windows-msvc also carries
            "qnn-onnx-converter": (WIN_ARM64, WIN_ARM64X, WIN_X64),
            "qnn-model-lib-generator": (WIN_ARM64, WIN_ARM64X, WIN_X64),
            # these load our ARM64 DLL and the aarch64 QnnHtp.dll: ARM64 builds only
            "qnn-context-binary-generator": (WIN_ARM64,),
            "qnn-net-run": (WIN_ARM64,),
            # 2.25 ships it for x86_64-linux-clang only
            "qnn-context-binary-utility": (WIN_ARM64, WIN_X64),
        },
        lib=WIN_ARM64, pymodules=("windows-x86_64", "windows-arm64ec"), context_lib="device", weights="libgen",
        # the .pyd modules are x64 / ARM64EC: an x64 Python (emulated on the laptop) loads them
        converter_machine="x64"),
}
DEVICE_LIB = WIN_ARM64                   # QnnHtp.lib for the ARM64 link, on every host


def host_name(configured: str = "auto") -> str:
    """The SDK host layout: toolchain.host from pipeline.yaml, else this machine's. An x64 Python
    under emulation on a Windows ARM64 laptop is still the aarch64-windows-msvc host (the machine's
    own architecture decides, smolvla_runtime.host)."""
    if configured != "auto":
        return configured
    from smolvla_runtime.host import this_host
    host = this_host()
    if host.system == "Windows" and host.native_machine == "arm64":
        return WIN_ARM64
    if host.system == "Linux" and host.native_machine == "x64":
        return LINUX
    raise ToolchainError(f"qairt: no QAIRT host layout for {host.describe()} "
                         f"(supported: Linux x86_64, Windows ARM64; set toolchain.host)")


@dataclass(frozen=True)
class Sdk:
    root: Path
    version: str
    host: str

    @property
    def layout(self) -> HostLayout:
        return HOSTS[self.host]

    @property
    def lib(self) -> Path:
        return self.root / "lib" / self.layout.lib

    @property
    def device_lib(self) -> Path:
        return self.root / "lib" / DEVICE_LIB

    @property
    def python_lib(self) -> Path:
        return self.root / "lib" / "python"

    @property
    def jni(self) -> Path:
        return self.root / "share" / "QNN" / "converter" / "jni"

    @property
    def include(self) -> Path:
        return self.root / "include" / "QNN"

    def hexagon(self, htp_arch: int) -> Path:
        return self.root / "lib" / f"hexagon-v{htp_arch}" / "unsigned"

    def tool_candidates(self, name: str) -> list[Path]:
        return [self.root / "bin" / d / self.layout.exe(name) for d in self.layout.tool_dirs[name]]

    def find_tool(self, name: str) -> Path | None:
        return next((p for p in self.tool_candidates(name) if p.is_file()), None)

    def tool(self, name: str) -> Path:
        """The tool's path, or one line naming the folders it was looked for in."""
        found = self.find_tool(name)
        if found is None:
            raise ToolchainError(f"qairt: {missing_tool(self, name)}")
        return found

    def env_paths(self) -> dict[str, list[str]]:
        """The folders the SDK's own set-up adds for this host, first to last (docs/qairt-sdk.md,
        "Environment"): Windows puts lib\\<arch> and bin\\<arch> on PATH (envsetup.ps1; the folders
        of tools taken from other bin\\ folders follow), Linux bin/ on PATH and lib/ on
        LD_LIBRARY_PATH (envsetup.sh); both put lib/python on PYTHONPATH."""
        bins = []
        for tool in self.layout.tool_dirs:
            found = self.find_tool(tool)
            if found is not None and str(found.parent) not in bins:
                bins.append(str(found.parent))
        first_bin = str(self.root / "bin" / self.layout.lib)
        bins = [first_bin] + [b for b in bins if b != first_bin]
        if self.layout.windows:
            return {"PATH": [str(self.lib)] + bins, "PYTHONPATH": [str(self.python_lib)]}
        return {"PATH": bins, "LD_LIBRARY_PATH": [str(self.lib)], "PYTHONPATH": [str(self.python_lib)]}

    def env(self, base: dict | None = None) -> dict:
        """`base` (this process's environment) with the SDK's folders in front and both SDK-root
        variables set. Joined with this machine's separator: the host layout may be simulated."""
        env = dict(os.environ if base is None else base)
        for var, folders in self.env_paths().items():
            env[var] = os.pathsep.join(folders + ([env[var]] if env.get(var) else []))
        env["QAIRT_SDK_ROOT"] = env["QNN_SDK_ROOT"] = str(self.root)
        return env


def missing_tool(sdk: Sdk, name: str) -> str:
    looked = ", ".join(p.relative_to(sdk.root).parent.as_posix() for p in sdk.tool_candidates(name))
    return (f"{sdk.layout.exe(name)} is not in the SDK at {sdk.root} ({sdk.version}) for host {sdk.host} "
            f"(looked in {looked})")


# --- version ---------------------------------------------------------------------------------------

def read_version(root: Path) -> str:
    """The SDK's full version, `<version>.<build date>`: sdk.yaml's `version` (2.25.0) and the date part
    of its `build_id` (240728104910_97711 -> 240728), which is also the folder QAIRT installs to
    (QAIRT\\2.25.0.240728). Without a build_id: the folder name when it extends `version`, else
    `version` alone. No sdk.yaml: a version-shaped folder name, else 'unknown'."""
    root = Path(root)
    folder = re.fullmatch(r"v?(\d+\.\d+\.\d+(?:\.\d+)?)", root.name)
    f = root / "sdk.yaml"
    text = f.read_text(errors="replace") if f.is_file() else ""
    version = re.search(r"^\s*version\s*:\s*['\"]?(\d+\.\d+\.\d+)", text, re.M)
    if not version:
        return folder.group(1) if folder else "unknown"
    build = re.search(r"^\s*build_id\s*:\s*['\"]?(\d{6})", text, re.M)
    if build:
        return f"{version.group(1)}.{build.group(1)}"
    if folder and folder.group(1).startswith(version.group(1) + "."):
        return folder.group(1)
    return version.group(1)


def version_matches(found: str, wanted: str) -> bool:
    """A three-part `sdk_version` (2.25.0) accepts any build of that release; a four-part one
    (2.25.0.240728) only that build."""
    want = wanted.split(".")
    return found.split(".")[: len(want)] == want if len(want) == 3 else found == wanted


def locate(pipe, host: str | None = None, environ=None) -> Sdk:
    """The SDK a pipeline names (toolchain.sdk_root, $QAIRT_SDK_ROOT, $QNN_SDK_ROOT) for `host`
    (default: toolchain.host), without the version policy: what `doctor` inspects."""
    found = find_sdk(pipe, environ)
    if found is None:
        raise ToolchainError("toolchain 'qairt' needs the Qualcomm AI Runtime SDK: install QAIRT "
                             f"{pipe.toolchain['sdk_version']} and set QAIRT_SDK_ROOT (or QNN_SDK_ROOT, or "
                             "toolchain.sdk_root)")
    root, _how = found
    return Sdk(root.resolve(), read_version(root), host or host_name(pipe.toolchain.get("host", "auto")))


def discover(pipe) -> Sdk:
    """The pipeline's SDK, checked: its host folder exists and its version is the expected one."""
    sdk = locate(pipe)
    if not (sdk.root / "bin" / sdk.layout.lib).is_dir():
        raise ToolchainError(f"qairt: {sdk.root / 'bin' / sdk.layout.lib} missing: the SDK at {sdk.root} has no "
                             f"tools for host {sdk.host}")
    want = pipe.toolchain["sdk_version"]
    if not version_matches(sdk.version, want):
        msg = f"qairt: the SDK at {sdk.root} is version {sdk.version}, pipeline.yaml expects {want}"
        if pipe.toolchain["on_version_mismatch"] == "error":
            raise ToolchainError(msg + " (set toolchain.sdk_version, or on_version_mismatch: warn to build anyway)")
        log.warning("%s: building anyway (on_version_mismatch: warn)", msg)
    return sdk
