"""`python -m smolvla_build doctor [--host H] [--pipeline FILE] [--json]`: what the qairt chain and
the runtimes would use on a host, each item OK or one line saying what is missing.

The SDK side (tools, libraries, the converter's compiled modules, the environment) is a function of
the SDK tree and the host name, so a Windows layout is checked from Linux. What only this machine
can answer (the converter's Python and its packages, the compilers, the MSVC libraries' machine,
the VC++ runtime, onnxruntime-qnn and its QNN device, `runtime: auto`) is checked when `--host` is
this machine's, and otherwise said to be unchecked (docs/laptop.md). Scoped by the pipeline: with a
pipeline whose toolchain is not qairt, what the qairt chain lacks is information, not a problem.
Every check and its public source: docs/qairt-sdk.md, "doctor".
"""

from __future__ import annotations

from pathlib import Path

from .. import ToolchainError, find_sdk
from .sdk import HOSTS, OPTIONAL_TOOLS, REQUIRED_TOOLS, WIN_ARM64, missing_tool, version_matches

UNCHECKED = "not checked: the host is not this machine"
# IMAGE_FILE_MACHINE_* of a COFF object or import member (winnt.h): what a .lib was built for
COFF_MACHINES = {0xAA64: "ARM64", 0xA641: "ARM64EC", 0xA64E: "ARM64X", 0x8664: "x64", 0x014C: "x86", 0x01C4: "ARM"}


def lib_machine(path: Path) -> str | None:
    """The machine of the first object or import member of a COFF archive (.lib), e.g. ARM64; None
    when the file is no archive or holds no member."""
    data = Path(path).read_bytes()
    if not data.startswith(b"!<arch>\n"):
        return None
    at = 8
    while at + 60 <= len(data):
        name, size = data[at:at + 16].decode("latin-1").strip(), int(data[at + 48:at + 58].decode("latin-1").strip() or 0)
        body = data[at + 60:at + 60 + size]
        at += 60 + size + (size & 1)
        if name in ("/", "//") or name.startswith("/<") or len(body) < 8:
            continue                                       # the linker and long-names members
        short_import = body[0:2] == b"\x00\x00" and body[2:4] == b"\xff\xff"
        machine = int.from_bytes(body[6:8] if short_import else body[0:2], "little")
        return COFF_MACHINES.get(machine, hex(machine))
    return None


def onnxruntime_qnn_facts(htp_arch: int) -> dict:
    """The onnxruntime-qnn this Python imports (smolvla_runtime.host's probe): version, the library
    folder its loader chose and its kind (arm64ec / amd64 for the win_amd64 wheel's libs/, else the
    package folder), whether the V<arch> stub is there and what QNN device registered (an NPU on the
    laptop; the HTP emulator on x86 registers as a CPU device)."""
    from importlib import metadata

    from smolvla_runtime.host import htp_stub_name, probe_onnxruntime_qnn
    found = probe_onnxruntime_qnn()
    if found.folder is None:
        return {"version": None, "library_folder": None, "problem": found.error}
    stub = found.folder / htp_stub_name(htp_arch)
    device, npu = found.error, False
    if found.device:
        from smolvla_runtime.htp import register
        devices = register()
        device = ", ".join(f"{d.device.type.name} ({d.device.vendor})" for d in devices)
        npu = any(d.device.type.name == "NPU" for d in devices)
    return {"version": metadata.version("onnxruntime-qnn"), "library_folder": str(found.folder),
            "kind": found.folder.name if found.folder.parent.name == "libs" else "package folder",
            "htp_stub": str(stub) if stub.is_file() else None, "device": device, "npu": npu}


def vc_runtime(environ=None) -> str | None:
    """Where the VC++ runtime a /MD DLL loads (vcruntime140.dll) is, on a Windows host; None if not found."""
    import ctypes.util
    import os
    environ = os.environ if environ is None else environ
    system = Path(environ.get("SystemRoot", r"C:\Windows")) / "System32" / "vcruntime140.dll"
    return str(system) if system.is_file() else ctypes.util.find_library("vcruntime140")


