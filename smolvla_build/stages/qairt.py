"""qairt: the QAIRT SDK chain per model x precision (convert, compile, link, hostlib, context).

Every tool runs in its own staging folder under artifacts (`QairtPaths.staging(task)`), emptied
before the run, so whatever a tool leaves in its working directory (the lib generator's tmp_<N>, a
half-written output of a failed run) stays there and is never moved into place.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ..templates import render, render_command, template_digest
from .keys import code_digest, uptodate

FAMILY = "qairt"
BASENAMES = ["convert", "compile", "link", "hostlib", "context"]   # the task names this family yields
log = logging.getLogger("smolvla_build.qairt")
JNI_SOURCES = ("QnnModel.cpp", "QnnWrapperUtils.cpp", "windows/QnnModelPal.cpp")
DEFAULT_LIBS = ["msvcrt.lib", "kernel32.lib", "QnnHtp.lib"]        # the card's link line (DLL CRT, /MD)
CONVERTER_PATCH = Path(__file__).resolve().parents[1] / "toolchains" / "converter_patch.py"


def enabled(pipe, toolchain) -> bool:
    return toolchain == "qairt"


def label(staging: str | Path) -> str:
    """`convert action_head-fp16` from .../qairt/<precision>/<model>/.staging/<task>."""
    p = Path(staging)
    return f"{p.name} {p.parents[1].name}-{p.parents[2].name}"


def fresh(folder: str | Path) -> Path:
    """An empty staging folder: what a failed earlier run left there is gone."""
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


# --- actions -----------------------------------------------------------------------------------

def run_convert(cmd: str, sdk_env: dict, staging: str, outputs: dict, calibration: dict | None = None):
    """`calibration` (an integer precision): {npz, model, input_list}; its samples are written as the
    quantizer's .raw files and input list in the staging folder first."""
    from ..toolchains.qairt import run
    staging = fresh(staging)
    if calibration:
        from ..calibration import CalibrationSet
        from ..runtime.contexts import graph_io
        from ..templates import render
        inputs, _ = graph_io(calibration["model"])
        raw_dir = staging / "calibration"
        if any(c.isspace() for c in str(raw_dir.resolve())):
            # input-list entries are space-separated: the files go where their paths have no spaces
            raw_dir = Path(tempfile.mkdtemp(prefix="smolvla-calibration-"))
            if any(c.isspace() for c in str(raw_dir)):
                raise RuntimeError(f"the converter's input list cannot hold paths with spaces: {staging} and the "
                                   f"temp folder {raw_dir} both have one (set TMPDIR to a folder without spaces)")
        lines = CalibrationSet(calibration["npz"]).write_raw(raw_dir, inputs)
        Path(calibration["input_list"]).write_text(render("qairt/input_list.txt.j2", lines=lines))
        log.info("%s: %d calibration samples as .raw files in %s", label(staging), len(lines), raw_dir)
    log.info("%s: qnn-onnx-converter ...", label(staging))
    try:
        run(cmd, env=sdk_env, cwd=staging, label=label(staging))
    finally:
        if calibration and raw_dir.parent != staging:
            shutil.rmtree(raw_dir, ignore_errors=True)
    for src, dst in outputs.items():      # model.bin is absent when the graph has no weights
        if (staging / src).is_file():
            os.replace(staging / src, dst)
        elif Path(dst).suffix == ".bin" and Path(dst).exists():
            os.unlink(dst)                # a stale weight archive of an earlier graph
        elif Path(dst).suffix != ".bin":
            raise RuntimeError(f"qnn-onnx-converter wrote no {staging / src}")
    shutil.rmtree(staging, ignore_errors=True)
    return True


