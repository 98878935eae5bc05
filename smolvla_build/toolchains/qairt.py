"""The qairt toolchain: the Qualcomm AI Runtime SDK command-line tools, as the deployed card uses them.

  preprocessed ONNX -> qnn-onnx-converter (under the Python the SDK's modules link) -> model.cpp +
     model.bin (+ _net.json)
  -> weights: objects defining _binary_obj_binary_<name>_raw_start/_end (what BINVARSTART expects) for
     each raw tensor of model.bin. On a Windows ARM64 host the SDK's qnn-model-lib-generator
     -t windows-aarch64 makes them (object-generator.exe) and leaves them under tmp_*/obj/windows-aarch64;
     on a Linux host, which the lib generator offers no Windows target, clang assembles them (.incbin)
  -> clang-cl --target=aarch64-pc-windows-msvc /MD with the MSVC STL and Windows SDK headers:
     QnnModel.cpp, QnnWrapperUtils.cpp, QnnModelPal.cpp (windows/), QnnNetworkModel.cpp (= model.cpp)
  -> lld-link /DLL /MACHINE:ARM64 ... msvcrt.lib kernel32.lib QnnHtp.lib -> lib<model>_htp.dll
  -> qnn-context-binary-generator with a model library the host can load (the host x86_64 .so from
     qnn-model-lib-generator on Linux; the ARM64 DLL itself on a Windows ARM64 host)
     -> lib<model>_htp_<precision>.serialized.bin, described by qnn-context-binary-utility
Every command line is rendered from templates/qairt/ (smolvla_build.templates). Both hosts are
configurations (`HOSTS`) of the same templates and code. The facts behind each step, and where they
were checked, are in ../shared/docs/qnn.md and the README.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import re
import shutil
import struct
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
# "assemble" (clang, see module docstring). pymodules: the folders of the converter's compiled
# Python modules, in the order the SDK's qti/aisw/converters/common/__init__.py tries them.
HOSTS = {
    "x86_64-linux-clang": {"backend": "libQnnHtp.so", "extensions": "libQnnHtpNetRunExtensions.so",
                           "context_lib": "host", "exe": "", "weights": "assemble", "pymodules": ["linux-x86_64"]},
    "aarch64-windows-msvc": {"backend": "QnnHtp.dll", "extensions": "QnnHtpNetRunExtensions.dll",
                             "context_lib": "device", "exe": ".exe", "weights": "libgen",
                             "pymodules": ["windows-x86_64", "windows-arm64ec"]},
}
PYTHON_TOOLS = ("qnn-onnx-converter", "qnn-model-lib-generator")     # Python scripts: run with `python <path>`
DEVICE_LIB = "aarch64-windows-msvc"                                    # QnnHtp.lib for the ARM64 link


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
    def device_lib(self) -> Path:
        return self.root / "lib" / DEVICE_LIB

    @property
    def jni(self) -> Path:
        return self.root / "share" / "QNN" / "converter" / "jni"

    @property
    def include(self) -> Path:
        return self.root / "include" / "QNN"

    def tool(self, name: str) -> Path:
        exe = HOSTS[self.host]["exe"]
        p = self.bin / (name + (exe if name not in PYTHON_TOOLS else ""))
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


# --- version ---------------------------------------------------------------------------------------

def read_version(root: Path) -> str:
    """The SDK's full version, `<version>.<build date>`: sdk.yaml's `version` (2.25.0) and the date part
    of its `build_id` (240728104910_97711 -> 240728), which is also the folder QAIRT unpacks to
    (qairt/2.25.0.240728). Without a build_id: the folder name when it extends `version`, else
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
    if not version_matches(sdk.version, want):
        msg = f"qairt: the SDK at {sdk.root} is version {sdk.version}, pipeline.yaml expects {want}"
        if pipe.toolchain["on_version_mismatch"] == "error":
            raise ToolchainError(msg + " (set toolchain.sdk_version, or on_version_mismatch: warn to build anyway)")
        log.warning("%s: building anyway (on_version_mismatch: warn)", msg)
    return sdk


