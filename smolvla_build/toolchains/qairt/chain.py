"""The qairt chain per model x precision, as the deployed card builds it (docs/qairt-sdk.md):

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
     -> lib<model>_htp_<precision>.serialized.bin, described by qnn-context-binary-utility (or, on a
     release without it for the host, by the converter's _net.json)

Each action takes its task's spec (below; stages/qairt.py declares them), and runs every tool in its
own staging folder, emptied first: whatever a tool leaves in its working directory (the lib
generator's tmp_<N>, a half-written output of a failed run) is never moved into place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import time
from pathlib import Path

from smolvla_runtime.htp import Soc

from ...templates import render, render_command
from .compilers import TARGET, ToolFailed, check_crt, compiler_shim, missing_header, require
from .run import run
from .sdk import Sdk

log = logging.getLogger("smolvla_build.qairt")
JNI_SOURCES = ("QnnModel.cpp", "QnnWrapperUtils.cpp", "windows/QnnModelPal.cpp")
CONVERTER_PATCH = Path(__file__).resolve().parent / "converter_patch.py"


@dataclasses.dataclass(frozen=True)
class ConvertSpec:
    sdk: Sdk
    python: str | None          # toolchain.python (None: the Python the SDK's converter modules link)
    missing: tuple[str, ...]    # why a tool this step runs is missing, one line each
    staging: Path
    converter: dict             # the values of templates/qairt/converter.j2 (but the Python)
    outputs: dict               # {produced name: target}
    calibration: dict | None    # an integer precision: {npz, model, input_list}


@dataclasses.dataclass(frozen=True)
class CompileSpec:
    sdk: Sdk
    python: str | None
    missing: tuple[str, ...]
    paths: dict                 # the model x precision's files (layout.QairtPaths)
    tools: dict                 # the host compilers (compilers.host_tools)
    msvc: dict
    libgen: dict | None         # the lib generator's values (a `libgen` host: it makes the weight objects)
    crt_flag: str               # toolchain.link.crt's compile flag, /MD or /MT (plan.CRT_LINES)


@dataclasses.dataclass(frozen=True)
class LinkSpec:
    paths: dict
    tools: dict
    link: dict                  # {crt, crt_flag, libpaths, libs, link_flags}


@dataclasses.dataclass(frozen=True)
class HostlibSpec:
    sdk: Sdk
    python: str | None
    missing: tuple[str, ...]
    tools: dict
    staging: Path
    target: Path                # the host library the context generator loads
    produced: str               # where the lib generator writes it, under staging
    shim_dir: Path              # the clang++ shim put first on its PATH
    libgen: dict


@dataclasses.dataclass(frozen=True)
class ContextSpec:
    sdk: Sdk
    soc: Soc
    missing: tuple[str, ...]
    model: str
    precision: str
    graph: str                  # the QNN graph the backend extensions configure
    paths: dict
    staging: Path
    ctxgen: str                 # qnn-context-binary-generator
    utility: str | None         # qnn-context-binary-utility; None: described from the converter's _net.json
    model_lib: Path             # what the generator loads: the host library (Linux) or the DLL (Windows ARM64)
    backend_extensions: dict
    backend_config: dict


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


def check_tools(missing: tuple[str, ...]) -> None:
    """The SDK tools this task runs are there (task generation recorded the missing ones)."""
    if missing:
        from .. import ToolchainError
        raise ToolchainError("qairt: " + "; ".join(missing))


def python_command(sdk: Sdk, python: str | None, template: str, **values) -> str:
    """A command of the SDK's Python scripts, its interpreter resolved now (python.py)."""
    from .python import converter_python
    return render_command(template, python=converter_python(sdk, python), **values)


# --- convert -----------------------------------------------------------------------------------

def convert(spec: ConvertSpec):
    """qnn-onnx-converter on the preprocessed graph; an integer precision's calibration samples are
    written as the quantizer's .raw files and input list first."""
    from .qnn_io import space_free_folder, write_calibration_raw
    check_tools(spec.missing)
    staging = fresh(spec.staging)
    cmd = python_command(spec.sdk, spec.python, "qairt/converter.j2", **spec.converter)
    calibration, raw_dir = spec.calibration, None
    if calibration:
        from ...calibration_set import CalibrationSet
        from ..epcontext import graph_io
        inputs, _ = graph_io(calibration["model"])
        raw_dir = space_free_folder(staging / "calibration", "qnn-onnx-converter", "smolvla-calibration-")
        lines = write_calibration_raw(CalibrationSet(calibration["npz"]), inputs, raw_dir)
        Path(calibration["input_list"]).write_text(render("qairt/input_list.txt.j2", lines=lines))
        log.info("%s: %d calibration samples as .raw files in %s", label(staging), len(lines), raw_dir)
    log.info("%s: qnn-onnx-converter ...", label(staging))
    try:
        run(cmd, env=spec.sdk.env(), cwd=staging, label=label(staging))
    finally:
        if raw_dir is not None and raw_dir.parent != staging:
            shutil.rmtree(raw_dir, ignore_errors=True)
    for src, dst in spec.outputs.items():      # model.bin is absent when the graph has no weights
        if (staging / src).is_file():
            os.replace(staging / src, dst)
        elif Path(dst).suffix == ".bin" and Path(dst).exists():
            os.unlink(dst)                # a stale weight archive of an earlier graph
        elif Path(dst).suffix != ".bin":
            raise ToolFailed(f"qnn-onnx-converter wrote no {staging / src}")
    shutil.rmtree(staging, ignore_errors=True)
    return True