def assemble_weight_objects(bin_path: Path, obj: Path, tools: dict) -> list[str]:
    """Linux host: one COFF object for all raw tensors of model.bin, assembled by clang (.incbin)."""
    import re
    import tarfile

    from ..toolchains.qairt import TARGET, run
    (obj / "binary").mkdir(parents=True)
    weights = []
    with tarfile.open(bin_path) as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.endswith(".raw"):
                continue
            name = Path(member.name).stem     # already sanitized by the converter; objcopy-style symbol
            if not re.fullmatch(r"\w+", name):
                raise RuntimeError(f"{bin_path}: member {member.name!r} is not a sanitized tensor name")
            raw = obj / "binary" / f"{name}.raw"
            with tar.extractfile(member) as src, open(raw, "wb") as dst:
                shutil.copyfileobj(src, dst)
            weights.append({"name": name, "raw": raw.as_posix()})
    if not weights:
        return []
    asm = obj / "binary" / "weights.S"
    asm.write_text(render("qairt/weights_asm.S.j2", weights=weights, target=TARGET))
    o = obj / "weights.o"
    run(render_command("qairt/clang_weights.j2", clang=tools["clang"], target=TARGET, asm=asm, obj=o))
    shutil.rmtree(obj / "binary")        # a second copy of every weight
    return [str(o)]


def libgen_weight_objects(cmd: str, sdk_env: dict, staging: Path, obj: Path) -> list[str]:
    """Windows ARM64 host: the SDK's qnn-model-lib-generator -t windows-aarch64 (`cmd`, run in its
    staging folder) builds in ./tmp_<N> and leaves the weight objects (object-generator.exe) in
    tmp_<N>/obj/windows-aarch64, as the card's build uses them. Its own CMake build of the DLL often
    fails without the VS ClangCL toolset (qnn.md section 3): only a warning when the objects were made."""
    from ..toolchains.qairt import run
    work = fresh(staging)
    proc = run(cmd, env=sdk_env, cwd=work, check=False)
    made = sorted(work.glob("tmp_*/obj/windows-aarch64/*.o"))
    if not made:
        raise RuntimeError(f"qnn-model-lib-generator left no weight objects under {work}/tmp_*/obj/windows-aarch64 "
                           f"(exit {proc.returncode}): {cmd}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    if proc.returncode != 0:
        last = ((proc.stderr or proc.stdout).strip().splitlines() or [""])[-1]
        log.warning("qnn-model-lib-generator exited %d after making the weight objects (its own DLL build is not "
                    "used): %s", proc.returncode, last)
    (obj / "weights").mkdir()
    objects = []
    for o in made:
        dst = obj / "weights" / o.name
        shutil.copyfile(o, dst)
        objects.append(str(dst))
    shutil.rmtree(work)            # the staging tree holds another copy of model.bin
    return objects


def run_compile(p: dict, sdk: dict, tools: dict, msvc: dict, libgen_cmd: str | None, sdk_env: dict):
    """Weight objects from model.bin (the SDK's lib generator when the host has `libgen_cmd`, else
    clang), then the four C++ sources with clang-cl against the MSVC STL and Windows SDK headers."""
    import hashlib

    from doit.exceptions import TaskFailed

    from ..fsutil import write_json
    from ..toolchains.qairt import TARGET, ToolFailed, missing_header, run
    obj = fresh(p["obj"])
    objects = []
    if Path(p["bin"]).is_file():            # absent when the graph has no weights
        objects += (libgen_weight_objects(libgen_cmd, sdk_env, Path(p["staging_libgen"]), obj) if libgen_cmd
                    else assemble_weight_objects(Path(p["bin"]), obj, tools))
    staged = obj / "src"
    staged.mkdir()
    shutil.copyfile(p["cpp"], staged / "QnnNetworkModel.cpp")   # the card's name for the converter output
    sources = [Path(sdk["jni"]) / s for s in JNI_SOURCES] + [staged / "QnnNetworkModel.cpp"]
    for src in sources:
        o = obj / (src.stem + ".o")
        cmd = render_command("qairt/clang_cl_compile.j2", clang_cl=tools["clang_cl"], target=TARGET, jni=sdk["jni"],
                             include=sdk["include"], msvc_include=msvc["include"], source=src, obj=o)
        try:
            run(cmd)
        except ToolFailed as exc:
            header = missing_header(str(exc))
            if header:
                where = ", ".join(msvc["include"]) or "none set"
                return TaskFailed(f"clang-cl: {src.name} needs <{header}>, which is in the MSVC and Windows SDK "
                                  f"headers: set toolchain.msvc.include to their folders (now: {where}); "
                                  "the README says where to get them for a Linux cross-build")
            raise
        objects.append(str(o))
    # content hashes: the link reruns when an object changes, not only when the list does
    write_json(p["manifest"], {"objects": objects,
                               "sha256": {o: hashlib.sha256(Path(o).read_bytes()).hexdigest() for o in objects}})
    return True


def run_link(p: dict, tools: dict, link: dict):
    from doit.exceptions import TaskFailed

    from ..fsutil import atomic_path
    from ..toolchains.qairt import ToolFailed, check_crt, run
    objects = json.loads(Path(p["manifest"]).read_text())["objects"]
    try:
        check_crt(objects, link["libs"], link["link_flags"])
    except ToolFailed as exc:
        return TaskFailed(f"lld-link: {exc}")
    missing = [lib for lib in link["libs"] if not any((Path(d) / lib).is_file() for d in link["libpaths"])
               and not Path(lib).is_file()]
    if missing:
        return TaskFailed(f"lld-link: {', '.join(missing)} not found in {link['libpaths']}: set toolchain.msvc.lib to "
                          "the MSVC CRT and Windows SDK library folders for ARM64 (README: cross-building on Linux)")
    with atomic_path(p["dll"], suffix=".dll") as tmp:
        run(render_command("qairt/lld_link.j2", lld_link=tools["lld_link"], dll=tmp, objects=objects, **link))
    return True


def run_hostlib(cmd: str, sdk_env: dict, staging: str, produced: str, target: str, shim_dir: str, clangxx: str | None):
    from ..toolchains.qairt import compiler_shim, run
    shim = compiler_shim(Path(shim_dir), clangxx)
    staging = fresh(staging)
    run(cmd, env=dict(sdk_env, PATH=os.pathsep.join([str(shim), os.environ.get("PATH", "")])), cwd=staging,
        label=label(staging))
    src = staging / produced
    if not src.is_file():
        raise RuntimeError(f"qnn-model-lib-generator wrote no {src}: {cmd}")
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, target)
    shutil.rmtree(staging, ignore_errors=True)
    return True


