"""`python -m smolvla_build doctor [--host H] [--json]`: what the qairt chain and the runtimes would
use on a host, each item OK or one line saying what is missing.

The SDK side (tools, libraries, environment) is a function of the SDK tree and the host name, so a
Windows layout is checked from Linux. What only this machine can answer (the converter's Python,
the compilers, the MSVC folders, onnxruntime-qnn, `runtime: auto`) is checked when `--host` is this
machine's, and otherwise said to be unchecked (docs/laptop.md).
"""

from __future__ import annotations

from pathlib import Path

from .. import ToolchainError, find_sdk
from .sdk import HOSTS, OPTIONAL_TOOLS, REQUIRED_TOOLS, missing_tool, version_matches

UNCHECKED = "not checked: the host is not this machine"


def onnxruntime_qnn_facts(htp_arch: int) -> dict:
    """The onnxruntime-qnn this Python imports (smolvla_runtime.host's probe): version, the library
    folder its loader chose and its kind (arm64ec / amd64 for the win_amd64 wheel's libs/, else the
    package folder), whether the V<arch> stub is there and whether a QNN device registered."""
    from importlib import metadata

    from smolvla_runtime.host import htp_stub_name, probe_onnxruntime_qnn
    found = probe_onnxruntime_qnn()
    if found.folder is None:
        return {"version": None, "library_folder": None, "problem": found.error}
    stub = found.folder / htp_stub_name(htp_arch)
    return {"version": metadata.version("onnxruntime-qnn"), "library_folder": str(found.folder),
            "kind": found.folder.name if found.folder.parent.name == "libs" else "package folder",
            "htp_stub": str(stub) if stub.is_file() else None, "device": found.device or found.error}


def report(pipe, host: str | None = None, environ=None) -> dict:
    from smolvla_runtime.host import choose_runtime, probe_onnxruntime_qnn, this_host

    from . import python as converter
    from .compilers import host_tools, missing_tools, msvc_dirs
    from .htp import htp_runtime_libs, missing_runtime_libs
    from .sdk import host_name, locate
    problems, notes = [], []
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
    htp_arch = pipe.soc.htp_arch
    out = {"host": host, "this_machine": on_this_machine, "sdk": {"root": None, "version": None},
           "tools": {}, "env": {}, "converter_python": None, "msvc": None, "compilers": None,
           "htp_runtime_libs": [], "onnxruntime_qnn": None, "runtime_auto": None}
    try:
        sdk = locate(pipe, host, environ)
    except ToolchainError as exc:
        problems.append(str(exc))
        sdk = None
    if sdk is not None:
        out["sdk"] = {"root": str(sdk.root), "version": sdk.version, "named_by": find_sdk(pipe, environ)[1]}
        want = pipe.toolchain["sdk_version"]
        if not version_matches(sdk.version, want):
            line = f"SDK version {sdk.version}, pipeline.yaml expects {want} (toolchain.sdk_version)"
            (problems if pipe.toolchain["on_version_mismatch"] == "error" else notes).append(line)
        for tool in REQUIRED_TOOLS + tuple(OPTIONAL_TOOLS):
            path = sdk.find_tool(tool)
            out["tools"][tool] = str(path) if path else None
            if path is None:
                line = missing_tool(sdk, tool)
                if tool in OPTIONAL_TOOLS:
                    needed = tool == "qnn-net-run" and pipe.section("evaluation")["runtime"] == "qnn-net-run"
                    (problems if needed else notes).append(f"{line}: {OPTIONAL_TOOLS[tool]}")
                else:
                    problems.append(line)
        out["env"] = sdk.env_paths()
        libs = htp_runtime_libs(sdk, htp_arch)
        out["htp_runtime_libs"] = [str(p) for p in libs.values() if p.is_file()]
        (problems if pipe.section("evaluation")["runtime"] == "qnn-net-run" else notes).extend(
            missing_runtime_libs(sdk, htp_arch))
        # what compile and link read from the SDK
        for need in (sdk.jni / "QnnModel.cpp", sdk.include, sdk.device_lib / "QnnHtp.lib"):
            if not need.exists():
                problems.append(f"{need.relative_to(sdk.root).as_posix()} is not in the SDK at {sdk.root}: the model DLL "
                                "cannot be built")
        req = converter.requirement(sdk, pipe.toolchain.get("python"))
        out["converter_python"] = {"needs": converter.describe(req, sdk), "module": req["module"], "path": None}
        if req["problem"]:
            problems.append(req["problem"].removeprefix("qairt: "))
        elif on_this_machine:
            try:
                out["converter_python"]["path"] = converter.converter_python(sdk, pipe.toolchain.get("python"))
            except ToolchainError as exc:
                problems.append(str(exc).removeprefix("qairt: "))
        else:
            out["converter_python"]["path"] = UNCHECKED
    if on_this_machine:
        tools = host_tools()
        out["compilers"] = {"clang-cl": tools["clang_cl"] and " ".join(tools["clang_cl"]), "lld-link": tools["lld_link"],
                            "clang++": tools["clangxx"], "clang": tools["clang"]}
        problems += missing_tools(tools, ("clang", "clang_cl", "lld_link") + (("clangxx",) if host == "x86_64-linux-clang" else ()))
        msvc = msvc_dirs(pipe.toolchain.get("msvc") or {}, pipe.resolve, HOSTS[host].windows, environ)
        out["msvc"] = msvc
        for k in ("include", "lib"):
            if not msvc[k]:
                problems.append(f"MSVC {k} folders: none set (toolchain.msvc.{k}"
                                + (", or the VS developer prompt's " + k.upper() if HOSTS[host].windows else "") + ")")
            problems += [f"MSVC {k} folder {d} does not exist (toolchain.msvc.{k})" for d in msvc[k] if not Path(d).is_dir()]
        ort = onnxruntime_qnn_facts(htp_arch)
        out["onnxruntime_qnn"] = ort
        if ort.get("problem"):
            notes.append(ort["problem"])
        runtime, reason = choose_runtime(this_host(), probe_onnxruntime_qnn, htp_arch)
        out["runtime_auto"] = {"runtime": runtime, "reason": reason}
    else:
        out["compilers"] = out["msvc"] = out["onnxruntime_qnn"] = UNCHECKED
        out["runtime_auto"] = {"runtime": None, "reason": UNCHECKED}
    out["problems"], out["notes"] = problems, notes
    return out