def report(pipe, host: str | None = None, environ=None) -> dict:
    from smolvla_runtime.host import choose_runtime, probe_onnxruntime_qnn, this_host

    from .. import select_toolchain
    from . import python as converter
    from .compilers import host_tools, missing_tools, msvc_dirs
    from .htp import htp_runtime_libs, missing_runtime_libs
    from .plan import CRT_LINES
    from .sdk import host_name, locate
    problems, notes = [], []
    try:
        toolchain = select_toolchain(pipe)
    except ToolchainError:                 # toolchain.kind qairt without an SDK: the SDK check says so
        toolchain = "qairt"
    chain = problems if toolchain == "qairt" else notes      # what the qairt chain lacks
    here = None
    try:
        here = host_name("auto")
    except ToolchainError:
        pass
    host = host or pipe.toolchain.get("host", "auto")
    host = here if host == "auto" else host
    if host is None:
        raise ToolchainError(f"doctor: this machine is no QAIRT host ({this_host().describe()}): "
                             f"name one with --host ({', '.join(HOSTS)})")
    on_this_machine = host == here
    windows = HOSTS[host].windows
    htp_arch = pipe.soc.htp_arch
    out = {"host": host, "this_machine": on_this_machine, "toolchain": toolchain,
           "sdk": {"root": None, "version": None}, "tools": {}, "env": {}, "converter_python": None,
           "sdk_files": {}, "msvc": None, "compilers": None, "htp_runtime_libs": [], "onnxruntime_qnn": None,
           "runtime_auto": None}
    try:
        sdk = locate(pipe, host, environ)
    except ToolchainError as exc:
        chain.append(str(exc))
        sdk = None
    if sdk is not None:
        out["sdk"] = {"root": str(sdk.root), "version": sdk.version, "named_by": find_sdk(pipe, environ)[1]}
        want = pipe.toolchain["sdk_version"]
        if not version_matches(sdk.version, want):
            line = f"SDK version {sdk.version}, pipeline.yaml expects {want} (toolchain.sdk_version)"
            (chain if pipe.toolchain["on_version_mismatch"] == "error" else notes).append(line)
        for tool in REQUIRED_TOOLS + tuple(OPTIONAL_TOOLS):
            path = sdk.find_tool(tool)
            out["tools"][tool] = str(path) if path else None
            if path is None:
                line = missing_tool(sdk, tool)
                if tool in OPTIONAL_TOOLS:
                    needed = tool == "qnn-net-run" and pipe.section("evaluation")["runtime"] == "qnn-net-run"
                    (chain if needed else notes).append(f"{line}: {OPTIONAL_TOOLS[tool]}")
                else:
                    chain.append(line)
        out["env"] = sdk.env_paths()
        libs = htp_runtime_libs(sdk, htp_arch)
        out["htp_runtime_libs"] = [str(p) for p in libs.values() if p.is_file()]
        (chain if pipe.section("evaluation")["runtime"] == "qnn-net-run" else notes).extend(
            missing_runtime_libs(sdk, htp_arch))
        # what compile, link and the context generator read from the SDK
        prepare = sdk.lib / ("QnnHtpPrepare.dll" if windows else "libHtpPrepare.so")
        needs = {"jni/QnnModel.cpp": sdk.jni / "QnnModel.cpp", "include/QNN": sdk.include,
                 "QnnHtp.lib": sdk.device_lib / "QnnHtp.lib", prepare.name: prepare}
        libgen = sdk.find_tool("qnn-model-lib-generator")
        if windows and libgen is not None:      # 2.25's generator stops without it beside itself
            needs["object-generator.exe"] = libgen.parent / "object-generator.exe"
        # Qualcomm's NPU test runs on the laptop itself (ARM64 Windows); other hosts have no NPU to test
        validator = sdk.root / "bin" / "aarch64-windows-msvc" / "qnn-platform-validator.exe" if windows else None
        out["sdk_files"] = {name: str(p) if p.exists() else None
                            for name, p in {**needs, **({"qnn-platform-validator": validator} if validator else {})}.items()}
        for name, p in needs.items():
            if not p.exists():
                chain.append(f"{p.relative_to(sdk.root).as_posix()} is not in the SDK at {sdk.root}: "
                             + ("the context generator finalizes graphs with it" if name == prepare.name else
                                "qnn-model-lib-generator stops without it beside itself" if name.startswith("object")
                                else "the model DLL cannot be built"))
        if validator is not None and not validator.exists():
            notes.append(f"{validator.relative_to(sdk.root).as_posix()} is not in the SDK: no way to test the NPU "
                         "with Qualcomm's validator (onnxruntime-qnn's device check below still applies)")
        req = converter.requirement(sdk, pipe.toolchain.get("python"))
        out["converter_python"] = {"needs": converter.describe(req, sdk), "modules": req["modules"], "path": None,
                                   "packages": None}
        if req["problem"]:
            chain.append(req["problem"].removeprefix("qairt: "))
        elif on_this_machine:
            try:
                python = converter.converter_python(sdk, pipe.toolchain.get("python"))
                out["converter_python"]["path"] = python
                packages, missing, more = converter.converter_packages(sdk, python)
                out["converter_python"]["packages"] = packages
                chain.extend(missing)
                notes.extend(more)
            except ToolchainError as exc:
                chain.append(str(exc).removeprefix("qairt: "))
        else:
            out["converter_python"]["path"] = UNCHECKED
    link = pipe.toolchain.get("link") or {}
    crt = link.get("crt", "md")
    libs = list(link.get("libs", CRT_LINES[crt]["libs"]))
    out["link"] = {"crt": crt, "libs": libs, "flags": list(CRT_LINES[crt]["link_flags"]) + list(link.get("link_flags", [])),
                   "runtime": "the VC++ runtime as a DLL (/MD): vcruntime140.dll must be installed wherever the DLL "
                              "loads" if crt == "md" else "the VC++ runtime linked in (/MT), the UCRT of Windows itself"}
    if on_this_machine:
        tools = host_tools()
        out["compilers"] = {"clang-cl": tools["clang_cl"] and " ".join(tools["clang_cl"]), "lld-link": tools["lld_link"],
                            "clang++": tools["clangxx"], "clang": tools["clang"]}
        chain.extend(missing_tools(tools, ("clang", "clang_cl", "lld_link") + (("clangxx",) if not windows else ())))
        msvc = msvc_dirs(pipe.toolchain.get("msvc") or {}, pipe.resolve, windows, environ)
        out["msvc"] = dict(msvc, machines={})
        for k in ("include", "lib"):
            if not msvc[k]:
                chain.append(f"MSVC {k} folders: none set (toolchain.msvc.{k}"
                             + (", or the VS developer prompt's " + k.upper() if windows else "") + ")")
            chain.extend(f"MSVC {k} folder {d} does not exist (toolchain.msvc.{k})" for d in msvc[k] if not Path(d).is_dir())
        for name in (CRT_LINES[crt]["libs"][0], "kernel32.lib"):   # a developer prompt targets x86 or x64 unless told otherwise
            found = next((Path(d) / name for d in msvc["lib"] if (Path(d) / name).is_file()), None)
            if found is None:
                continue
            machine = lib_machine(found)
            out["msvc"]["machines"][name] = machine
            if machine != "ARM64":
                chain.append(f"{found} is a {machine or 'non-COFF'} library, the model DLL links ARM64 ones: point "
                             "toolchain.msvc.lib (or the developer prompt, `vcvarsall.bat x64_arm64`) at the ARM64 folders")
        if windows and crt == "md":
            where = vc_runtime(environ)
            out["link"]["vc_runtime"] = where
            if where is None:
                chain.append("vcruntime140.dll not found: the model DLL (/MD) needs the ARM64 VC++ runtime "
                             "(Microsoft's vc_redist.arm64.exe), or link the VC++ runtime in (toolchain.link.crt: mt)")
        ort = onnxruntime_qnn_facts(htp_arch)
        out["onnxruntime_qnn"] = ort
        if ort.get("problem"):
            notes.append(ort["problem"])
        if host == WIN_ARM64 and not ort.get("npu"):            # the laptop itself: is its NPU reachable?
            line = ("onnxruntime-qnn registered no NPU on this machine: the HTP runtimes cannot reach the Hexagon NPU "
                    "(Qualcomm's own check: bin/aarch64-windows-msvc/qnn-platform-validator.exe --backend dsp "
                    "--testBackend; docs/laptop.md)")
            (problems if pipe.section("evaluation")["runtime"] in ("ort-qnn", "qnn-net-run") else notes).append(line)
        runtime, reason = choose_runtime(this_host(), probe_onnxruntime_qnn, htp_arch)
        out["runtime_auto"] = {"runtime": runtime, "reason": reason}
    else:
        out["compilers"] = out["msvc"] = out["onnxruntime_qnn"] = UNCHECKED
        out["runtime_auto"] = {"runtime": None, "reason": UNCHECKED}
    out["problems"], out["notes"] = problems, notes
    return out