# --- the converter's Python ------------------------------------------------------------------------

def _elf_needed(path: Path) -> list[str]:
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    try:
        with open(path, "rb") as f:
            return [t.needed for s in ELFFile(f).iter_sections() if isinstance(s, DynamicSection)
                    for t in s.iter_tags("DT_NEEDED")]
    except (ELFError, OSError) as e:
        raise ToolchainError(f"qairt: {path}: not a readable ELF shared object ({e})") from None


def _pe_imports(path: Path) -> list[str]:
    import pefile
    try:
        pe = pefile.PE(str(path), fast_load=True)
        pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"]])
        return [e.dll.decode(errors="replace") for e in getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])]
    except (pefile.PEFormatError, OSError) as e:
        raise ToolchainError(f"qairt: {path}: not a readable PE module ({e})") from None


def converter_module_python(sdk: Sdk) -> tuple[tuple[int, int], Path] | None:
    """The CPython the converter's compiled modules link (libPyIrGraph: DT_NEEDED libpython3.X.so on
    Linux, an import of python3X.dll on Windows), and the module it was read from."""
    common = sdk.root / "lib" / "python" / "qti" / "aisw" / "converters" / "common"
    for folder in HOSTS[sdk.host]["pymodules"]:
        for module in (common / folder / "libPyIrGraph.so", common / folder / "libPyIrGraph.pyd"):
            if not module.is_file():
                continue
            names = _elf_needed(module) if module.suffix == ".so" else _pe_imports(module)
            for n in names:
                m = re.fullmatch(r"libpython(\d+)\.(\d+)\.so(?:\.[\d.]+)?", n) or re.fullmatch(r"python(\d)(\d+)\.dll", n, re.I)
                if m:
                    return (int(m.group(1)), int(m.group(2))), module
    return None


def _python_version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.fullmatch(r"(\d+)\.(\d+)", out.stdout.strip())
    return (int(m.group(1)), int(m.group(2))) if out.returncode == 0 and m else None


def converter_python(sdk: Sdk, configured: str | None = None) -> str:
    """The interpreter that runs qnn-onnx-converter: `toolchain.python`, else the one the SDK's
    compiled modules need (this interpreter if it is that version, else python3.X on PATH, or the
    Windows `py -3.X` launcher). A missing or wrong one is one line naming the version to install."""
    needed = converter_module_python(sdk)
    if configured:
        exe = shutil.which(configured) or configured
        have = _python_version(exe)
        if have is None:
            raise ToolchainError(f"qairt: toolchain.python: {configured} does not run as a Python interpreter")
        if needed and have != needed[0]:
            raise ToolchainError(f"qairt: toolchain.python: {configured} is Python {have[0]}.{have[1]}, but the SDK's "
                                 f"converter modules ({needed[1].name}) need Python {needed[0][0]}.{needed[0][1]}")
        return exe
    if needed is None:              # no compiled modules found: trust this interpreter
        return sys.executable
    (major, minor), module = needed
    if sys.version_info[:2] == (major, minor):
        return sys.executable
    for name in (f"python{major}.{minor}", f"python{major}{minor}"):
        exe = shutil.which(name)
        if exe and _python_version(exe) == (major, minor):
            return exe
    if shutil.which("py"):          # the Windows launcher
        try:
            out = subprocess.run(["py", f"-{major}.{minor}", "-c", "import sys; print(sys.executable)"],
                                 capture_output=True, text=True, timeout=60)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    raise ToolchainError(f"qairt: the SDK's converter modules ({module.relative_to(sdk.root)}) need Python "
                         f"{major}.{minor}, which is not installed here: install python{major}.{minor} (with the "
                         "SDK's Python packages) or set toolchain.python")


# --- host compilers ----------------------------------------------------------------------------------

def _find(*names):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


