"""The host compilers of the ARM64 model DLL (clang-cl, lld-link, clang, clang++), the MSVC STL/CRT
and Windows SDK folders they need, and the C-runtime check of the link (docs/qairt-sdk.md, "The
model DLL"). Looking tools up never fails: task generation and `doctor` record what is missing, and
the tasks that run a tool fail with one line (`require`)."""

from __future__ import annotations

import os
import re
import shutil
import struct
from pathlib import Path

from .. import ToolchainError
from .run import ToolFailed

TARGET = "aarch64-pc-windows-msvc"
INSTALL_HINT = {"clang": "LLVM's clang (Debian: apt-get install clang-16)",
                "clang_cl": "LLVM's clang-cl (Debian: apt-get install clang-16)",
                "lld_link": "LLVM's lld-link (Debian: apt-get install lld-16)",
                "clangxx": "LLVM's clang++ (Debian: apt-get install clang-16)"}


def _find(*names):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


def host_tools() -> dict:
    """clang-cl / lld-link / clang / clang++ on PATH (Debian's -16 names or plain names); None where
    missing. clang-cl falls back to clang in cl mode."""
    clang = _find("clang-16", "clang")
    clang_cl = _find("clang-cl-16", "clang-cl")
    return {"clang": clang, "clang_cl": [clang_cl] if clang_cl else ([clang, "--driver-mode=cl"] if clang else None),
            "lld_link": _find("lld-link-16", "lld-link"), "clangxx": _find("clang++-16", "clang++")}


def missing_tools(tools: dict, names=("clang", "clang_cl", "lld_link")) -> list[str]:
    return [f"{n.replace('_', '-')} not found: install {INSTALL_HINT[n]}" for n in names if not tools.get(n)]


def require(tools: dict, *names: str) -> None:
    problems = missing_tools(tools, names)
    if problems:
        raise ToolchainError("qairt: " + "; ".join(problems))


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


def msvc_dirs(configured: dict, resolve, host_is_windows: bool, environ=None) -> dict:
    """The MSVC STL / CRT and Windows SDK folders for the cross-compile (toolchain.msvc, `configured`;
    `resolve` makes its paths absolute), else, on a Windows host, the Visual Studio developer
    environment's INCLUDE and LIB."""
    environ = os.environ if environ is None else environ
    out = {k: [str(resolve(p)) for p in configured.get(k, [])] for k in ("include", "lib")}
    if host_is_windows:
        for k, var in (("include", "INCLUDE"), ("lib", "LIB")):
            if not out[k] and environ.get(var):
                out[k] = [p for p in environ[var].split(";") if p]
    return out


def missing_header(output: str) -> str | None:
    """The header clang reports missing (`fatal error: 'limits' file not found`), if any."""
    m = re.search(r"fatal error: '([^']+)' file not found", output)
    return m.group(1) if m else None


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


# Each part of the MSVC C runtime comes static or as a DLL import library; within a part, the two must
# not meet at the link (duplicate or missing symbols). The parts may differ: the SDK's own build links
# the VC++ startup and runtime statically and the UCRT as a DLL (docs/qairt-sdk.md, "The model DLL's C
# runtime"). (part, its static libraries, its DLL import libraries)
CRT_PARTS = (("the VC++ runtime", {"libcmt", "libcmtd", "libvcruntime", "libvcruntimed"},
              {"msvcrt", "msvcrtd", "vcruntime", "vcruntimed"}),
             ("the UCRT", {"libucrt", "libucrtd"}, {"ucrt", "ucrtd"}))


def _lib_key(name: str) -> str:
    return re.sub(r"\.lib$", "", name.strip('"').lower())


def check_crt(objects: list[str], libs: list[str], link_flags: list[str]) -> None:
    """The C runtime the objects ask for (/DEFAULTLIB directives: /MT -> libcmt, /MD -> msvcrt) must be
    the one on the link line, part by part: an object asking for the static VC++ runtime with
    msvcrt.lib (its DLL import library) on the line, or the reverse, is refused."""
    linked = {_lib_key(x) for x in libs}
    ignored = {_lib_key(f.split(":", 1)[1]) for f in link_flags if f.upper().startswith("/NODEFAULTLIB:")}
    if any(f.upper() == "/NODEFAULTLIB" for f in link_flags):
        return
    asked = {o: {_lib_key(d.split(":", 1)[1]) for d in coff_directives(Path(o)) if d.upper().startswith("/DEFAULTLIB:")}
             for o in objects}
    for part, static, dll in CRT_PARTS:
        for kind, wanted, other in (("static", static, dll), ("DLL", dll, static)):
            if not linked & other:
                continue
            for o in objects:
                clash = sorted((asked[o] & wanted) - ignored)
                if clash:
                    flag = "/MT" if kind == "static" else "/MD"
                    raise ToolFailed(f"{o} asks for {part} as a {kind} library ({flag}: {', '.join(c + '.lib' for c in clash)}) "
                                     f"but the link line has {', '.join(sorted(x + '.lib' for x in linked & other))}: "
                                     "compile with the other /MT|/MD, or set toolchain.link.crt (md|mt) or toolchain.link.libs")