def render_text(r: dict) -> str:
    """The report as lines a person reads: `OK`, `MISSING` or `unchecked` per item, the notes, the
    problems, and the verdict."""
    absent = "MISSING" if r["toolchain"] == "qairt" else "absent "      # information for other toolchains

    def item(ok, name: str, value) -> str:
        return f"{'unchecked' if ok is None else 'OK     ' if ok else absent} {name}: {value}"
    where = "this machine" if r["this_machine"] else "simulated: checked against the SDK tree only"
    lines = [f"host {r['host']} ({where}); the pipeline's toolchain: {r['toolchain']}"]
    sdk = r["sdk"]
    lines.append(item(bool(sdk["root"]), "QAIRT SDK", f"{sdk['root']}, version {sdk['version']} (named by {sdk['named_by']})"
                      if sdk["root"] else "not found (toolchain.sdk_root, QAIRT_SDK_ROOT, QNN_SDK_ROOT)"))
    for t, p in r["tools"].items():
        lines.append(item(bool(p), t, p or ("absent (see the notes)" if t in OPTIONAL_TOOLS else "absent")))
    lines += [f"        the chain's {var}: {' | '.join(v)}" for var, v in r["env"].items()]
    for name, p in r["sdk_files"].items():
        lines.append(item(bool(p), name, p or "absent"))
    cp = r["converter_python"]
    if cp:
        path = cp["path"]
        lines.append(item(None if path == UNCHECKED else bool(path), "converter Python",
                          f"{cp['needs']} (the modules {', '.join(cp['modules']) or 'none'}): {path or 'not found'}"))
        if cp.get("packages"):
            pk = cp["packages"]
            lines.append(f"        its packages: numpy {pk.get('numpy') or 'absent'}, onnx {pk.get('onnx') or 'absent'} "
                         f"({'with' if pk.get('onnx.mapping') else 'without'} onnx.mapping)")
    lines += [item(True, "HTP runtime library", p) for p in r["htp_runtime_libs"]]
    lines.append(item(True, "link", f"crt {r['link']['crt']}: {' '.join(r['link']['libs'] + r['link']['flags'])}; "
                      f"{r['link']['runtime']}"
                      + (f"; VC++ runtime {r['link']['vc_runtime']}" if r["link"].get("vc_runtime") else "")))
    if r["compilers"] == UNCHECKED:
        lines.append(item(None, "compilers, MSVC folders, onnxruntime-qnn", UNCHECKED))
    else:
        lines += [item(bool(v), k, v or "not found") for k, v in r["compilers"].items()]
        for k in ("include", "lib"):
            lines.append(item(bool(r["msvc"][k]), f"MSVC {k} folders", " | ".join(r["msvc"][k]) or "none set"))
        lines += [item(m == "ARM64", f"MSVC {name}", f"{m} library") for name, m in r["msvc"]["machines"].items()]
        ort = r["onnxruntime_qnn"]
        if ort.get("library_folder"):
            lines.append(item(True, "onnxruntime-qnn", f"{ort['version']}, libraries from {ort['library_folder']} "
                              f"({ort['kind']}), V-stub {ort['htp_stub'] or 'absent'}, QNN device: {ort['device']}"))
        else:
            lines.append(item(False, "onnxruntime-qnn", ort.get("problem")))
    ra = r["runtime_auto"]
    lines.append(item(None if ra["runtime"] is None else True, "runtime auto",
                      f"{ra['runtime']}: {ra['reason']}" if ra["runtime"] else ra["reason"]))
    lines += [f"note    {n}" for n in r["notes"]]
    lines += [f"PROBLEM {p}" for p in r["problems"]]
    if r["toolchain"] != "qairt":
        lines.append(f"the pipeline builds with {r['toolchain']}: what the qairt chain lacks is noted, not a problem"
                     + ("" if not r["problems"] else f"; {len(r['problems'])} problem(s)"))
    else:
        lines.append("the qairt chain can run" if not r["problems"] else
                     f"{len(r['problems'])} problem(s): the qairt chain cannot run")
    return "\n".join(lines)