def host_tools() -> dict:
    """clang-cl / lld-link / clang / clang++: the LLVM ones on PATH (Debian's -16 names or plain names)."""
    clang = _find("clang-16", "clang")
    clang_cl = _find("clang-cl-16", "clang-cl")
    lld_link = _find("lld-link-16", "lld-link")
    clangxx = _find("clang++-16", "clang++")
    if not (clang and lld_link):
        raise ToolchainError("qairt: clang and lld-link not found: install LLVM (Debian: apt-get install clang-16 lld-16)")
    return {"clang": clang, "clang_cl": [clang_cl] if clang_cl else [clang, "--driver-mode=cl"],
            "lld_link": lld_link, "clangxx": clangxx}


def tool_versions(tools: dict) -> dict:
    out = {}
    for k in ("clang", "lld_link"):
        try:
            out[k] = subprocess.run([tools[k], "--version"], capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            out[k] = "unknown"
    return out


def compiler_shim(folder: Path, clangxx: str | None) -> Path:
    """A folder holding `clang++`, for the PATH of qnn-model-lib-generator: its Linux target looks up
    only `clang++-9` or `clang++` (2.25 script: "Could not find compiler: clang++"), and Debian
    installs clang++-16 alone."""
    if not clangxx:
        raise ToolchainError("qairt: qnn-model-lib-generator needs clang++ to build the host library: "
                             "install clang (Debian: apt-get install clang-16)")
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "clang++"
    if not (link.is_symlink() and os.readlink(link) == clangxx):
        tmp = folder / ".clang++.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(clangxx)
        os.replace(tmp, link)
    return folder


def msvc_dirs(pipe, host: str) -> dict:
    """The MSVC STL / CRT and Windows SDK folders for the cross-compile (toolchain.msvc), else, on a
    Windows host, the Visual Studio developer environment's INCLUDE and LIB."""
    cfg = pipe.toolchain.get("msvc") or {}
    out = {k: [str(pipe.resolve(p)) for p in cfg.get(k, [])] for k in ("include", "lib")}
    if host == "aarch64-windows-msvc":
        for k, var in (("include", "INCLUDE"), ("lib", "LIB")):
            if not out[k] and os.environ.get(var):
                out[k] = [p for p in os.environ[var].split(";") if p]
    return out


# --- running tools -----------------------------------------------------------------------------------

class ToolFailed(RuntimeError):
    pass


def run(cmd: str, env: dict | None = None, cwd=None, check: bool = True, label: str | None = None) -> subprocess.CompletedProcess:
    """Run a rendered command line as its argument list, without a shell (templates.argv), in this
    process's environment updated with `env`; a failure shows the command and its output. With
    `label`, a heartbeat line while it runs (the converter takes minutes on the full LLM)."""
    from ..progress import heartbeat
    from ..templates import argv
    with heartbeat(label, log) if label else contextlib.nullcontext():
        try:
            proc = subprocess.run(argv(cmd), env=dict(os.environ, **(env or {})), cwd=cwd, capture_output=True,
                                  text=True)
        except OSError as e:              # the program itself is missing or not executable
            raise ToolFailed(f"cannot run {argv(cmd)[0]}: {e.strerror}: {cmd}") from None
    if check and proc.returncode != 0:
        raise ToolFailed(f"command failed ({proc.returncode}): {cmd}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc


def missing_header(output: str) -> str | None:
    """The header clang reports missing (`fatal error: 'limits' file not found`), if any."""
    m = re.search(r"fatal error: '([^']+)' file not found", output)
    return m.group(1) if m else None


# --- names -------------------------------------------------------------------------------------------

def sanitize(name: str) -> str:
    """qnn-onnx-converter's tensor-name rule (2.25 ir_to_qnn.py::sanitize_name): every run of non-word
    characters becomes `_`, then `_` is prefixed unless the first character is a letter:
    `output.1` -> `output_1`, `/Concat_output_0` -> `__Concat_output_0`, `1a` -> `_1a`, `_x` -> `__x`."""
    s = re.sub(r"\W+", "_", name)
    return s if s[:1].isalpha() else "_" + s


def write_raw_inputs(feeds: dict, inputs: list[tuple[str, str, list[int]]], folder: Path,
                     prefix: str = "", all_float32: bool = False) -> tuple[list[tuple[str, str]], list[str]]:
    """One input-list line of headerless .raw files (qnn-net-run's and the converter quantizer's
    format): float inputs as float32, the others in their own dtype, in the graph's dims (the
    converter runs with `--preserve_io layout`). Returns ([(context tensor name, path)], [names of
    the integer inputs, for --native_input_tensor_names]). `all_float32`: integer inputs too (the
    converter's quantizer reads every file as float32 without --use_native_input_files)."""
    import numpy as np
    line, native = [], []
    for name, dtype, dims in inputs:
        is_float = all_float32 or np.issubdtype(np.dtype(dtype), np.floating)
        arr = np.asarray(feeds[name]).astype(np.float32 if is_float else np.dtype(dtype)).reshape(dims)
        path = (Path(folder) / f"{prefix}{sanitize(name)}.raw").resolve()
        arr.tofile(path)
        line.append((sanitize(name), path.as_posix()))
        if not is_float:
            native.append(sanitize(name))
    return line, native


def native_names_arg(graph: str, names: list[str]) -> str:
    """qnn-net-run --native_input_tensor_names: `graphName:t1,t2` (several graphs: `;`-separated)."""
    return f"{graph}:{','.join(names)}"


# --- objects and the C runtime ---------------------------------------------------------------------

def coff_directives(obj: Path) -> list[str]:
    """The linker directives (.drectve section) of a COFF object: /DEFAULTLIB:..., /EXPORT:..."""
    data = Path(obj).read_bytes()
    if len(data) < 20:
        return []
    _machine, nsections, _ts, _sym, _nsym, opt_size, _ch = struct.unpack_from("<HHIIIHH", data, 0)
    out = []
    for i in range(nsections):
        at = 20 + opt_size + 40 * i
        name, _vs, _va, size, ptr = struct.unpack_from("<8sIIII", data, at)
        if name.rstrip(b"\0") == b".drectve":
            text = data[ptr: ptr + size].decode("latin-1").strip("\0 ")
            out += re.findall(r'(?:"[^"]*"|\S)+', text)
    return out


STATIC_CRT = {"libcmt", "libcmtd", "libucrt", "libucrtd", "libvcruntime", "libvcruntimed"}
DLL_CRT = {"msvcrt", "msvcrtd", "ucrt", "ucrtd", "vcruntime", "vcruntimed"}


def _lib_key(name: str) -> str:
    return re.sub(r"\.lib$", "", name.strip('"').lower())


def check_crt(objects: list[str], libs: list[str], link_flags: list[str]) -> None:
    """The C runtime the objects ask for (/DEFAULTLIB directives: /MT -> libcmt, /MD -> msvcrt) must be
    the one on the link line: mixing the static CRT with msvcrt.lib (the DLL CRT's import library)
    gives duplicate or missing CRT symbols at link or load time."""
    linked = {_lib_key(x) for x in libs}
    ignored = {_lib_key(f.split(":", 1)[1]) for f in link_flags if f.upper().startswith("/NODEFAULTLIB:")}
    if any(f.upper() == "/NODEFAULTLIB" for f in link_flags):
        return
    for kind, crt, other in (("static CRT (/MT)", STATIC_CRT, DLL_CRT), ("DLL CRT (/MD)", DLL_CRT, STATIC_CRT)):
        if not linked & other:
            continue
        for o in objects:
            asked = {_lib_key(d.split(":", 1)[1]) for d in coff_directives(Path(o)) if d.upper().startswith("/DEFAULTLIB:")}
            clash = sorted((asked & crt) - ignored)
            if clash:
                raise ToolFailed(f"{o} asks for the {kind} ({', '.join(c + '.lib' for c in clash)}) but the link line "
                                 f"has {', '.join(sorted(x + '.lib' for x in linked & other))}: compile with the other "
                                 "/MT|/MD or change toolchain.link.libs")
