"""qairt: the QAIRT SDK chain per model x precision (convert, compile, link, hostlib, context)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..templates import render, render_command, template_digest
from .keys import code_digest, uptodate

FAMILY = "qairt"
BASENAMES = ["convert", "compile", "link", "hostlib", "context"]   # the task names this family yields
log = logging.getLogger("smolvla_build.qairt")
JNI_SOURCES = ("QnnModel.cpp", "QnnWrapperUtils.cpp", "windows/QnnModelPal.cpp")


def enabled(pipe, toolchain) -> bool:
    return toolchain == "qairt"


class Paths:
    def __init__(self, layout, model: str, precision: str):
        self.dir = layout.root / "qairt" / precision / model
        self.model, self.precision = model, precision
        self.staging = self.dir / ".staging"
        self.cpp = self.dir / f"{model}.cpp"
        self.bin = self.dir / f"{model}.bin"
        self.net_json = self.dir / f"{model}_net.json"
        self.obj = self.dir / "obj"
        self.manifest = self.obj / "objects.json"
        self.dll = self.dir / f"lib{model}_htp.dll"
        self.hostlib_dir = self.dir / "host"
        self.hostlib = self.hostlib_dir / "x86_64-linux-clang" / f"lib{model}.so"
        self.backend_ext = self.dir / "htp_backend_ext.json"
        self.htp_config = self.dir / "htp_config.json"
        self.serialized = self.dir / f"lib{model}_htp_{precision}.serialized.bin"
        self.ctx_onnx = self.dir / f"{model}_qairt_ctx.onnx"


# --- actions -----------------------------------------------------------------------------------

def run_convert(cmd: str, sdk_env: dict, staging: str, outputs: dict):
    import os
    import shutil

    from ..toolchains.qairt import run
    staging = Path(staging)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    env = dict(os.environ, **sdk_env)
    run(cmd, env=env)
    for src, dst in outputs.items():      # model.bin is absent when the graph has no weights
        if (staging / src).is_file():
            os.replace(staging / src, dst)
    shutil.rmtree(staging, ignore_errors=True)
    return True


def assemble_weight_objects(bin_path: Path, obj: Path, tools: dict) -> list[str]:
    """Linux host: one COFF object for all raw tensors of model.bin, assembled by clang (.incbin)."""
    import re
    import shutil
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
    return [str(o)]


def libgen_weight_objects(cmd: str, sdk_env: dict, obj: Path) -> list[str]:
    """Windows ARM64 host: the SDK's qnn-model-lib-generator -t windows-aarch64 (`cmd`, run in
    obj/libgen) stages its build in ./tmp_<N> and leaves the weight objects (object-generator.exe) in
    tmp_<N>/obj/windows-aarch64, as the card's build uses them. Its own CMake build of the DLL often
    fails without the VS ClangCL toolset (qnn.md section 3): only a warning when the objects were made."""
    import os
    import shutil

    from ..toolchains.qairt import run
    work = obj / "libgen"
    work.mkdir(parents=True)
    proc = run(cmd, env=dict(os.environ, **sdk_env), cwd=work, check=False)
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


def run_compile(p: dict, sdk: dict, tools: dict, libgen_cmd: str | None, sdk_env: dict):
    """Weight objects from model.bin (the SDK's lib generator when the host has `libgen_cmd`, else
    clang), then the four C++ sources with clang-cl."""
    import hashlib
    import shutil

    from ..fsutil import write_json
    from ..toolchains.qairt import TARGET, run
    obj = Path(p["obj"])
    shutil.rmtree(obj, ignore_errors=True)
    obj.mkdir(parents=True)
    objects = []
    if Path(p["bin"]).is_file():            # absent when the graph has no weights
        objects += (libgen_weight_objects(libgen_cmd, sdk_env, obj) if libgen_cmd
                    else assemble_weight_objects(Path(p["bin"]), obj, tools))
    staged = obj / "src"
    staged.mkdir()
    shutil.copyfile(p["cpp"], staged / "QnnNetworkModel.cpp")   # the card's name for the converter output
    sources = [Path(sdk["jni"]) / s for s in JNI_SOURCES] + [staged / "QnnNetworkModel.cpp"]
    for src in sources:
        o = obj / (src.stem + ".o")
        run(render_command("qairt/clang_cl_compile.j2", clang_cl=tools["clang_cl"], target=TARGET, jni=sdk["jni"],
                           include=sdk["include"], source=src, obj=o))
        objects.append(str(o))
    # content hashes: the link reruns when an object changes, not only when the list does
    write_json(p["manifest"], {"objects": objects,
                               "sha256": {o: hashlib.sha256(Path(o).read_bytes()).hexdigest() for o in objects}})
    return True


def run_link(p: dict, tools: dict, link: dict):
    from ..fsutil import atomic_path
    from ..toolchains.qairt import run
    objects = json.loads(Path(p["manifest"]).read_text())["objects"]
    with atomic_path(p["dll"], suffix=".dll") as tmp:
        run(render_command("qairt/lld_link.j2", lld_link=tools["lld_link"], dll=tmp, objects=objects, **link))
    return True


def run_hostlib(cmd: str, sdk_env: dict):
    import os

    from ..toolchains.qairt import run
    run(cmd, env=dict(os.environ, **sdk_env))
    return True


def run_context(p: dict, backend_ext_text: str, htp_config_text: str, cmd: str, sdk_env: dict, model: str,
                sdk_version: str):
    import os

    from ..fsutil import write_text
    from ..toolchains.qairt import run
    write_text(p["backend_ext"], backend_ext_text)
    write_text(p["htp_config"], htp_config_text)
    out = Path(p["serialized"])
    staging = out.parent / ".ctx-staging"
    staging.mkdir(parents=True, exist_ok=True)
    run(cmd, env=dict(os.environ, **sdk_env))
    produced = staging / out.name
    if not produced.is_file():
        raise RuntimeError(f"qnn-context-binary-generator wrote no {produced}")
    os.replace(produced, out)
    # the EPContext wrapper lets onnxruntime-qnn load this context; its I/O is the QNN graph's (_net.json)
    from ..toolchains.epcontext import net_json_signature, wrap_context_binary
    inputs, outputs = net_json_signature(Path(p["net_json"]))
    wrap_context_binary(out, Path(p["ctx_onnx"]), model, inputs, outputs, sdk_version)
    return True


# --- task generation ---------------------------------------------------------------------------

def gen_tasks(pipe, layout, toolchain):
    from ..toolchains.qairt import HOSTS, PYTHON, discover, host_tools, tool_versions
    sdk = discover(pipe)
    host = HOSTS[sdk.host]
    tools = host_tools()
    fp = {"sdk_version": sdk.version, "sdk_host": sdk.host, "soc": dict(pipe.soc), **tool_versions(tools)}
    sdk_env = {k: v for k, v in sdk.env().items() if k in ("PYTHONPATH", "LD_LIBRARY_PATH", "QNN_SDK_ROOT")}
    sdk_paths = {"jni": str(sdk.jni), "include": str(sdk.include)}
    link = {"libpaths": [], "libs": [], "link_flags": ["/NOENTRY", "/NODEFAULTLIB"]}
    link.update(pipe.toolchain.get("link") or {})
    code = code_digest("stages/qairt.py", "toolchains/qairt.py", "toolchains/converter_patch.py")
    for m in pipe.models:
        for pname, precision in pipe.precisions.items():
            p = Paths(layout, m, pname)
            conv = precision["converter"]
            name = f"{m}-{pname}"
            convert_cmd = render_command(
                "qairt/converter.j2", python=PYTHON, converter=sdk.tool("qnn-onnx-converter"),
                disable_matmul_to_fc=conv.get("disable_matmul_to_fc", False), onnx=layout.preprocessed(m),
                cpp=p.staging / p.cpp.name, float_bitwidth=conv["float_bitwidth"],
                float_bias_bitwidth=conv["float_bias_bitwidth"], extra_args=conv["extra_args"])
            yield {"basename": "convert", "name": name, "doc": f"qnn-onnx-converter: {m} -> C++/bin ({pname})",
                   "actions": [(run_convert, [], {"cmd": convert_cmd, "sdk_env": sdk_env, "staging": str(p.staging),
                                                  "outputs": {p.cpp.name: str(p.cpp), p.bin.name: str(p.bin),
                                                              p.net_json.name: str(p.net_json)}})],
                   "file_dep": [str(layout.preprocessed(m))], "targets": [str(p.cpp), str(p.net_json)],
                   "uptodate": uptodate({"cmd": convert_cmd, "template": template_digest("qairt/converter.j2"),
                                         "tools": fp, "code": code}), "clean": True}
            paths = {k: str(v) for k, v in vars(p).items() if isinstance(v, Path)}
            libgen_cmd = None
            if host["weights"] == "libgen":
                libgen_cmd = render_command("qairt/model_lib_generator.j2", python=PYTHON,
                                            libgen=sdk.tool("qnn-model-lib-generator"), cpp=p.cpp, bin=p.bin,
                                            target="windows-aarch64", name=m, outdir=p.obj / "libgen" / "lib")
            yield {"basename": "compile", "name": name, "doc": f"clang-cl: {m} model library objects (ARM64)",
                   "actions": [(run_compile, [], {"p": paths, "sdk": sdk_paths, "tools": tools,
                                                  "libgen_cmd": libgen_cmd, "sdk_env": sdk_env})],
                   "file_dep": [str(p.cpp), str(p.net_json)], "targets": [str(p.manifest)],
                   "uptodate": uptodate({"templates": template_digest("qairt/clang_cl_compile.j2", "qairt/clang_weights.j2",
                                                                      "qairt/weights_asm.S.j2"),
                                         "libgen_cmd": libgen_cmd, "tools": fp, "sdk": sdk_paths, "code": code}),
                   "clean": True}
            yield {"basename": "link", "name": name, "doc": f"lld-link: lib{m}_htp.dll (ARM64)",
                   "actions": [(run_link, [], {"p": paths, "tools": tools, "link": link})],
                   "file_dep": [str(p.manifest)], "targets": [str(p.dll)],
                   "uptodate": uptodate({"link": link, "template": template_digest("qairt/lld_link.j2"), "tools": fp,
                                         "code": code}), "clean": True}
            if host["context_lib"] == "host":
                hostlib_cmd = render_command("qairt/model_lib_generator.j2", python=PYTHON,
                                             libgen=sdk.tool("qnn-model-lib-generator"), cpp=p.cpp, bin=p.bin,
                                             target="x86_64-linux-clang", name=m, outdir=p.hostlib_dir)
                yield {"basename": "hostlib", "name": name, "doc": f"qnn-model-lib-generator: host library of {m}",
                       "actions": [(run_hostlib, [], {"cmd": hostlib_cmd, "sdk_env": sdk_env})],
                       "file_dep": [str(p.cpp), str(p.net_json)], "targets": [str(p.hostlib)],
                       "uptodate": uptodate({"cmd": hostlib_cmd, "tools": fp, "code": code}), "clean": True}
                context_model, context_dep = p.hostlib, [str(p.hostlib)]
            else:
                context_model, context_dep = p.dll, [str(p.dll)]
            ctx = precision["context"]
            backend_ext = render("qairt/htp_backend_ext.json.j2", graph_name=m, soc_model=pipe.soc["soc_model"],
                                 htp_arch=pipe.soc["htp_arch"], **ctx)
            htp_config = render("qairt/htp_config.json.j2", extensions_lib=(sdk.lib / host["extensions"]).as_posix(),
                                backend_ext=p.backend_ext.as_posix())
            ctx_cmd = render_command("qairt/context_binary_generator.j2", ctxgen=sdk.tool("qnn-context-binary-generator"),
                                     model_lib=context_model, backend=sdk.lib / host["backend"],
                                     binary_name=p.serialized.name[: -len(".bin")], outdir=p.dir / ".ctx-staging",
                                     config=p.htp_config)
            yield {"basename": "context", "name": name, "doc": f"qnn-context-binary-generator: {m} ({pname}) for "
                                                                f"soc_model {pipe.soc['soc_model']}",
                   "actions": [(run_context, [], {"p": paths, "backend_ext_text": backend_ext,
                                                  "htp_config_text": htp_config, "cmd": ctx_cmd, "sdk_env": sdk_env,
                                                  "model": m, "sdk_version": sdk.version})],
                   "file_dep": context_dep + [str(p.net_json)],
                   "targets": [str(p.serialized), str(p.ctx_onnx), str(p.backend_ext), str(p.htp_config)],
                   "uptodate": uptodate({"cmd": ctx_cmd, "backend_ext": backend_ext, "htp_config": htp_config,
                                         "tools": fp, "code": code}), "clean": True}
