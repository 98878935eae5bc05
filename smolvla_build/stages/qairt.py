"""qairt: the QAIRT SDK chain per model x precision (convert, compile, link, hostlib, context).

Declarations only: what the chain uses on this host is looked up once by the library
(toolchains/qairt/plan.py: no program runs), and each task's spec is what its action
(toolchains/qairt/chain.py) reads. Nothing here fails on a missing tool or interpreter: the tasks
that need one fail in one line, so `doit list` and the other stages work on any host.
"""

from __future__ import annotations

from .keys import action, declare, module_digest

FAMILY = "qairt"
CONVERTER_PATCH = "smolvla_build.toolchains.qairt.converter_patch"
CONVERT = action("toolchains.qairt.chain:convert")
COMPILE = action("toolchains.qairt.chain:compile_model")
LINK = action("toolchains.qairt.chain:link")
HOSTLIB = action("toolchains.qairt.chain:hostlib")
CONTEXT = action("toolchains.qairt.chain:context")
BASENAMES = ["convert", "compile", "link", "hostlib", "context"]   # the task names this family yields


def enabled(build) -> bool:
    return build.toolchain == "qairt"


def gen_tasks(build):
    # imported here: a pipeline of another toolchain never pays for jinja2 and the chain's types
    from ..templates import template_digest
    from ..toolchains.qairt import chain
    from ..toolchains.qairt.htp import backend_config, context_backend_extensions
    from ..toolchains.qairt.plan import setup
    pipe, layout, sdk = build.pipe, build.layout, build.sdk
    qs = setup(sdk, pipe.toolchain, pipe.resolve)
    host = sdk.layout
    # each task's key holds the tools it runs: the SDK (every task), the converter's compiled modules
    # (what runs the converter or the lib generator), the host compilers (what compiles or links)
    fp = qs.fingerprint
    common = {"sdk": {"root": str(sdk.root), "version": sdk.version, "host": sdk.host}, "sdk_paths_env": fp["sdk_paths_env"]}
    converter_tools = dict(common, converter_modules=fp["converter_modules"])
    compilers = dict(common, compilers=fp["compilers"])
    tools = qs.sdk_tools
    suite = pipe.calibration_suite()
    for m in pipe.models:
        for pname, precision in pipe.precisions.items():
            p = layout.qairt(m, pname)
            paths = {k: str(v) for k, v in vars(p).items() if hasattr(v, "as_posix")}
            paths["staging_libgen"] = str(p.staging("libgen"))
            conv = precision.settings["converter"]
            name = f"{m}-{pname}"
            calibration, cal_deps = None, []
            if precision.quantized:       # the converter's own quantizer, on the recorded calibration set
                n = precision.calibration_samples
                calibration = {"npz": str(layout.calibration_set(suite, n, m)), "model": str(layout.preprocessed(m)),
                               "input_list": str(p.staging("convert") / "input_list.txt")}
                cal_deps = [calibration["npz"], layout.calibration_info(suite, n)]
            spec = chain.ConvertSpec(
                sdk=sdk, python=qs.python, missing=qs.missing_of("qnn-onnx-converter"), staging=p.staging("convert"),
                outputs={p.cpp.name: str(p.cpp), p.bin.name: str(p.bin), p.net_json.name: str(p.net_json)},
                calibration=calibration,
                converter={"converter": tools["qnn-onnx-converter"],
                           "patch": str(chain.CONVERTER_PATCH) if conv["disable_matmul_to_fc"] else None,
                           "onnx": str(layout.preprocessed(m)), "cpp": str(p.staging("convert") / p.cpp.name),
                           "float_bitwidth": conv.get("float_bitwidth"), "float_bias_bitwidth": conv["float_bias_bitwidth"],
                           "extra_args": conv["extra_args"], "quantization": precision.quantization,
                           "input_list": calibration and calibration["input_list"]})
            yield declare("convert", CONVERT, spec, name=name, file_dep=[layout.preprocessed(m), *cal_deps],
                          targets=[p.cpp, p.net_json], owns=[p.bin],   # no .bin when the graph has no weights
                          doc=f"qnn-onnx-converter: {m} -> C++/bin ({pname})",
                          # the patch runs as a script under the SDK's Python: no import brings it into `code`
                          tools=dict(converter_tools, template=template_digest("qairt/converter.j2"),
                                     patch=module_digest(CONVERTER_PATCH)))
            libgen = None
            if host.weights == "libgen":
                libgen = {"libgen": tools["qnn-model-lib-generator"], "cpp": str(p.cpp), "bin": str(p.bin),
                          "target": "windows-aarch64", "name": m, "outdir": str(p.staging("libgen") / "lib")}
            spec = chain.CompileSpec(sdk=sdk, python=qs.python,
                                     missing=qs.missing_of("qnn-model-lib-generator") if libgen else (),
                                     paths=paths, tools=qs.host_tools, msvc=qs.msvc, libgen=libgen,
                                     crt_flag=qs.link["crt_flag"])
            yield declare("compile", COMPILE, spec, name=name, file_dep=[p.cpp, p.net_json], targets=[p.manifest], owns=[p.obj],
                          doc=f"clang-cl: {m} model library objects (ARM64)",
                          tools=dict(compilers, **(converter_tools if libgen else {}),
                                     templates=template_digest("qairt/clang_cl_compile.j2", "qairt/clang_weights.j2",
                                                               "qairt/weights_asm.S.j2", "qairt/model_lib_generator.j2")))
            spec = chain.LinkSpec(paths=paths, tools=qs.host_tools, link=qs.link)
            yield declare("link", LINK, spec, name=name, file_dep=[p.manifest], targets=[p.dll],
                          doc=f"lld-link: lib{m}_htp.dll (ARM64)",
                          tools=dict(compilers, template=template_digest("qairt/lld_link.j2")))
            if host.context_lib == "host":
                staging = p.staging("hostlib")
                spec = chain.HostlibSpec(
                    sdk=sdk, python=qs.python, missing=qs.missing_of("qnn-model-lib-generator"), tools=qs.host_tools,
                    staging=staging, target=p.hostlib, produced=f"lib/x86_64-linux-clang/lib{m}.so",
                    shim_dir=layout.tools_bin,
                    libgen={"libgen": tools["qnn-model-lib-generator"], "cpp": str(p.cpp), "bin": str(p.bin),
                            "target": "x86_64-linux-clang", "name": m, "outdir": str(staging / "lib")})
                yield declare("hostlib", HOSTLIB, spec, name=name, file_dep=[p.cpp, p.net_json], targets=[p.hostlib],
                              doc=f"qnn-model-lib-generator: host library of {m}",
                              tools=dict(compilers, **converter_tools,
                                         template=template_digest("qairt/model_lib_generator.j2")))
                model_lib = p.hostlib
            else:
                model_lib = p.dll
            spec = chain.ContextSpec(
                sdk=sdk, soc=pipe.soc, missing=qs.missing_of("qnn-context-binary-generator"), model=m, precision=pname,
                graph=m, paths=paths, staging=p.staging("context"), ctxgen=tools["qnn-context-binary-generator"],
                utility=None if "qnn-context-binary-utility" in qs.missing else tools["qnn-context-binary-utility"],
                model_lib=model_lib,
                backend_extensions=context_backend_extensions(m, pipe.soc, precision.settings["context"]),
                backend_config=backend_config(sdk.lib / host.extensions, p.backend_ext))
            yield declare("context", CONTEXT, spec, name=name, file_dep=[model_lib, p.net_json],
                          targets=[p.serialized, p.binary_info, p.ctx_onnx, p.context_info, p.backend_ext, p.htp_config],
                          doc=f"qnn-context-binary-generator: {m} ({pname}) for soc_model {pipe.soc.soc_model}",
                          tools=dict(common, templates=template_digest("qairt/context_binary_generator.j2",
                                                                       "qairt/context_binary_utility.j2")))

