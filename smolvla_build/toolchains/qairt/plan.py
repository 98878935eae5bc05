"""What the qairt chain will use on this host, looked up once when the tasks are declared: the SDK's
tools (found or missing), the host compilers, the MSVC folders, the link line, and the fingerprints
of all of them for the tasks' up-to-date keys. Looking up never fails and runs no program (a tool's
fingerprint is its resolved file, not its `--version`): `doit list` and the other stages work on any
host, and the tasks that need a missing tool fail in one line (chain.check_tools)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .sdk import Sdk, missing_tool

SDK_TOOLS = ("qnn-onnx-converter", "qnn-model-lib-generator", "qnn-context-binary-generator",
             "qnn-context-binary-utility")
# toolchain.link.crt: the C runtime of the model DLL, its compile flag and link line (docs/qairt-sdk.md,
# "The model DLL's C runtime")
CRT_LINES = {
    # the card's: the DLL CRT, so the ARM64 VC++ runtime (vcruntime140.dll) must be where the DLL loads
    "md": {"flag": "/MD", "libs": ("msvcrt.lib", "kernel32.lib", "QnnHtp.lib"), "link_flags": ()},
    # the SDK's own CMake build (share/QNN/converter/CMakeLists.txt): the VC++ runtime linked in, the
    # UCRT of Windows itself, and no QnnHtp.lib (the backend is called through its interface table)
    "mt": {"flag": "/MT", "libs": ("libcmt.lib", "libvcruntime.lib", "ucrt.lib", "kernel32.lib"),
           "link_flags": ("/NODEFAULTLIB:libucrt.lib",)},
}


@dataclasses.dataclass(frozen=True)
class QairtSetup:
    sdk: Sdk
    python: str | None                  # toolchain.python (None: the one the SDK's converter modules link)
    sdk_tools: dict                     # {tool: its path, or its name when missing}
    missing: dict                       # {tool: the one line saying where it was looked for}
    host_tools: dict                    # clang, clang_cl, lld_link, clangxx (None where missing)
    msvc: dict                          # {include: [...], lib: [...]}
    link: dict                          # {crt, crt_flag, libpaths, libs, link_flags}
    fingerprint: dict                   # the SoC-independent part of every key: tools' files, SDK paths

    def missing_of(self, *tools: str) -> tuple[str, ...]:
        return tuple(self.missing[t] for t in tools if t in self.missing)


def file_fingerprint(path) -> str:
    """A tool's identity without running it: its resolved file, size and modification time."""
    if not path:
        return "missing"
    try:
        real = Path(path).resolve()
        st = real.stat()
        return f"{real} {st.st_size} {st.st_mtime_ns}"
    except OSError:
        return "missing"


def setup(sdk: Sdk, toolchain: dict, resolve, environ=None) -> QairtSetup:
    """`toolchain`: pipeline.yaml's toolchain section; `resolve(path)`: a path of the pipeline file
    made absolute."""
    from .compilers import host_tools, msvc_dirs
    from .python import converter_modules
    found = {t: sdk.find_tool(t) for t in SDK_TOOLS}
    missing = {t: missing_tool(sdk, t) for t, path in found.items() if path is None}
    tools = host_tools()
    msvc = msvc_dirs(toolchain.get("msvc") or {}, resolve, sdk.layout.windows, environ)
    user_link = toolchain.get("link") or {}
    crt_name = user_link.get("crt", "md")
    crt = CRT_LINES[crt_name]
    link = {"crt": crt_name, "crt_flag": crt["flag"],
            "libpaths": [str(sdk.device_lib)] + msvc["lib"] + [str(resolve(d)) for d in user_link.get("libpaths", [])],
            "libs": list(user_link.get("libs", crt["libs"])),
            "link_flags": list(crt["link_flags"]) + list(user_link.get("link_flags", []))}
    fingerprint = {"sdk_paths_env": sdk.env_paths(),
                   "compilers": {k: file_fingerprint(tools[k] if k != "clang_cl" else (tools[k] or [None])[0])
                                 for k in ("clang", "clang_cl", "lld_link", "clangxx")},
                   "converter_modules": [file_fingerprint(p) for p in converter_modules(sdk)]}
    return QairtSetup(sdk=sdk, python=toolchain.get("python"), sdk_tools={t: str(p or t) for t, p in found.items()},
                      missing=missing, host_tools=tools, msvc=msvc, link=link, fingerprint=fingerprint)