def render_text(r: dict) -> str:
    def item(ok: bool, name: str, value) -> str:
        return f"{'OK     ' if ok else 'MISSING'} {name}: {value}"
    lines = [f"host {r['host']}" + ("" if r["this_machine"] else " (simulated: checked against the SDK tree only)"),
             item(bool(r["sdk"]["root"]), "SDK", f"{r['sdk']['root']} ({r['sdk']['version']})")]
    lines += [item(bool(p), t, p or "not found") if p or t not in OPTIONAL_TOOLS else f"absent  {t} (see note)"
              for t, p in r["tools"].items()]
    lines += [f"        env {var}: {' | '.join(v)}" for var, v in r["env"].items()]
    if r["converter_python"]:
        lines.append(item(r["converter_python"]["path"] is not None, "converter Python",
                          f"{r['converter_python']['needs']}: {r['converter_python']['path'] or 'not found'}"))
    lines += [item(True, "HTP runtime library", p) for p in r["htp_runtime_libs"]]
    for key in ("compilers", "msvc", "onnxruntime_qnn"):
        value = r[key]
        if key == "onnxruntime_qnn":          # a stub only exists in the Windows wheels
            ok = value == UNCHECKED or bool(value.get("library_folder"))
        else:
            ok = value == UNCHECKED or all(v not in (None, []) for v in value.values())
        lines.append(item(ok, key, value))
    ra = r["runtime_auto"]
    lines.append(f"{'OK     ' if ra['runtime'] else 'unchecked'} runtime auto: "
                 + (f"{ra['runtime']}: {ra['reason']}" if ra["runtime"] else ra["reason"]))
    lines += [f"note    {n}" for n in r["notes"]]
    lines += [f"PROBLEM {p}" for p in r["problems"]]
    lines.append("the qairt chain can run" if not r["problems"] else f"{len(r['problems'])} problem(s): the qairt chain cannot run")
    return "\n".join(lines)
