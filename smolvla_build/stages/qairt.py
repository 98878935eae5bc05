"""qairt: the QAIRT SDK chain per model x precision (convert, compile, link, hostlib, context).

Declarations only: each task's `kw` is exactly what its action (toolchains/qairt/chain.py) reads and
its up-to-date key. Nothing here fails on a missing tool or interpreter (only `clang --version` and
`lld-link --version` run, for the keys): the tasks that need them fail in one line, so `doit list`
and the other stages work on any host.
"""

from __future__ import annotations

from ..templates import render_command, template_digest
from .keys import action, code_digest, uptodate

FAMILY = "qairt"
CHAIN = "toolchains.qairt.chain"
CONVERT, COMPILE, LINK, HOSTLIB, CONTEXT = (action(f"{CHAIN}:run_{t}") for t in ("convert", "compile", "link", "hostlib",
                                                                                 "context"))
BASENAMES = ["convert", "compile", "link", "hostlib", "context"]   # the task names this family yields
DEFAULT_LIBS = ["msvcrt.lib", "kernel32.lib", "QnnHtp.lib"]        # the card's link line (DLL CRT, /MD)


def enabled(pipe, toolchain) -> bool:
    return toolchain == "qairt"


def gen_tasks(pipe, layout, toolchain):
    from ..toolchains.qairt import chain, python
    from ..toolchains.qairt.compilers import host_tools, msvc_dirs, tool_versions
    from ..toolchains.qairt.htp import backend_config, context_backend_extensions
    from ..toolchains.qairt.sdk import discover, missing_tool
    sdk = discover(pipe)
    host = sdk.layout
    tools = host_tools()
    sdk_key = {"sdk": {"root": str(sdk.root), "version": sdk.version, "host": sdk.host}}
    # what the SDK's Python scripts run with: the interpreter they need and the SDK's own folders
    scripts = {"python": python.requirement(sdk, pipe.toolchain.get("python")), "sdk_paths_env": sdk.env_paths()}
    code = CONVERT.code()          # the chain's module and all it imports; the patch runs as a script
    fp = {"soc": dict(pipe.soc), **tool_versions(tools)}
    sdk_paths = {"jni": str(sdk.jni), "include": str(sdk.include)}
    msvc = msvc_dirs(pipe, host.windows)
    user_link = pipe.toolchain.get("link") or {}
    link = {"libpaths": [str(sdk.device_lib)] + msvc["lib"] + [str(pipe.resolve(d)) for d in user_link.get("libpaths", [])],
            "libs": list(user_link.get("libs", DEFAULT_LIBS)), "link_flags": list(user_link.get("link_flags", []))}
    found = {t: sdk.find_tool(t) for t in ("qnn-onnx-converter", "qnn-model-lib-generator",
                                           "qnn-context-binary-generator", "qnn-context-binary-utility")}
    # a missing tool fails the tasks that run it, in one line (chain.check_tools)
    missing = {t: missing_tool(sdk, t) for t, path in found.items() if path is None}
    converter, libgen, ctxgen, utility = (str(found[t] or t) for t in found)
    for m in pipe.models:
        for pname, precision in pipe.precisions.items():
            p = layout.qairt(m, pname)
            paths = {k: str(v) for k, v in vars(p).items() if hasattr(v, "as_posix")}
            paths["staging_libgen"] = str(p.staging("libgen"))
            conv = precision.settings["converter"]
            name = f"{m}-{pname}"
            quantization = precision.quantization
            calibration, cal_deps = None, []
            if quantization:       # the converter's own quantizer, on the recorded calibration set
                n = precision.calibration_samples
                calibration = {"npz": str(layout.calibration_set(n, m)), "model": str(layout.preprocessed(m)),
                               "input_list": str(p.staging("convert") / "input_list.txt")}
                cal_deps = [calibration["npz"], str(layout.calibration_info(n))]
            kw = dict(sdk_key, **scripts, template=template_digest("qairt/converter.j2"),
                      code=code + code_digest("toolchains/qairt/converter_patch.py"),
                      missing=[missing[t] for t in ("qnn-onnx-converter",) if t in missing],
                      staging=str(p.staging("convert")), calibration=calibration,
                      outputs={p.cpp.name: str(p.cpp), p.bin.name: str(p.bin), p.net_json.name: str(p.net_json)},
                      converter={"converter": converter,
                                 "patch": str(chain.CONVERTER_PATCH) if conv["disable_matmul_to_fc"] else None,
                                 "onnx": str(layout.preprocessed(m)), "cpp": str(p.staging("convert") / p.cpp.name),
                                 "float_bitwidth": conv.get("float_bitwidth"),
                                 "float_bias_bitwidth": conv["float_bias_bitwidth"], "extra_args": conv["extra_args"],
                                 "quantization": quantization, "input_list": calibration and calibration["input_list"]})
            yield {"basename": "convert", "name": name, "doc": f"qnn-onnx-converter: {m} -> C++/bin ({pname})",
                   "actions": [(CONVERT, [kw])],
                   "file_dep": [str(layout.preprocessed(m))] + cal_deps, "targets": [str(p.cpp), str(p.net_json)],
                   "uptodate": uptodate(kw), "clean": True}
            libgen_values = None
            if host.weights == "libgen":
                libgen_values = {"libgen": libgen, "cpp": str(p.cpp),
                                 "bin": str(p.bin), "target": "windows-aarch64", "name": m,
                                 "outdir": str(p.staging("libgen") / "lib")}
            kw = dict(sdk_key, **scripts, tools_fp=fp, paths=paths, tools=tools, msvc=msvc, sdk_paths=sdk_paths,
                      libgen=libgen_values, code=code,
                      missing=[missing[t] for t in ("qnn-model-lib-generator",) if t in missing and libgen_values],
                      templates=template_digest("qairt/clang_cl_compile.j2", "qairt/clang_weights.j2",
                                                "qairt/weights_asm.S.j2", "qairt/model_lib_generator.j2"))
            yield {"basename": "compile", "name": name, "doc": f"clang-cl: {m} model library objects (ARM64)",
                   "actions": [(COMPILE, [kw])],
                   "file_dep": [str(p.cpp), str(p.net_json)], "targets": [str(p.manifest)],
                   "uptodate": uptodate(kw), "clean": True}
            kw = dict(sdk_key, tools_fp=fp, paths=paths, tools=tools, link=link, code=code,
                      template=template_digest("qairt/lld_link.j2"))
            yield {"basename": "link", "name": name, "doc": f"lld-link: lib{m}_htp.dll (ARM64)",
                   "actions": [(LINK, [kw])],
                   "file_dep": [str(p.manifest)], "targets": [str(p.dll)],
                   "uptodate": uptodate(kw), "clean": True}
            if host.context_lib == "host":
                staging = p.staging("hostlib")
                kw = dict(sdk_key, **scripts, tools_fp=fp, tools=tools, staging=str(staging), target=str(p.hostlib),
                          code=code,
                          missing=[missing[t] for t in ("qnn-model-lib-generator",) if t in missing],
                          produced=f"lib/x86_64-linux-clang/lib{m}.so", shim_dir=str(layout.root / ".tools" / "bin"),
                          template=template_digest("qairt/model_lib_generator.j2"),
                          libgen={"libgen": libgen, "cpp": str(p.cpp),
                                  "bin": str(p.bin), "target": "x86_64-linux-clang", "name": m,
                                  "outdir": str(staging / "lib")})
                yield {"basename": "hostlib", "name": name, "doc": f"qnn-model-lib-generator: host library of {m}",
                       "actions": [(HOSTLIB, [kw])],
                       "file_dep": [str(p.cpp), str(p.net_json)], "targets": [str(p.hostlib)],
                       "uptodate": uptodate(kw), "clean": True}
                context_model, context_dep = p.hostlib, [str(p.hostlib)]
            else:
                context_model, context_dep = p.dll, [str(p.dll)]
            staging = p.staging("context")
            ctx_cmd = render_command("qairt/context_binary_generator.j2", ctxgen=ctxgen,
                                     model_lib=context_model, backend=sdk.lib / host.backend,
                                     binary_name=p.serialized.name[: -len(".bin")], outdir=staging, config=p.htp_config)
            info_cmd = None if "qnn-context-binary-utility" in missing else render_command(
                "qairt/context_binary_utility.j2", utility=utility, binary=staging / p.serialized.name,
                json=staging / p.binary_info.name)
            kw = dict(sdk_key, sdk_paths_env=scripts["sdk_paths_env"], soc=dict(pipe.soc), paths=paths,
                      staging=str(staging), model=m, precision=pname, graph=m,
                      code=code,
                      missing=[missing[t] for t in ("qnn-context-binary-generator",) if t in missing],
                      ctx_cmd=ctx_cmd, info_cmd=info_cmd,
                      backend_extensions=context_backend_extensions(m, pipe.soc, precision.settings["context"]),
                      backend_config=backend_config(sdk.lib / host.extensions, p.backend_ext))
            yield {"basename": "context", "name": name, "doc": f"qnn-context-binary-generator: {m} ({pname}) for "
                                                                f"soc_model {pipe.soc['soc_model']}",
                   "actions": [(CONTEXT, [kw])],
                   "file_dep": context_dep + [str(p.net_json)],
                   "targets": [str(p.serialized), str(p.binary_info), str(p.ctx_onnx), str(p.context_info),
                               str(p.backend_ext), str(p.htp_config)],
                   "uptodate": uptodate(kw), "clean": True}