def run_context(p: dict, backend_ext_text: str, htp_config_text: str, ctx_cmd: str, info_cmd: str, sdk_env: dict,
                staging: str, sdk_version: str, model: str, precision: str):
    import time

    from ..fsutil import write_json, write_text
    from ..toolchains.epcontext import context_graph, wrap_context_binary
    from ..toolchains.qairt import run
    from ..toolchains.rss import peak_rss_mb
    t0 = time.time()
    write_text(p["backend_ext"], backend_ext_text)
    write_text(p["htp_config"], htp_config_text)
    staging = fresh(staging)
    out, info = Path(p["serialized"]), Path(p["binary_info"])
    log.info("context %s-%s: qnn-context-binary-generator ...", model, precision)
    run(ctx_cmd, env=sdk_env, cwd=staging, label=label(staging))
    produced = staging / out.name
    if not produced.is_file():
        raise RuntimeError(f"qnn-context-binary-generator wrote no {produced}: {ctx_cmd}")
    run(info_cmd, env=sdk_env, cwd=staging)       # what the binary says it holds
    graph, inputs, outputs = context_graph(staging / info.name, Path(p["net_json"]))
    os.replace(produced, out)
    os.replace(staging / info.name, info)
    # the EPContext wrapper lets onnxruntime-qnn load this context; node named after the binary's graph
    wrap_context_binary(out, Path(p["ctx_onnx"]), graph, inputs, outputs, sdk_version)
    write_json(p["context_info"], {"model": model, "precision": precision, "toolchain": "qairt", "graph": graph,
                                   "context_bytes": out.stat().st_size, "seconds": round(time.time() - t0, 3),
                                   "peak_rss_mb": peak_rss_mb()})
    shutil.rmtree(staging, ignore_errors=True)
    log.info("context %s-%s: graph %s, %.1f MB", model, precision, graph, out.stat().st_size / 1e6)
    return True


# --- task generation ---------------------------------------------------------------------------