# --- compile -----------------------------------------------------------------------------------

def assemble_weight_objects(bin_path: Path, obj: Path, tools: dict) -> list[str]:
    """Linux host: one COFF object for all raw tensors of model.bin, assembled by clang (.incbin)."""
    (obj / "binary").mkdir(parents=True)
    weights = []
    with tarfile.open(bin_path) as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.endswith(".raw"):
                continue
            name = Path(member.name).stem     # already sanitized by the converter; objcopy-style symbol
            if not re.fullmatch(r"\w+", name):
                raise ToolFailed(f"{bin_path}: member {member.name!r} is not a sanitized tensor name")
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
    fails without the VS ClangCL toolset (docs/qairt-sdk.md): only a warning when the objects were made."""
    work = fresh(staging)
    proc = run(cmd, env=sdk_env, cwd=work, check=False)
    made = sorted(work.glob("tmp_*/obj/windows-aarch64/*.o"))
    if not made:
        raise ToolFailed(f"qnn-model-lib-generator left no weight objects under {work}/tmp_*/obj/windows-aarch64 "
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


def compile_model(spec: CompileSpec):
    """Weight objects from model.bin (the SDK's lib generator on a `libgen` host, else clang), then
    the four C++ sources with clang-cl against the MSVC STL and Windows SDK headers."""
    from doit.exceptions import TaskFailed

    from ...fsutil import write_json
    p, tools, msvc, sdk = spec.paths, spec.tools, spec.msvc, spec.sdk
    check_tools(spec.missing)
    require(tools, "clang", "clang_cl")
    obj = fresh(p["obj"])
    objects = []
    if Path(p["bin"]).is_file():            # absent when the graph has no weights
        if spec.libgen:
            cmd = python_command(sdk, spec.python, "qairt/model_lib_generator.j2", **spec.libgen)
            objects += libgen_weight_objects(cmd, sdk.env(), Path(p["staging_libgen"]), obj)
        else:
            objects += assemble_weight_objects(Path(p["bin"]), obj, tools)
    staged = obj / "src"
    staged.mkdir()
    shutil.copyfile(p["cpp"], staged / "QnnNetworkModel.cpp")   # the card's name for the converter output
    sources = [sdk.jni / s for s in JNI_SOURCES] + [staged / "QnnNetworkModel.cpp"]
    for src in sources:
        o = obj / (src.stem + ".o")
        cmd = render_command("qairt/clang_cl_compile.j2", clang_cl=tools["clang_cl"], target=TARGET, crt_flag=spec.crt_flag,
                             jni=sdk.jni, include=sdk.include, msvc_include=msvc["include"], source=src, obj=o)
        try:
            run(cmd)
        except ToolFailed as exc:
            header = missing_header(str(exc))
            if header:
                where = ", ".join(msvc["include"]) or "none set"
                return TaskFailed(f"clang-cl: {src.name} needs <{header}>, which is in the MSVC and Windows SDK "
                                  f"headers: set toolchain.msvc.include to their folders (now: {where}); "
                                  "docs/qairt-sdk.md says where to get them for a Linux cross-build")
            raise
        objects.append(str(o))
    # content hashes: the link reruns when an object changes, not only when the list does
    write_json(p["manifest"], {"objects": objects,
                               "sha256": {o: hashlib.sha256(Path(o).read_bytes()).hexdigest() for o in objects}})
    return True


# --- link --------------------------------------------------------------------------------------

def link(spec: LinkSpec):
    """lld-link: the objects into the ARM64 model DLL, after checking their C runtime and the libraries."""
    from doit.exceptions import TaskFailed

    from ...fsutil import atomic_path
    p, link = spec.paths, spec.link
    require(spec.tools, "lld_link")
    objects = json.loads(Path(p["manifest"]).read_text())["objects"]
    try:
        check_crt(objects, link["libs"], link["link_flags"])
    except ToolFailed as exc:
        return TaskFailed(f"lld-link: {exc}")
    missing = [lib for lib in link["libs"] if not any((Path(d) / lib).is_file() for d in link["libpaths"])
               and not Path(lib).is_file()]
    if missing:
        return TaskFailed(f"lld-link: {', '.join(missing)} not found in {link['libpaths']}: set toolchain.msvc.lib to "
                          "the MSVC CRT and Windows SDK library folders for ARM64 (docs/qairt-sdk.md)")
    with atomic_path(p["dll"], suffix=".dll") as tmp:
        run(render_command("qairt/lld_link.j2", lld_link=spec.tools["lld_link"], dll=tmp, objects=objects, **link))
    return True


# --- hostlib (Linux host) ----------------------------------------------------------------------

def hostlib(spec: HostlibSpec):
    """qnn-model-lib-generator's x86_64 host library of the model (a Linux host's context generator
    loads it)."""
    check_tools(spec.missing)
    shim = compiler_shim(Path(spec.shim_dir), spec.tools["clangxx"])
    staging = fresh(spec.staging)
    cmd = python_command(spec.sdk, spec.python, "qairt/model_lib_generator.j2", **spec.libgen)
    env = spec.sdk.env()
    env["PATH"] = os.pathsep.join([str(shim), env["PATH"]])
    run(cmd, env=env, cwd=staging, label=label(staging))
    src = staging / spec.produced
    if not src.is_file():
        raise ToolFailed(f"qnn-model-lib-generator wrote no {src}: {cmd}")
    Path(spec.target).parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, spec.target)
    shutil.rmtree(staging, ignore_errors=True)
    return True


# --- context -----------------------------------------------------------------------------------

def describe_from_net_json(net_json: Path, out: Path) -> None:
    """What qnn-context-binary-utility would say of the context (info.graphs[].info), from the
    converter's _net.json: for a release that ships no utility for the host (2.25 on Windows). The
    graph name is the stem of the .cpp the converter recorded writing (`model.cpp`: the graph is
    named after it), the I/O its APP_WRITE / APP_READ tensors."""
    from ...fsutil import write_json
    from ..epcontext import net_json_signature
    inputs, outputs = net_json_signature(net_json)
    try:
        graph = Path(json.loads(Path(net_json).read_text())["model.cpp"].replace("\\", "/")).stem
    except (KeyError, ValueError) as e:
        raise ValueError(f"{net_json}: no model.cpp entry to name the graph by ({e})") from None

    def tensors(triples):
        return [{"info": {"name": n}} for n, _, _ in triples]
    write_json(out, {"info": {"graphs": [{"info": {"graphName": graph, "graphInputs": tensors(inputs),
                                                    "graphOutputs": tensors(outputs)}}]},
                     "described_by": f"{net_json.name} (this SDK has no qnn-context-binary-utility for the host)"})


def context(spec: ContextSpec):
    """qnn-context-binary-generator with the backend-extension config; the binary described (the
    utility, else _net.json) and checked to hold the graph the config configures, then wrapped as an
    EPContext model for onnxruntime-qnn."""
    from doit.exceptions import TaskFailed

    from ...fsutil import write_json
    from ..epcontext import context_graph, wrap_context_binary
    from ..rss import peak_rss_mb, reset_peak
    check_tools(spec.missing)
    reset_peak()
    t0 = time.time()
    p, model, precision, sdk = spec.paths, spec.model, spec.precision, spec.sdk
    write_json(p["backend_ext"], spec.backend_extensions)
    write_json(p["htp_config"], spec.backend_config)
    staging = fresh(spec.staging)
    out, info = Path(p["serialized"]), Path(p["binary_info"])
    ctx_cmd = render_command("qairt/context_binary_generator.j2", ctxgen=spec.ctxgen, model_lib=spec.model_lib,
                             backend=sdk.lib / sdk.layout.backend, binary_name=out.name[: -len(".bin")], outdir=staging,
                             config=p["htp_config"])
    log.info("context %s-%s: qnn-context-binary-generator ...", model, precision)
    run(ctx_cmd, env=sdk.env(), cwd=staging, label=label(staging))
    produced = staging / out.name
    if not produced.is_file():
        raise ToolFailed(f"qnn-context-binary-generator wrote no {produced}: {ctx_cmd}")
    if spec.utility:                        # what the binary says it holds
        run(render_command("qairt/context_binary_utility.j2", utility=spec.utility, binary=produced,
                           json=staging / info.name), env=sdk.env(), cwd=staging)
    else:
        describe_from_net_json(Path(p["net_json"]), staging / info.name)
    graph, inputs, outputs = context_graph(staging / info.name, Path(p["net_json"]))
    if graph != spec.graph:
        return TaskFailed(f"qnn-context-binary-generator: the context holds graph {graph!r}, but {p['backend_ext']} "
                          f"configures graph_names [{spec.graph!r}], so its graph settings (vtcm_mb, "
                          "fp16_relaxed_precision, O, hvx_threads) were not applied")
    os.replace(produced, out)
    os.replace(staging / info.name, info)
    # the EPContext wrapper lets onnxruntime-qnn load this context; node named after the binary's graph
    wrap_context_binary(out, Path(p["ctx_onnx"]), graph, inputs, outputs, sdk.version)
    write_json(p["context_info"], {"model": model, "precision": precision, "toolchain": "qairt", "graph": graph,
                                   "described_by": "qnn-context-binary-utility" if spec.utility else "_net.json",
                                   "context_bytes": out.stat().st_size, "seconds": round(time.time() - t0, 3),
                                   "peak_rss_mb": peak_rss_mb()})
    shutil.rmtree(staging, ignore_errors=True)
    log.info("context %s-%s: graph %s, %.1f MB", model, precision, graph, out.stat().st_size / 1e6)
    return True