def gen_tasks(pipe, layout, toolchain):
    from ..toolchains.qairt import HOSTS, converter_python, discover, host_tools, msvc_dirs, tool_versions
    sdk = discover(pipe)
    host = HOSTS[sdk.host]
    tools = host_tools()
    python = converter_python(sdk, pipe.toolchain.get("python"))
    fp = {"sdk_version": sdk.version, "sdk_host": sdk.host, "soc": dict(pipe.soc), "python": python,
          **tool_versions(tools)}
    sdk_env = {k: v for k, v in sdk.env().items() if k in ("PYTHONPATH", "LD_LIBRARY_PATH", "QNN_SDK_ROOT")}
    sdk_paths = {"jni": str(sdk.jni), "include": str(sdk.include)}
    msvc = msvc_dirs(pipe, sdk.host)
    user_link = pipe.toolchain.get("link") or {}
    link = {"libpaths": [str(sdk.device_lib)] + msvc["lib"] + [str(pipe.resolve(d)) for d in user_link.get("libpaths", [])],
            "libs": list(user_link.get("libs", DEFAULT_LIBS)), "link_flags": list(user_link.get("link_flags", []))}
    code = code_digest("stages/qairt.py", "toolchains/qairt.py", "toolchains/converter_patch.py",
                       "toolchains/epcontext.py")
    for m in pipe.models:
        for pname, precision in pipe.precisions.items():
            p = layout.qairt(m, pname)
            conv = precision["converter"]
            name = f"{m}-{pname}"
            quantization = precision.get("quantization")
            calibration, cal_deps = None, []
            if quantization:       # the converter's own quantizer, on the recorded calibration set
                n = quantization["calibration"]["samples"]
                calibration = {"npz": str(layout.calibration_set(n, m)), "model": str(layout.preprocessed(m)),
                               "input_list": str(p.staging("convert") / "input_list.txt")}
                cal_deps = [calibration["npz"], str(layout.calibration_info(n))]
            convert_cmd = render_command(
                "qairt/converter.j2", python=python, converter=sdk.tool("qnn-onnx-converter"),
                patch=CONVERTER_PATCH if conv.get("disable_matmul_to_fc", False) else None, onnx=layout.preprocessed(m),
                cpp=p.staging("convert") / p.cpp.name, float_bitwidth=conv.get("float_bitwidth"),
                float_bias_bitwidth=conv["float_bias_bitwidth"], extra_args=conv["extra_args"],
                quantization=quantization, input_list=calibration and calibration["input_list"])
            yield {"basename": "convert", "name": name, "doc": f"qnn-onnx-converter: {m} -> C++/bin ({pname})",
                   "actions": [(run_convert, [], {"cmd": convert_cmd, "sdk_env": sdk_env, "staging": str(p.staging("convert")),
                                                  "outputs": {p.cpp.name: str(p.cpp), p.bin.name: str(p.bin),
                                                              p.net_json.name: str(p.net_json)},
                                                  "calibration": calibration})],
                   "file_dep": [str(layout.preprocessed(m))] + cal_deps, "targets": [str(p.cpp), str(p.net_json)],
                   "uptodate": uptodate({"cmd": convert_cmd, "template": template_digest("qairt/converter.j2"),
                                         "tools": fp, "code": code}), "clean": True}
            paths = {k: str(v) for k, v in vars(p).items() if isinstance(v, Path)}
            paths["staging_libgen"] = str(p.staging("libgen"))
            libgen_cmd = None
            if host["weights"] == "libgen":
                libgen_cmd = render_command("qairt/model_lib_generator.j2", python=python,
                                            libgen=sdk.tool("qnn-model-lib-generator"), cpp=p.cpp, bin=p.bin,
                                            target="windows-aarch64", name=m, outdir=p.staging("libgen") / "lib")
            yield {"basename": "compile", "name": name, "doc": f"clang-cl: {m} model library objects (ARM64)",
                   "actions": [(run_compile, [], {"p": paths, "sdk": sdk_paths, "tools": tools, "msvc": msvc,
                                                  "libgen_cmd": libgen_cmd, "sdk_env": sdk_env})],
                   "file_dep": [str(p.cpp), str(p.net_json)], "targets": [str(p.manifest)],
                   "uptodate": uptodate({"templates": template_digest("qairt/clang_cl_compile.j2", "qairt/clang_weights.j2",
                                                                      "qairt/weights_asm.S.j2"),
                                         "libgen_cmd": libgen_cmd, "tools": fp, "sdk": sdk_paths, "msvc": msvc,
                                         "code": code}),
                   "clean": True}
            yield {"basename": "link", "name": name, "doc": f"lld-link: lib{m}_htp.dll (ARM64)",
                   "actions": [(run_link, [], {"p": paths, "tools": tools, "link": link})],
                   "file_dep": [str(p.manifest)], "targets": [str(p.dll)],
                   "uptodate": uptodate({"link": link, "template": template_digest("qairt/lld_link.j2"), "tools": fp,
                                         "code": code}), "clean": True}
            if host["context_lib"] == "host":
                staging = p.staging("hostlib")
                hostlib_cmd = render_command("qairt/model_lib_generator.j2", python=python,
                                             libgen=sdk.tool("qnn-model-lib-generator"), cpp=p.cpp, bin=p.bin,
                                             target="x86_64-linux-clang", name=m, outdir=staging / "lib")
                yield {"basename": "hostlib", "name": name, "doc": f"qnn-model-lib-generator: host library of {m}",
                       "actions": [(run_hostlib, [], {"cmd": hostlib_cmd, "sdk_env": sdk_env, "staging": str(staging),
                                                      "produced": f"lib/x86_64-linux-clang/lib{m}.so",
                                                      "target": str(p.hostlib), "clangxx": tools["clangxx"],
                                                      "shim_dir": str(layout.root / ".tools" / "bin")})],
                       "file_dep": [str(p.cpp), str(p.net_json)], "targets": [str(p.hostlib)],
                       "uptodate": uptodate({"cmd": hostlib_cmd, "tools": fp, "clangxx": tools["clangxx"], "code": code}),
                       "clean": True}
                context_model, context_dep = p.hostlib, [str(p.hostlib)]
            else:
                context_model, context_dep = p.dll, [str(p.dll)]
            ctx = precision["context"]
            backend_ext = render("qairt/htp_backend_ext.json.j2", graph_name=m, soc_model=pipe.soc["soc_model"],
                                 htp_arch=pipe.soc["htp_arch"], **ctx)
            htp_config = render("qairt/htp_config.json.j2", extensions_lib=(sdk.lib / host["extensions"]).as_posix(),
                                backend_ext=p.backend_ext.as_posix())
            staging = p.staging("context")
            ctx_cmd = render_command("qairt/context_binary_generator.j2", ctxgen=sdk.tool("qnn-context-binary-generator"),
                                     model_lib=context_model, backend=sdk.lib / host["backend"],
                                     binary_name=p.serialized.name[: -len(".bin")], outdir=staging, config=p.htp_config)
            info_cmd = render_command("qairt/context_binary_utility.j2", utility=sdk.tool("qnn-context-binary-utility"),
                                      binary=staging / p.serialized.name, json=staging / p.binary_info.name)
            yield {"basename": "context", "name": name, "doc": f"qnn-context-binary-generator: {m} ({pname}) for "
                                                                f"soc_model {pipe.soc['soc_model']}",
                   "actions": [(run_context, [], {"p": paths, "backend_ext_text": backend_ext,
                                                  "htp_config_text": htp_config, "ctx_cmd": ctx_cmd, "info_cmd": info_cmd,
                                                  "sdk_env": sdk_env, "staging": str(staging), "sdk_version": sdk.version,
                                                  "model": m, "precision": pname})],
                   "file_dep": context_dep + [str(p.net_json)],
                   "targets": [str(p.serialized), str(p.binary_info), str(p.ctx_onnx), str(p.context_info),
                               str(p.backend_ext), str(p.htp_config)],
                   "uptodate": uptodate({"cmd": ctx_cmd, "info_cmd": info_cmd, "backend_ext": backend_ext,
                                         "htp_config": htp_config, "tools": fp, "code": code}), "clean": True}
