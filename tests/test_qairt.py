"""The qairt toolchain against the test-double SDK (tests/fixtures: QAIRT 2.25 behaviour, real clang,
lld-link and onnxruntime-qnn underneath) and the test-double MSVC/Windows SDK headers and libraries."""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml

from smolvla_runtime.model import MODELS
from smolvla_build.templates import render, render_command
from smolvla_build.toolchains import ToolchainError
from smolvla_build.toolchains.qairt.compilers import check_crt, coff_directives
from smolvla_build.toolchains.qairt.python import converter_python
from smolvla_build.toolchains.qairt.qnn_io import native_names_arg, sanitize
from smolvla_build.toolchains.qairt.sdk import Sdk, read_version, version_matches
from smolvla_runtime.htp import Soc

from conftest import ROOT, doit, write_pipeline

READOBJ = shutil.which("llvm-readobj-16") or shutil.which("llvm-readobj")
CLANG = shutil.which("clang-16") or shutil.which("clang")
pytestmark = pytest.mark.skipif(not (CLANG and shutil.which("lld-link-16") and READOBJ and shutil.which("llvm-dlltool-16")),
                                reason="clang-16/lld-16/llvm-16 are installed by scripts/test.sh")
SDK_VERSION = "2.25.0"          # the double is a 2.25.0 build (sdk.yaml: build_id 240728...)


def qairt_toolchain(msvc: dict, **more) -> dict:
    return {"kind": "qairt", "sdk_version": SDK_VERSION, "msvc": msvc, **more}


def calls(log: Path, tool: str) -> list[dict]:
    return [c for c in map(json.loads, log.read_text().splitlines()) if c["tool"] == tool]


def readobj(*args) -> str:
    return subprocess.run([READOBJ, *map(str, args)], capture_output=True, text=True).stdout


# --- golden tests on the rendered text -----------------------------------------------------------

def test_converter_command_golden():
    cmd = render_command("qairt/converter.j2", python="/usr/bin/python3.10",
                         converter="/sdk/bin/x86_64-linux-clang/qnn-onnx-converter", patch=None,
                         onnx="/my models/llm.onnx", cpp="/out/llm.cpp", float_bitwidth=16, float_bias_bitwidth=32,
                         extra_args=[])
    assert cmd == ("/usr/bin/python3.10 /sdk/bin/x86_64-linux-clang/qnn-onnx-converter --input_network '/my models/llm.onnx' "
                   "--output_path /out/llm.cpp --float_bitwidth 16 --float_bias_bitwidth 32 --preserve_io")
    patched = render_command("qairt/converter.j2", python="py", converter="conv", patch="/p/converter_patch.py",
                             onnx="m.onnx", cpp="m.cpp", float_bitwidth=32, float_bias_bitwidth=0,
                             extra_args=["--no_simplification"])
    assert patched == ("py /p/converter_patch.py conv --input_network m.onnx --output_path m.cpp "
                       "--float_bitwidth 32 --preserve_io --no_simplification")
    w8a16 = render_command("qairt/converter.j2", python="py", converter="conv", patch=None, onnx="m.onnx", cpp="m.cpp",
                           float_bitwidth=None, float_bias_bitwidth=0, extra_args=[], input_list="/s/input_list.txt",
                           quantization={"weights": 8, "activations": 16, "per_channel": True, "symmetric": True})
    assert w8a16 == ("py conv --input_network m.onnx --output_path m.cpp --input_list /s/input_list.txt --act_bitwidth 16 "
                     "--weights_bitwidth 8 --bias_bitwidth 32 --use_per_channel_quantization --use_per_row_quantization "
                     "--param_quantizer symmetric --preserve_io")


NASTY = """R&D 100% "quoted" 'single' ; $(touch pwned) `id` |x"""


def test_commands_run_as_argument_lists_without_a_shell(tmp_path):
    """A folder name with spaces, quotes, &, %, ;, $(...) and backquotes reaches the tool as one
    argument on every host: the rendered line splits back into exactly the arguments (no sh, no
    cmd.exe), and a real tool (clang assembling a weight object) reads and writes there."""
    from smolvla_build.templates import argv
    from smolvla_build.toolchains.qairt.compilers import TARGET
    from smolvla_build.toolchains.qairt.run import run
    d = tmp_path / NASTY
    d.mkdir()
    raw = d / "w.raw"
    raw.write_bytes(b"\x01\x02\x03\x04")
    asm = d / "weights.S"
    asm.write_text(render("qairt/weights_asm.S.j2", weights=[{"name": "w", "raw": raw.as_posix()}], target=TARGET))
    obj = d / "weights.o"
    cmd = render_command("qairt/clang_weights.j2", clang=CLANG, target=TARGET, asm=asm, obj=obj)
    assert "\n" not in cmd and argv(cmd) == [CLANG, f"--target={TARGET}", "-c", str(asm), "-o", str(obj)]
    run(cmd, cwd=tmp_path)
    assert "_binary_obj_binary_w_raw_start" in readobj("--symbols", obj)
    assert not list(tmp_path.rglob("pwned")) and not (Path.cwd() / "pwned").exists()


def test_compile_link_context_golden():
    assert render_command("qairt/clang_cl_compile.j2", clang_cl=["clang-16", "--driver-mode=cl"], crt_flag="/MD",
                          target="aarch64-pc-windows-msvc", jni="/sdk/share/QNN/converter/jni", include="/sdk/include/QNN",
                          msvc_include=["/msvc/include", "/kits/ucrt"], source="/o/QnnModel.cpp", obj="/o/QnnModel.o") == (
        'clang-16 --driver-mode=cl /nologo /c /O2 /MD /EHsc /GS- --target=aarch64-pc-windows-msvc '
        '"-DQNN_API=__declspec(dllexport)" /imsvc /msvc/include /imsvc /kits/ucrt '
        "/I /sdk/share/QNN/converter/jni /I /sdk/include/QNN /Fo/o/QnnModel.o -- /o/QnnModel.cpp")
    assert render_command("qairt/lld_link.j2", lld_link="lld-link", dll="/o/libllm_htp.dll",
                          objects=["/o/a.o", "/o/b c.o"], libpaths=["/winsdk/lib"], libs=["msvcrt.lib", "kernel32.lib", "QnnHtp.lib"],
                          link_flags=[]) == (
        "lld-link /nologo /DLL /NOIMPLIB /MACHINE:ARM64 /OUT:/o/libllm_htp.dll /LIBPATH:/winsdk/lib /o/a.o '/o/b c.o' "
        "msvcrt.lib kernel32.lib QnnHtp.lib")
    assert render_command("qairt/context_binary_generator.j2", ctxgen="/sdk/bin/qnn-context-binary-generator",
                          model_lib="/o/libllm.so", backend="/sdk/lib/libQnnHtp.so",
                          binary_name="libllm_backbone_htp_fp16.serialized", outdir="/o", config="/o/htp_config.json") == (
        "/sdk/bin/qnn-context-binary-generator --model /o/libllm.so --backend /sdk/lib/libQnnHtp.so "
        "--binary_file libllm_backbone_htp_fp16.serialized --output_dir /o --config_file /o/htp_config.json")
    assert render_command("qairt/qnn_net_run.j2", netrun="qnn-net-run", context="/o/ctx.bin",
                          backend="/o/htp/libQnnHtp.so", config="/o/htp_config.json", input_list="/o/input_list.txt",
                          outdir="/o/out", native_inputs=native_names_arg("action_head", ["prefix_pad_mask", "lang_mask"]),
                          log_level="warn", profiling_level=None) == (
        "qnn-net-run --retrieve_context /o/ctx.bin --backend /o/htp/libQnnHtp.so --config_file /o/htp_config.json "
        "--input_list /o/input_list.txt --output_dir /o/out --native_input_tensor_names action_head:prefix_pad_mask,lang_mask "
        "--log_level warn")
    assert render("qairt/input_list.txt.j2", lines=[[("x_t", "/in/x.raw"), ("timestep", "/in/t.raw")]]) == \
        "x_t:=/in/x.raw timestep:=/in/t.raw\n"


def test_backend_extension_configs_are_json_with_their_own_readers(tmp_path):
    """The context generator's config holds the graph options (graph_names = the converter's graph);
    qnn-net-run's holds the device's perf settings; both are written with json, so any path works."""
    from smolvla_build.toolchains.qairt.htp import backend_config, context_backend_extensions, netrun_backend_extensions
    soc = Soc("Snapdragon X Elite", 60, 73)
    ext = context_backend_extensions("llm_backbone", soc, {"vtcm_mb": 8, "fp16_relaxed_precision": True,
                                                            "optimization_level": 3, "hvx_threads": 4})
    assert ext["graphs"] == [{"graph_names": ["llm_backbone"], "vtcm_mb": 8, "fp16_relaxed_precision": 1, "O": 3,
                              "hvx_threads": 4}]
    assert ext["devices"] == [{"soc_model": 60, "dsp_arch": "v73", "pd_session": "unsigned"}]
    run = netrun_backend_extensions(soc, {"perf_profile": "high_performance", "rpc_control_latency": 250,
                                          "rpc_polling_time": 9999})
    assert run["devices"][0]["cores"] == [{"core_id": 0, "perf_profile": "high_performance", "rpc_control_latency": 250,
                                           "rpc_polling_time": 9999}]
    assert backend_config(Path("/sdk/lib/libQnnHtpNetRunExtensions.so"), Path("/o/ext.json")) == {
        "backend_extensions": {"shared_library_path": "/sdk/lib/libQnnHtpNetRunExtensions.so",
                               "config_file_path": "/o/ext.json"}}


def test_without_the_utility_the_graph_is_named_by_the_converters_cpp(tmp_path):
    """2.25 ships no qnn-context-binary-utility for Windows: the description comes from _net.json,
    the graph name from the .cpp the converter recorded writing, not from the task's own setting."""
    from smolvla_build.toolchains.epcontext import binary_info
    from smolvla_build.toolchains.qairt.chain import describe_from_net_json
    net = tmp_path / "m_net.json"
    net.write_text(json.dumps({"model.cpp": "C:\\\\build\\\\other_name.cpp", "graph": {"tensors": {
        "x": {"id": 1, "type": 0, "data_type": 0x0232, "dims": [1, 4]},
        "y": {"id": 2, "type": 1, "data_type": 0x0232, "dims": [1, 4]}}}}))
    describe_from_net_json(net, tmp_path / "info.json")
    assert binary_info(tmp_path / "info.json") == {"other_name": (["x"], ["y"])}


# --- 1. the SDK version --------------------------------------------------------------------------------

def test_sdk_version_is_version_plus_build_date(fake_sdk, tmp_path, fake_msvc):
    assert read_version(fake_sdk) == "2.25.0.240728"          # sdk.yaml version 2.25.0, build_id 240728104910_97711
    assert version_matches("2.25.0.240728", "2.25.0") and version_matches("2.25.0.240728", "2.25.0.240728")
    assert not version_matches("2.25.0.240728", "2.25.0.240801") and not version_matches("2.25.1.240728", "2.25.0")
    env = dict(os.environ, QNN_SDK_ROOT=str(fake_sdk))
    for wanted in ("2.25.0", "2.25.0.240728"):
        pipe = write_pipeline(tmp_path, toolchain=qairt_toolchain(fake_msvc, sdk_version=wanted))
        assert "convert:vision_encoder-fp16" in doit(pipe, "list", "--all", env=env).stdout
    pipe = write_pipeline(tmp_path, toolchain={"kind": "qairt"})          # the default: 2.43.0.260128
    res = doit(pipe, "list", check=False, env=env)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode != 0 and len(lines) == 1
    assert "version 2.25.0.240728" in lines[0] and "expects 2.43.0.260128" in lines[0]
    pipe = write_pipeline(tmp_path, toolchain={"kind": "qairt", "on_version_mismatch": "warn"})
    assert "convert:vision_encoder-fp16" in doit(pipe, "list", "--all", env=env).stdout


# --- 2. the converter's Python -------------------------------------------------------------------------

def test_converter_python_is_the_one_the_sdk_modules_link(fake_sdk, tmp_path):
    from make_fake_sdk import fake_qairt_sdk
    sdk = Sdk(fake_sdk, read_version(fake_sdk), "x86_64-linux-clang")
    assert converter_python(sdk) == sys.executable              # built for this interpreter's version
    other = fake_qairt_sdk(tmp_path / "sdk399", python=(3, 99))
    sdk399 = Sdk(other, read_version(other), "x86_64-linux-clang")
    with pytest.raises(ToolchainError, match=r"need Python 3\.99, which is not installed here: install it"):
        converter_python(sdk399)
    with pytest.raises(ToolchainError, match=r"toolchain.python: .* is x64 Python 3\.\d+, but .* need Python 3\.99"):
        converter_python(sdk399, sys.executable)
    # and the double fails the way the real converter does under another Python: at its first import
    proc = subprocess.run([sys.executable, str(other / "bin" / "x86_64-linux-clang" / "qnn-onnx-converter"),
                           "--input_network", "x.onnx"], capture_output=True, text=True, env=Sdk(other, "", "x86_64-linux-clang").env())
    assert proc.returncode != 0 and "libpython3.99.so.1.0: cannot open shared object file" in proc.stderr


# --- 3. MATMUL_TO_FC -----------------------------------------------------------------------------------

def _fc_probe(fake_sdk: Path, patch: str) -> str:
    """Run the double's optimizer on MatMul(x, W[4,4]) after `patch`; the op type it leaves."""
    code = f"""
import sys
sys.path.insert(0, {str(ROOT / 'smolvla_build' / 'toolchains' / 'qairt')!r})
from qti.aisw.converters.common.converter_ir import op_graph_optimizations as opt
from qti.aisw.converters.common.converter_ir.op_graph import IROpGraph, Node
{patch}
g = IROpGraph("g"); g.static["W"] = [4, 4]; g.nodes.append(Node("mm", "MatMul", ["x", "W"], ["y"]))
opt.IROptimizations().optimize(g)
print(g.nodes[0].op.type)
"""
    env = Sdk(fake_sdk, "", "x86_64-linux-clang").env()
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout.strip()


def test_matmul_to_fc_is_disabled_in_the_registered_instance(fake_sdk):
    assert _fc_probe(fake_sdk, "") == "FullyConnected"
    # what the project did before: replacing the class attribute leaves the bound method in the table
    assert _fc_probe(fake_sdk, "opt.OptimizeMatmulTranslation.matmul_to_fc = lambda self, g: None") == "FullyConnected"
    assert _fc_probe(fake_sdk, "import converter_patch; converter_patch.disable_matmul_to_fc()") == "MatMul"


# --- 4./5. names -----------------------------------------------------------------------------------

def test_sanitized_names_follow_the_converter():
    assert sanitize("output.1") == "output_1"
    assert sanitize("/model/x:0") == "__model_x_0"
    assert sanitize("/Concat_output_0") == "__Concat_output_0"
    assert sanitize("/embed_tokens/Gather_output_0") == "__embed_tokens_Gather_output_0"
    assert sanitize("_x") == "__x" and sanitize("1a") == "_1a" and sanitize("x_t") == "x_t"
    assert native_names_arg("g", ["a", "b"]) == "g:a,b"


# --- the chain through doit ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def qairt_build(tmp_path_factory, fake_sdk, fake_msvc):
    """convert -> compile -> link -> hostlib -> context -> validate -> report for 3 models x fp16/fp32/w8a16,
    fp16 with the card's MATMUL_TO_FC patch (the default), fp32 without; in a folder whose name has a
    space; the SDK named by QAIRT_SDK_ROOT alone."""
    folder = tmp_path_factory.mktemp("qairt with space")
    pipe = write_pipeline(folder, toolchain=qairt_toolchain(fake_msvc))
    cfg = yaml.safe_load(pipe.read_text())
    cfg["precisions"]["fp32"]["converter"]["disable_matmul_to_fc"] = False    # the default is the card's (True)
    # an integer precision: the converter's own quantizer on the recorded calibration set
    cfg["precisions"]["w8a16"] = {"quantization": {"weights": 8, "activations": 16, "calibration": {"samples": 4}}}
    cfg["calibration"] = {"tasks": [0, 1]}
    # 4 samples keep the suite short; the tiny LLM then reaches cosine 0.9988 (8 samples: 0.9995)
    cfg["validation"] = {"gates": {"w8a16": {"cosine_min": 0.995}}}
    pipe.write_text(yaml.safe_dump(cfg, sort_keys=False))
    # its own temporary folder, to check that the build and the tools leave nothing there
    env = dict(os.environ, QAIRT_SDK_ROOT=str(fake_sdk), FAKE_QAIRT_LOG=str(folder / "calls.jsonl"),
               TMPDIR=str(tmp_path_factory.mktemp("qairt-tmp")))
    env.pop("QNN_SDK_ROOT", None)
    first = doit(pipe, env=env)
    return folder, pipe, env, first


def test_full_chain_builds_validates_and_reports(qairt_build):
    folder, pipe, env, first = qairt_build
    # the qnn-net-run runners' space-free folders (this build's folder has a space) and the converter's
    # QDQ models are gone once the build is (torch's and the HTP library's own caches may stay)
    left = [p.name for p in Path(env["TMPDIR"]).iterdir() if p.name.startswith(("smolvla-", "qdq-"))]
    assert not left
    for stage in ("convert", "compile", "link", "hostlib", "context", "measure", "validate"):
        assert {f"{stage}:{m}-{p}" for m in MODELS for p in ("fp16", "fp32")} <= first.ran
    assert "report" in first.ran
    report = json.loads((folder / "artifacts" / "report.json").read_text())
    assert report["meta"]["toolchain"] == "qairt"
    for m in MODELS:
        for p in ("fp16", "fp32"):
            d = folder / "artifacts" / "qairt" / p / m
            v = json.loads((folder / "artifacts" / "validation" / f"{m}-{p}.json").read_text())
            assert v["toolchain"] == "qairt" and v["context"] == str(d / f"{m}_qairt_ctx.onnx")
            assert v["status"] == "pass" and v["metrics"]["cosine"] > 0.999, v
            assert report["stages"][f"{m}-{p}"]["status"] == "pass"
            out = readobj("--file-headers", "--coff-exports", "--coff-imports", d / f"lib{m}_htp.dll")
            assert "Format: COFF-ARM64" in out and "IMAGE_FILE_MACHINE_ARM64" in out
            assert "Name: QnnModel_composeGraphs" in out and "Name: QnnModel_freeGraphsInfo" in out
            assert "Name: msvcrt.dll" in out and "Name: kernel32.dll" in out       # the card's link line
            info = json.loads((d / f"lib{m}_htp_{p}.serialized.json").read_text())["info"]["graphs"][0]["info"]
            assert info["graphName"] == m                                          # the converter's .cpp stem
            ctx = onnx.load(str(d / f"{m}_qairt_ctx.onnx"))
            assert ctx.graph.node[0].op_type == "EPContext" and ctx.graph.node[0].name == m
            # I/O of the QNN graph: the converter's sanitized names, and the ONNX datatypes in every
            # precision (--preserve_io): float32 in and out of the fp16 context too
            pre = onnx.load(str(folder / "artifacts" / "preprocessed" / f"{m}.onnx"), load_external_data=False)
            assert [i.name for i in ctx.graph.input] == [sanitize(i.name) for i in pre.graph.input]
            for ours, theirs in ((ctx.graph.input, pre.graph.input), (ctx.graph.output, pre.graph.output)):
                assert ([v.type.tensor_type.elem_type for v in ours]
                        == [onnx.TensorProto.INT32 if v.type.tensor_type.elem_type == onnx.TensorProto.INT64
                            else v.type.tensor_type.elem_type for v in theirs])
    assert report["runtime_precision"] == {m: {"precision": "fp16", "requested": "fp16"} for m in MODELS}
    assert doit(pipe, env=env).ran == set()


def test_patched_converter_output_keeps_every_matmul(qairt_build):
    folder, _, _, _ = qairt_build
    for p, want in (("fp16", "MatMul"), ("fp32", "FullyConnected")):
        net = json.loads((folder / "artifacts" / "qairt" / p / "llm_backbone" / "llm_backbone_net.json").read_text())
        nodes = net["graph"]["nodes"].values()
        pre = onnx.load(str(folder / "artifacts" / "preprocessed" / "llm_backbone.onnx"))
        two_d = {sanitize(t.name) for t in pre.graph.initializer if len(t.dims) == 2}
        with_2d_weight = [n for n in nodes if n["type"] in ("MatMul", "FullyConnected") and n["input_names"][1] in two_d]
        assert with_2d_weight and {n["type"] for n in with_2d_weight} == {want}
        # no Gemm reaches the converter (it would become FullyConnected whatever the patch says)
        assert "Gemm" not in {n.op_type for n in pre.graph.node}
        if p == "fp16":
            assert "FullyConnected" not in {n["type"] for n in nodes}


def test_recorded_arguments_and_working_folders(qairt_build):
    folder, _, _, _ = qairt_build
    log = folder / "calls.jsonl"
    conv = calls(log, "qnn-onnx-converter")
    floats = [c for c in conv if not c["args"]["input_list"]]
    assert {c["args"]["float_bitwidth"] for c in floats} == {16, 32}
    assert all(c["args"]["preserve_io"] == [] for c in floats)         # layout and datatype kept
    gens = calls(log, "qnn-context-binary-generator")
    assert all(c["args"]["model"].endswith(".so") and not c["args"]["binary_file"].endswith(".bin") for c in gens)
    libgen = calls(log, "qnn-model-lib-generator")
    assert all(c["args"]["lib_targets"] == [["x86_64-linux-clang"]] for c in libgen)
    # every tool ran in its own staging folder under artifacts; none is left behind, nor any tmp_<N>
    for c in conv + libgen + gens:
        assert "/.staging/" in c["cwd"] + "/" and c["cwd"].startswith(str(folder / "artifacts")), c["cwd"]
    assert not list((folder / "artifacts").rglob("tmp_*")) and not list(ROOT.glob("tmp_*"))
    assert not [p for p in (folder / "artifacts" / "qairt").rglob(".staging/*")]


def test_w8a16_uses_the_converters_quantizer_on_the_calibration_set(qairt_build):
    """--input_list over float32 .raw files of the recorded samples (`name:=path`, absolute), the
    2.25 quantizer flags, float I/O kept (--preserve_io): validated like the float precisions."""
    folder, _, _, first = qairt_build
    assert {f"{s}:{m}-w8a16" for s in ("convert", "context", "measure", "validate") for m in MODELS} | {
        "calibrate:libero_spatial-n4"} <= first.ran
    conv = [c for c in calls(folder / "calls.jsonl", "qnn-onnx-converter") if c["args"]["input_list"]]
    assert sorted(os.path.basename(c["args"]["output_path"]) for c in conv) == sorted(f"{m}.cpp" for m in MODELS)
    for c in conv:
        a = c["args"]
        assert (a["act_bitwidth"], a["weights_bitwidth"], a["bias_bitwidth"]) == (16, 8, 32)
        assert a["use_per_channel_quantization"] and a["use_per_row_quantization"] and a["preserve_io"] == []
        assert a["input_list"] == c["cwd"] + "/input_list.txt"
    for m in MODELS:
        net = json.loads((folder / "artifacts" / "qairt" / "w8a16" / m / f"{m}_net.json").read_text())
        io_types = {t["data_type"] for t in net["graph"]["tensors"].values() if t["type"] in (0, 1)}
        assert io_types <= {0x0232, 0x0032}                          # float32 (and int32 masks) I/O
        v = json.loads((folder / "artifacts" / "validation" / f"{m}-w8a16.json").read_text())
        assert v["toolchain"] == "qairt" and v["status"] == "pass" and v["metrics"]["cosine"] > 0.99, v


def test_converter_double_reads_the_input_list_files(qairt_build, fake_sdk, tmp_path):
    """The quantizer reads every listed file as float32 of the input's size: a short file fails."""
    folder, _, _, _ = qairt_build
    short = tmp_path / "short.raw"
    np.zeros(12, np.float32).tofile(short)
    (tmp_path / "il.txt").write_text(f"pixel_values:={short}\n")
    cmd = [sys.executable, str(fake_sdk / "bin" / "x86_64-linux-clang" / "qnn-onnx-converter"), "--input_network",
           str(folder / "artifacts" / "preprocessed" / "vision_encoder.onnx"), "--output_path",
           str(tmp_path / "vision_encoder.cpp"), "--input_list", str(tmp_path / "il.txt"), "--act_bitwidth", "16"]
    env = Sdk(fake_sdk, "", "x86_64-linux-clang").env()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "has 48 bytes, expected 3145728 (float32 [1, 3, 512, 512])" in proc.stderr


def test_a_failed_runs_leftovers_are_never_moved_into_place(qairt_build):
    folder, pipe, env, _ = qairt_build
    d = folder / "artifacts" / "qairt" / "fp32" / "vision_encoder"
    staging = d / ".staging" / "context"
    staging.mkdir(parents=True)
    stale = staging / "libvision_encoder_htp_fp32.serialized.bin"
    stale.write_bytes(b"half-written by a killed run")
    (d / "htp_backend_ext.json").unlink()            # a target gone: the context task reruns
    assert "context:vision_encoder-fp32" in doit(pipe, env=env).ran
    assert (d / "libvision_encoder_htp_fp32.serialized.bin").read_bytes() != b"half-written by a killed run"
    assert not staging.exists()


def test_edited_model_cpp_recompiles_relinks_and_regenerates_not_reconverts(qairt_build):
    folder, pipe, env, _ = qairt_build
    cpp = folder / "artifacts" / "qairt" / "fp32" / "action_head" / "action_head.cpp"
    cpp.write_text(cpp.read_text() + '\nextern "C" QNN_API int smolvla_edit_marker(void) { return 7; }\n')
    ran = doit(pipe, env=env).ran
    rebuilt = {f"{s}:action_head-fp32" for s in ("compile", "link", "hostlib", "context")}
    assert rebuilt <= ran <= rebuilt | {"measure:action_head-fp32", "validate:action_head-fp32", "report"}  # if the binary changed


def test_qnn_net_run_runner_matches_the_epcontext_runner(qairt_build, fake_sdk, monkeypatch, tmp_path):
    """One qnn-net-run process per call, float32 .raw inputs except the int32 mask (graph:names), the
    graph's names mapped onto the context's; the same numbers as the context in onnxruntime-qnn."""
    from smolvla_build.config import load_pipeline
    from smolvla_runtime.feeds import cast_feeds
    from smolvla_build.runtime.contexts import htp_runner
    from smolvla_build.toolchains.epcontext import graph_io
    from smolvla_build.toolchains.qairt.sdk import discover
    folder, pipe_path, env, _ = qairt_build
    monkeypatch.setenv("QAIRT_SDK_ROOT", str(fake_sdk))
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    monkeypatch.setenv("FAKE_QAIRT_LOG", str(folder / "calls.jsonl"))
    pipe = load_pipeline(pipe_path)
    layout, sdk, net_settings = pipe.layout("qairt"), discover(pipe), pipe.section("evaluation")["qnn_net_run"]
    rng = np.random.default_rng(0)
    inputs, _ = graph_io(layout.preprocessed("action_head"))
    feeds = {n: np.ones(dims, np.int32) if dtype == "int32" else rng.uniform(-1, 1, dims).astype(np.float32)
             for n, dtype, dims in inputs}
    net_run = htp_runner(layout, "action_head", "fp16", pipe.soc, pipe.precisions["fp16"].settings, "qnn-net-run",
                         sdk=sdk, net_run=net_settings)
    ort = htp_runner(layout, "action_head", "fp16", pipe.soc, pipe.precisions["fp16"].settings, "ort-qnn")
    a = net_run.infer(cast_feeds(net_run, feeds))
    b = ort.infer(cast_feeds(ort, feeds))
    assert a["v_t"].dtype == np.float32 and b["v_t"].dtype == np.float32
    assert np.allclose(a["v_t"], b["v_t"], atol=2e-3)
    call = calls(folder / "calls.jsonl", "qnn-net-run")[-1]
    assert call["args"]["native_input_tensor_names"] == "action_head:prefix_pad_mask"
    # its own backend-extension config, from evaluation.qnn_net_run, and the staged HTP libraries
    assert call["args"]["cores"] == {"core_id": 0, "perf_profile": "burst", "rpc_control_latency": 100}
    # artifacts/.qnn-net-run/ here has a space (input lists are space-separated): a temporary folder
    backend = Path(call["args"]["backend"])
    assert " " in str(layout.qnn_net_run_dir("action_head", "fp16")) and " " not in str(backend)
    assert backend.name == "libQnnHtp.so" and backend.parent.name == "htp" and (backend.parent / "libQnnSystem.so").is_file()
    net_run.deactivate()
    assert not backend.parent.exists()
    # a runner nobody deactivates removes its temporary folder when it goes away
    forgotten = htp_runner(layout, "action_head", "fp16", pipe.soc, pipe.precisions["fp16"].settings, "qnn-net-run",
                           sdk=sdk, net_run=net_settings)
    staged = forgotten.activate().folder
    assert (staged / "htp" / "libQnnHtp.so").is_file()
    del forgotten
    gc.collect()
    assert not staged.exists()
    # the .raw files the runner writes hold what the context declares (--preserve_io: float32 and int32)
    from smolvla_build.toolchains.epcontext import net_json_signature
    from smolvla_build.toolchains.qairt.qnn_io import write_raw_inputs
    declared = {n: (t, dims) for n, t, dims in net_json_signature(layout.qairt("action_head", "fp16").net_json)[0]}
    line, native = write_raw_inputs(cast_feeds(net_run, feeds), inputs, tmp_path)
    sizes = {onnx.TensorProto.FLOAT: 4, onnx.TensorProto.INT32: 4}
    for name, path in line:
        t, dims = declared[name]
        assert Path(path).stat().st_size == sizes[t] * int(np.prod(dims)), name
    assert native == [n for n, (t, _) in declared.items() if t == onnx.TensorProto.INT32]


def test_qnn_net_run_double_rejects_bare_native_names(qairt_build, fake_sdk, tmp_path):
    folder, _, _, _ = qairt_build
    d = folder / "artifacts" / "qairt" / "fp32" / "vision_encoder"
    x = tmp_path / "x.raw"
    np.zeros((1, 3, 512, 512), np.float32).tofile(x)
    (tmp_path / "il.txt").write_text(f"pixel_values:={x}\n")
    base = [str(fake_sdk / "bin" / "x86_64-linux-clang" / "qnn-net-run"), "--retrieve_context",
            str(d / "libvision_encoder_htp_fp32.serialized.bin"), "--backend",
            str(fake_sdk / "lib" / "x86_64-linux-clang" / "libQnnHtp.so"), "--input_list", str(tmp_path / "il.txt"),
            "--output_dir", str(tmp_path / "out")]
    bad = subprocess.run(base + ["--native_input_tensor_names", "pixel_values"], capture_output=True, text=True)
    assert bad.returncode != 0 and "Native Input Tensor Names are not in expected format" in bad.stderr


def test_qnn_net_run_runtime_runs_a_libero_episode(qairt_build):
    pytest.importorskip("libero", reason="LIBERO is installed by scripts/install_libero.sh (scripts/test.sh runs it)")
    folder, pipe, env, _ = qairt_build
    cfg = yaml.safe_load(pipe.read_text())
    cfg["evaluation"]["runtime"] = "qnn-net-run"
    episode = folder / "episode.yaml"          # same folder, same artifacts
    episode.write_text(yaml.safe_dump(cfg))
    res = doit(episode, "infer:task0", env=env)
    assert "infer:task0" in res.ran
    out = folder / "artifacts" / "eval" / "libero_spatial" / "task0"
    actions = json.loads((out / "actions.json").read_text())["actions"]
    assert len(actions) == 4 and all(len(a) == 7 and all(np.isfinite(a)) for a in actions)
    runs = calls(folder / "calls.jsonl", "qnn-net-run")
    assert {Path(c["args"]["retrieve_context"]).name for c in runs} >= {
        f"lib{m}_htp_fp16.serialized.bin" for m in MODELS}


# --- 6.-9. compile, link, lib generator ----------------------------------------------------------------

def test_compile_without_msvc_headers_is_one_clear_line(fake_sdk, tmp_path, tiny_export):
    pipe = write_pipeline(tmp_path, toolchain={"kind": "qairt", "sdk_version": SDK_VERSION},
                          source={"preset": "tiny", "weights": "onnx", "path": str(tiny_export)})
    env = dict(os.environ, QNN_SDK_ROOT=str(fake_sdk))
    res = doit(pipe, "compile:action_head-fp32", check=False, env=env)
    assert res.returncode != 0
    assert re.search(r"clang-cl: QnnModel.cpp needs <(cstdlib|limits)>, which is in the MSVC and Windows SDK headers: "
                     r"set toolchain.msvc.include", res.stdout)


def test_link_needs_the_crt_and_windows_libraries(fake_sdk, fake_msvc, tmp_path, tiny_export):
    msvc = {"include": fake_msvc["include"]}                     # headers, but no library folder
    pipe = write_pipeline(tmp_path, toolchain=qairt_toolchain(msvc),
                          source={"preset": "tiny", "weights": "onnx", "path": str(tiny_export)})
    res = doit(pipe, "link:action_head-fp32", check=False, env=dict(os.environ, QNN_SDK_ROOT=str(fake_sdk)))
    assert res.returncode != 0
    assert "msvcrt.lib, kernel32.lib not found" in res.stdout + res.stderr and "toolchain.msvc.lib" in res.stdout + res.stderr


def test_objects_ask_for_the_crt_the_link_line_has(qairt_build, tmp_path):
    folder, _, _, _ = qairt_build
    obj = folder / "artifacts" / "qairt" / "fp32" / "action_head" / "obj" / "QnnModel.o"
    assert "/DEFAULTLIB:msvcrt.lib" in coff_directives(obj)              # /MD
    check_crt([str(obj)], ["msvcrt.lib", "kernel32.lib", "QnnHtp.lib"], [])
    src = tmp_path / "mt.cpp"
    src.write_text('extern "C" int f(void) { return 1; }\n')
    mt = tmp_path / "mt.o"
    subprocess.run([CLANG, "--driver-mode=cl", "/nologo", "/c", "/MT", "--target=aarch64-pc-windows-msvc", f"/Fo{mt}",
                    "--", str(src)], check=True)
    assert "/DEFAULTLIB:libcmt.lib" in coff_directives(mt)
    with pytest.raises(RuntimeError, match=r"mt.o asks for the VC\+\+ runtime as a static library \(/MT: libcmt.lib\) "
                                           r"but the link line has msvcrt.lib"):
        check_crt([str(mt)], ["msvcrt.lib", "kernel32.lib"], [])
    check_crt([str(mt)], ["msvcrt.lib"], ["/NODEFAULTLIB:libcmt.lib"])
    # the SDK's line: the VC++ runtime static, the UCRT as a DLL (its parts may differ)
    check_crt([str(mt)], ["libcmt.lib", "libvcruntime.lib", "ucrt.lib", "kernel32.lib"], ["/NODEFAULTLIB:libucrt.lib"])
    with pytest.raises(RuntimeError, match=r"QnnModel.o asks for the VC\+\+ runtime as a DLL library \(/MD: msvcrt.lib\)"):
        check_crt([str(obj)], ["libcmt.lib", "ucrt.lib", "kernel32.lib"], [])


def test_the_sdks_static_vc_runtime_line_builds_a_dll_without_the_vc_runtime_dll(fake_sdk, fake_msvc, tmp_path, tiny_export):
    """toolchain.link.crt: mt (the SDK's CMakeLists.txt: /MT, ucrt.lib, /NODEFAULTLIB:libucrt.lib, no
    QnnHtp.lib): the DLL imports the UCRT (part of Windows) and kernel32 only, no VC++ runtime DLL."""
    pipe = write_pipeline(tmp_path, toolchain=qairt_toolchain(fake_msvc, link={"crt": "mt"}),
                          source={"preset": "tiny", "weights": "onnx", "path": str(tiny_export)})
    env = dict(os.environ, QNN_SDK_ROOT=str(fake_sdk), FAKE_QAIRT_LOG=str(tmp_path / "calls.jsonl"))
    doit(pipe, "link:action_head-fp16", env=env)
    d = tmp_path / "artifacts" / "qairt" / "fp16" / "action_head"
    assert "/DEFAULTLIB:libcmt.lib" in coff_directives(d / "obj" / "QnnModel.o")
    imports = re.findall(r"Name: (\S+\.dll)", readobj("--coff-imports", d / "libaction_head_htp.dll"), re.I)
    assert sorted({i.lower() for i in imports}) == ["kernel32.dll", "ucrtbase.dll"]
    # switching back to the card's line recompiles and relinks, nothing before them
    pipe = write_pipeline(tmp_path, toolchain=qairt_toolchain(fake_msvc),
                          source={"preset": "tiny", "weights": "onnx", "path": str(tiny_export)})
    again = doit(pipe, "link:action_head-fp16", env=env)
    assert again.ran == {"compile:action_head-fp16", "link:action_head-fp16"}
    imports = re.findall(r"Name: (\S+\.dll)", readobj("--coff-imports", d / "libaction_head_htp.dll"), re.I)
    assert "msvcrt.dll" in {i.lower() for i in imports}


def test_lib_generator_needs_clang_plus_plus_on_its_path(qairt_build, fake_sdk, tmp_path):
    folder, _, _, _ = qairt_build
    d = folder / "artifacts" / "qairt" / "fp32" / "action_head"
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("make", "tar", "objcopy", "sh", "bash"):                # everything but a clang++
        os.symlink(shutil.which(tool), bare / tool)
    env = dict(Sdk(fake_sdk, "", "x86_64-linux-clang").env(), PATH=str(bare))
    proc = subprocess.run([sys.executable, str(fake_sdk / "bin" / "x86_64-linux-clang" / "qnn-model-lib-generator"),
                           "-c", str(d / "action_head.cpp"), "-b", str(d / "action_head.bin"), "-t", "x86_64-linux-clang",
                           "-o", str(tmp_path / "lib")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode != 0 and "Could not find compiler: clang++" in proc.stderr
    assert not list(tmp_path.glob("tmp_*"))                              # the Linux build dir is removed on exit
    assert (folder / "artifacts" / ".tools" / "bin" / "clang++").is_symlink()   # what the chain gave it


def test_windows_arm64_host_links_the_lib_generators_weight_objects(fake_sdk, fake_msvc, tmp_path, tiny_export):
    """The Windows ARM64 layout (toolchain.host): qnn-model-lib-generator -t windows-aarch64 stages
    tmp_*/obj/windows-aarch64 (and, as without the VS ClangCL toolset, fails its own CMake build);
    its weight objects are linked by hand into the DLL, which the context generator loads itself."""
    pipe = write_pipeline(tmp_path, toolchain=qairt_toolchain(fake_msvc, host="aarch64-windows-msvc"),
                          source={"preset": "tiny", "weights": "onnx", "path": str(tiny_export)})
    env = dict(os.environ, QNN_SDK_ROOT=str(fake_sdk), FAKE_QAIRT_LOG=str(tmp_path / "calls.jsonl"))
    listed = doit(pipe, "list", "--all", env=env).stdout
    assert "compile:action_head-fp16" in listed and "hostlib:" not in listed
    res = doit(pipe, "validate:action_head-fp16", env=env)
    assert {"convert:action_head-fp16", "compile:action_head-fp16", "link:action_head-fp16",
            "context:action_head-fp16", "measure:action_head-fp16", "validate:action_head-fp16"} <= res.ran
    d = tmp_path / "artifacts" / "qairt" / "fp16" / "action_head"
    weights = sorted((d / "obj" / "weights").glob("*.o"))
    assert weights and not (d / ".staging" / "libgen").exists() and not (d / "obj" / "weights.o").exists()
    manifest = json.loads((d / "obj" / "objects.json").read_text())["objects"]
    assert {str(w) for w in weights} <= set(manifest)
    out = readobj("--file-headers", "--coff-exports", d / "libaction_head_htp.dll")
    assert "IMAGE_FILE_MACHINE_ARM64" in out and "Name: QnnModel_composeGraphs" in out
    libgen = calls(tmp_path / "calls.jsonl", "qnn-model-lib-generator")
    assert [c["args"]["lib_targets"] for c in libgen] == [[["windows-aarch64"]]]
    gen = calls(tmp_path / "calls.jsonl", "qnn-context-binary-generator")
    assert gen[0]["args"]["model"].endswith("libaction_head_htp.dll")
    assert gen[0]["args"]["backend"].endswith("aarch64-windows-msvc/QnnHtp.dll")
    # the 2.25 layout: the converter from arm64x-windows-msvc, and no qnn-context-binary-utility for
    # Windows: the context is described from the converter's _net.json
    net = json.loads((d / "action_head_net.json").read_text())
    assert "/bin/arm64x-windows-msvc/qnn-onnx-converter " in net["converter_command"]
    assert not calls(tmp_path / "calls.jsonl", "qnn-context-binary-utility")
    assert json.loads((d / "action_head_context.json").read_text())["described_by"] == "_net.json"
    assert "exited 1 after making the weight objects" in res.stderr
    assert json.loads((tmp_path / "artifacts" / "validation" / "action_head-fp16.json").read_text())["status"] == "pass"
    # 2.25's generator stops without object-generator.exe beside itself (doctor names it too)
    sdk = _sdk_copy(tmp_path, fake_sdk, "sdk-without-object-generator")
    (sdk / "bin" / "aarch64-windows-msvc" / "object-generator.exe").unlink()
    env["QNN_SDK_ROOT"] = str(sdk)
    res = doit(pipe, "compile:action_head-fp16", check=False, env=env)
    out = res.stdout + res.stderr           # the tool's own output, and no traceback of the project's code
    assert res.returncode != 0 and "TaskFailed - taskid:compile:action_head-fp16" in out and "doit/action.py" not in out
    assert "RuntimeError: Windows model lib generator requires a object generator executable" in out


# --- 11. _net.json shapes, the EPContext wrapper ---------------------------------------------------------

def test_net_json_signature_orders_by_id_and_reads_every_dims_key(tmp_path):
    from smolvla_build.toolchains.epcontext import net_json_signature
    net = tmp_path / "m_net.json"
    net.write_text(json.dumps({"graph": {"tensors": {
        "out_1": {"id": 3, "type": 1, "data_type": 0x0216, "current_dims": [1, 4], "max_dims": [1, 8]},
        "b": {"id": 2, "type": 0, "data_type": 0x0032, "max_dims": [1]},
        "a": {"id": 1, "type": 0, "data_type": 0x0232, "dims": [1, 64, 64, 3]},
        "w": {"id": 4, "type": 4, "data_type": 0x0232, "dims": [4]}}}}))
    assert net_json_signature(net) == ([("a", onnx.TensorProto.FLOAT, [1, 64, 64, 3]), ("b", onnx.TensorProto.INT32, [1])],
                                       [("out_1", onnx.TensorProto.FLOAT16, [1, 4])])
    net.write_text(json.dumps({"graph": {"tensors": {"q": {"id": 1, "type": 0, "data_type": 0x0408, "dims": [1]}}}}))
    with pytest.raises(ValueError, match=r"m_net.json: tensor q: QNN data_type 0x0408"):
        net_json_signature(net)
    net.write_text(json.dumps({"graph": {"tensors": {"q": {"id": 1, "type": 0, "data_type": 0x0232}}}}))
    with pytest.raises(ValueError, match=r"tensor q: no dims, current_dims or max_dims"):
        net_json_signature(net)


def test_epcontext_wrapper_runs_an_ort_qnn_context_binary(tiny_export, tmp_path):
    """A context binary made by the ort-qnn toolchain, re-wrapped by our EPContext writer, runs in
    onnxruntime-qnn and gives the same outputs as onnxruntime's own wrapper."""
    from smolvla_build import model_files
    from smolvla_build.passes.pipeline import preprocess
    from smolvla_build.precisions import Precision
    from smolvla_build.toolchains.epcontext import signature, wrap_context_binary
    from smolvla_build.toolchains.ort_qnn import build_context
    from smolvla_runtime.runners import OrtQnnRunner
    soc = Soc("Snapdragon X Elite", 60, 73)
    precision = Precision("fp32", {"converter": {"float_bitwidth": 32},
                                   "context": {"fp16_relaxed_precision": True, "vtcm_mb": 8, "optimization_level": 3}})
    res = preprocess(onnx.load(str(tiny_export / "vision_encoder.onnx")))
    model_files.save_onnx(res.model, tmp_path / "ve.onnx")
    info = build_context(tmp_path / "ve.onnx", tmp_path / "ort" / "ve_ctx.onnx", soc, precision)
    node = onnx.load(str(tmp_path / "ort" / "ve_ctx.onnx")).graph.node[0]
    ours = tmp_path / "ours"
    ours.mkdir()
    shutil.copyfile(tmp_path / "ort" / info["binaries"][0], ours / "ve.serialized.bin")
    inputs, outputs = signature(tmp_path / "ve.onnx")
    wrap_context_binary(ours / "ve.serialized.bin", ours / "ve_qairt_ctx.onnx", node.name, inputs, outputs)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 512, 512)).astype(np.float32)
    a = OrtQnnRunner(tmp_path / "ort" / "ve_ctx.onnx", soc, precision.settings).infer({"pixel_values": x})
    b = OrtQnnRunner(ours / "ve_qairt_ctx.onnx", soc, precision.settings).infer({"pixel_values": x})
    assert np.array_equal(a["image_embeddings"], b["image_embeddings"])


def test_auto_picks_qairt_when_an_sdk_is_found(tmp_path, fake_sdk):
    pipe = write_pipeline(tmp_path, toolchain={"kind": "auto", "sdk_version": SDK_VERSION})
    env = {k: v for k, v in os.environ.items() if k not in ("QNN_SDK_ROOT", "QAIRT_SDK_ROOT")}
    for var in ("QNN_SDK_ROOT", "QAIRT_SDK_ROOT"):           # either variable, QAIRT_SDK_ROOT alone too
        with_sdk = doit(pipe, "list", env=dict(env, **{var: str(fake_sdk)}))
        assert "convert" in with_sdk.stdout.split() and f"({var}); using qairt" in with_sdk.stderr
    both = doit(pipe, "list", env=dict(env, QAIRT_SDK_ROOT=str(fake_sdk), QNN_SDK_ROOT=str(tmp_path / "nowhere")))
    assert "(QAIRT_SDK_ROOT); using qairt" in both.stderr
    without = doit(pipe, "list", env=env)
    assert "convert" not in without.stdout.split() and "using ort-qnn" in without.stderr


# --- the laptop: host layouts, the HTP runtime libraries, doctor (docs/qairt-sdk.md) ----------------

def test_tools_resolve_to_the_folders_the_public_tree_has_them_in(fake_sdk):
    """2.25: no converter in bin/aarch64-windows-msvc (it is in arm64x and x86_64-windows-msvc), no
    qnn-context-binary-utility for Windows; the ARM64 tools are .exe files."""
    from smolvla_build.toolchains.qairt.sdk import missing_tool
    win = Sdk(fake_sdk, "2.25.0.240728", "aarch64-windows-msvc")
    rel = {t: win.find_tool(t) and win.find_tool(t).relative_to(fake_sdk).as_posix() for t in
           ("qnn-onnx-converter", "qnn-model-lib-generator", "qnn-context-binary-generator", "qnn-net-run",
            "qnn-context-binary-utility")}
    assert rel == {"qnn-onnx-converter": "bin/arm64x-windows-msvc/qnn-onnx-converter",
                   "qnn-model-lib-generator": "bin/aarch64-windows-msvc/qnn-model-lib-generator",
                   "qnn-context-binary-generator": "bin/aarch64-windows-msvc/qnn-context-binary-generator.exe",
                   "qnn-net-run": "bin/aarch64-windows-msvc/qnn-net-run.exe", "qnn-context-binary-utility": None}
    assert missing_tool(win, "qnn-context-binary-utility") == (
        f"qnn-context-binary-utility.exe is not in the SDK at {fake_sdk} (2.25.0.240728) for host aarch64-windows-msvc "
        "(looked in bin/aarch64-windows-msvc, bin/x86_64-windows-msvc)")
    paths = win.env_paths()
    assert paths["PATH"][:2] == [str(fake_sdk / "lib" / "aarch64-windows-msvc"), str(fake_sdk / "bin" / "aarch64-windows-msvc")]
    assert str(fake_sdk / "bin" / "arm64x-windows-msvc") in paths["PATH"] and "LD_LIBRARY_PATH" not in paths
    env = win.env({"PATH": "/usr/bin"})
    assert env["QAIRT_SDK_ROOT"] == env["QNN_SDK_ROOT"] == str(fake_sdk) and env["PATH"].endswith(os.pathsep + "/usr/bin")
    linux = Sdk(fake_sdk, "2.25.0.240728", "x86_64-linux-clang")
    assert {t: linux.find_tool(t).parent.name for t in rel} == {t: "x86_64-linux-clang" for t in rel}
    assert linux.env_paths()["LD_LIBRARY_PATH"] == [str(fake_sdk / "lib" / "x86_64-linux-clang")]


def test_qnn_net_run_needs_the_stub_and_the_skel_beside_its_catalogue(qairt_build, fake_sdk, tmp_path):
    """On the Windows layout the double's qnn-net-run fails as the device does ("Unable to load Skel
    Library") unless the V73 stub and the skel + .cat pair are loadable; staged they are."""
    from smolvla_build.toolchains.qairt.htp import htp_runtime_libs, runtime_env, stage_htp_runtime
    folder, _, _, _ = qairt_build
    win = Sdk(fake_sdk, "2.25.0.240728", "aarch64-windows-msvc")
    libs = htp_runtime_libs(win, 73)
    assert {k: v.relative_to(fake_sdk).as_posix() for k, v in libs.items()} == {
        "backend": "lib/aarch64-windows-msvc/QnnHtp.dll", "system": "lib/aarch64-windows-msvc/QnnSystem.dll",
        "extensions": "lib/aarch64-windows-msvc/QnnHtpNetRunExtensions.dll",
        "stub": "lib/aarch64-windows-msvc/QnnHtpV73Stub.dll", "skel": "lib/hexagon-v73/unsigned/libQnnHtpV73Skel.so",
        "cat": "lib/hexagon-v73/unsigned/libqnnhtpv73.cat"}
    with pytest.raises(ToolchainError, match=r"cat lib/hexagon-v75/unsigned/libqnnhtpv75.cat is not in the SDK"):
        stage_htp_runtime(win, 75, tmp_path / "v75")              # 2.25 ships no catalogue for v75
    x = tmp_path / "x.raw"
    np.zeros((1, 3, 512, 512), np.float32).tofile(x)
    (tmp_path / "il.txt").write_text(f"pixel_values:={x}\n")
    binary = folder / "artifacts" / "qairt" / "fp32" / "vision_encoder" / "libvision_encoder_htp_fp32.serialized.bin"
    netrun = str(win.tool("qnn-net-run"))

    def run_with(backend, env):
        return subprocess.run([sys.executable, netrun, "--retrieve_context", str(binary), "--backend", str(backend),
                               "--input_list", str(tmp_path / "il.txt"), "--output_dir", str(tmp_path / "out")],
                              capture_output=True, text=True, env=env)
    bare = run_with(libs["backend"], win.env())
    assert bare.returncode != 0 and "Unable to load Skel Library. transportStatus: 9" in bare.stderr
    staged = stage_htp_runtime(win, 73, tmp_path / "htp")
    assert sorted(p.name for p in (tmp_path / "htp").iterdir()) == sorted(p.name for p in libs.values())
    ok = run_with(staged["backend"], runtime_env(win, tmp_path / "htp"))
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out" / "Result_0" / "image_embeddings.raw").is_file()


def _doctor(pipe, env, *args):
    return subprocess.run([sys.executable, "-m", "smolvla_build", "doctor", "--pipeline", str(pipe), *args],
                          capture_output=True, text=True, env=env)


def test_doctor_checks_a_windows_layout_from_linux(fake_sdk, fake_msvc, tmp_path):
    pipe = write_pipeline(tmp_path, toolchain=qairt_toolchain(fake_msvc))
    env = {k: v for k, v in os.environ.items() if k != "QNN_SDK_ROOT"}
    env["QAIRT_SDK_ROOT"] = str(fake_sdk)
    proc = _doctor(pipe, env, "--host", "aarch64-windows-msvc", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(proc.stdout)
    assert r["host"] == "aarch64-windows-msvc" and r["sdk"] == {"root": str(fake_sdk), "version": "2.25.0.240728",
                                                                 "named_by": "QAIRT_SDK_ROOT"}
    folders = {t: p and Path(p).relative_to(fake_sdk).parent.as_posix() for t, p in r["tools"].items()}
    assert folders == {"qnn-onnx-converter": "bin/arm64x-windows-msvc", "qnn-model-lib-generator": "bin/aarch64-windows-msvc",
                       "qnn-context-binary-generator": "bin/aarch64-windows-msvc", "qnn-net-run": "bin/aarch64-windows-msvc",
                       "qnn-context-binary-utility": None}
    assert {Path(p).name for p in r["htp_runtime_libs"]} >= {"QnnHtpV73Stub.dll", "libQnnHtpV73Skel.so", "libqnnhtpv73.cat"}
    assert r["env"]["PATH"][0] == str(fake_sdk / "lib" / "aarch64-windows-msvc") and r["problems"] == []
    assert any("qnn-context-binary-utility.exe is not in the SDK" in n and "_net.json instead" in n for n in r["notes"])
    # 2.25's Windows modules: the unsuffixed .pyd (the double's: this Python's version), 36 and 38
    here_version = "%d.%d" % sys.version_info[:2]
    assert r["converter_python"]["needs"] == f"x64 Python {here_version} or 3.6 or 3.8"
    assert "not checked" in r["converter_python"]["path"]
    assert {k: v and Path(v).relative_to(fake_sdk).as_posix() for k, v in r["sdk_files"].items()
            if k in ("object-generator.exe", "QnnHtpPrepare.dll", "qnn-platform-validator")} == {
        "object-generator.exe": "bin/aarch64-windows-msvc/object-generator.exe",
        "QnnHtpPrepare.dll": "lib/aarch64-windows-msvc/QnnHtpPrepare.dll",
        "qnn-platform-validator": "bin/aarch64-windows-msvc/qnn-platform-validator.exe"}
    # this machine: the converter's Python, the compilers and the MSVC folders are checked too
    if (os.uname().sysname, os.uname().machine) != ("Linux", "x86_64"):
        return
    here = json.loads(_doctor(pipe, env, "--json").stdout)
    assert here["host"] == "x86_64-linux-clang" and here["problems"] == [], here["problems"]
    assert here["converter_python"]["path"] == sys.executable and here["runtime_auto"]["runtime"] == "reference"
    assert here["converter_python"]["packages"]["numpy"] == np.__version__ and "object-generator.exe" not in here["sdk_files"]
    assert here["msvc"]["machines"] == {"msvcrt.lib": "ARM64", "kernel32.lib": "ARM64"}
    assert "qnn-platform-validator" not in here["sdk_files"]          # Linux has no NPU to test
    bad = write_pipeline(tmp_path, name="bad.yaml", toolchain={"kind": "qairt", "sdk_version": SDK_VERSION})
    text = _doctor(bad, env)
    assert text.returncode == 1 and "PROBLEM MSVC include folders: none set (toolchain.msvc.include)" in text.stdout


def _sdk_copy(tmp_path, fake_sdk, name="sdk") -> Path:
    dest = tmp_path / name
    shutil.copytree(fake_sdk, dest, symlinks=True)
    return dest


def _problems(pipe, env, *args) -> list[str]:
    proc = _doctor(pipe, env, "--json", *args)
    assert proc.returncode in (0, 1), proc.stderr
    r = json.loads(proc.stdout)
    assert (proc.returncode == 1) == bool(r["problems"])
    return r["problems"]


def test_doctor_reads_every_converter_module_by_its_imports(fake_sdk, fake_msvc, tmp_path):
    """Newer releases name the .pyd modules per Python (libPyIrGraph310.pyd, libPyIrGraph312.pyd): each
    module's own imports say which Python it needs, whatever its name; an unreadable one is a problem."""
    from smolvla_build.toolchains.qairt.python import requirement
    sdk = _sdk_copy(tmp_path, fake_sdk)
    pyd = sdk / "lib" / "python" / "qti" / "aisw" / "converters" / "common" / "windows-x86_64"
    shutil.rmtree(sdk / "lib" / "python" / "qti" / "aisw" / "converters" / "common" / "windows-arm64ec")
    (pyd / "libPyIrGraph36.pyd").unlink()
    (pyd / "libPyIrGraph.pyd").rename(pyd / "libPyIrGraph312.pyd")           # imports this Python's DLL
    (pyd / "libPyIrGraph38.pyd").rename(pyd / "libPyIrGraph310.pyd")          # imports python38.dll
    win = Sdk(sdk, read_version(sdk), "aarch64-windows-msvc")
    req = requirement(win, None)
    assert req["problem"] is None and req["versions"] == ["3.8", "%d.%d" % sys.version_info[:2]]
    assert req["modules"] == ["lib/python/qti/aisw/converters/common/windows-x86_64/libPyIrGraph310.pyd",
                              "lib/python/qti/aisw/converters/common/windows-x86_64/libPyIrGraph312.pyd"]
    (pyd / "libPyIrGraph311.pyd").write_bytes(b"MZ not a module")
    assert "libPyIrGraph311.pyd: not a readable PE module" in requirement(win, None)["problem"]
    pipe = write_pipeline(tmp_path, toolchain=qairt_toolchain(fake_msvc, sdk_root=str(sdk)))
    env = {k: v for k, v in os.environ.items() if k not in ("QNN_SDK_ROOT", "QAIRT_SDK_ROOT")}
    problems = _problems(pipe, env, "--host", "aarch64-windows-msvc")
    assert len(problems) == 1 and "libPyIrGraph311.pyd: not a readable PE module" in problems[0]


def test_doctor_names_each_missing_sdk_file_the_laptop_chain_needs(fake_sdk, fake_msvc, tmp_path):
    sdk = _sdk_copy(tmp_path, fake_sdk)
    for rel in ("bin/aarch64-windows-msvc/object-generator.exe", "lib/aarch64-windows-msvc/QnnHtpPrepare.dll",
                "bin/aarch64-windows-msvc/qnn-platform-validator.exe"):
        (sdk / rel).unlink()
    pipe = write_pipeline(tmp_path, toolchain=qairt_toolchain(fake_msvc, sdk_root=str(sdk)))
    env = {k: v for k, v in os.environ.items() if k not in ("QNN_SDK_ROOT", "QAIRT_SDK_ROOT")}
    proc = _doctor(pipe, env, "--host", "aarch64-windows-msvc")
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert f"PROBLEM bin/aarch64-windows-msvc/object-generator.exe is not in the SDK at {sdk}: " \
           "qnn-model-lib-generator stops without it beside itself" in proc.stdout
    assert f"PROBLEM lib/aarch64-windows-msvc/QnnHtpPrepare.dll is not in the SDK at {sdk}: " \
           "the context generator finalizes graphs with it" in proc.stdout
    assert "note    bin/aarch64-windows-msvc/qnn-platform-validator.exe is not in the SDK" in proc.stdout
    assert proc.stdout.rstrip().endswith("2 problem(s): the qairt chain cannot run")


def test_doctor_checks_the_converters_python_packages(fake_sdk, fake_msvc, tmp_path):
    """2.25's converter reads onnx.mapping (removed in onnx 1.19) and its bin/check-python-dependency
    pins numpy 1.26.4 (docs/qairt-sdk.md): an SDK whose sources do so, checked against this Python."""
    import onnx
    sdk = _sdk_copy(tmp_path, fake_sdk)
    onnx_dir = sdk / "lib" / "python" / "qti" / "aisw" / "converters" / "onnx"
    onnx_dir.mkdir()
    (onnx_dir / "util.py").write_text("from onnx import mapping\n")
    (sdk / "bin" / "check-python-dependency").write_text("deps = {'numpy': '1.26.4', 'onnx': '1.16.1'}\n")
    pipe = write_pipeline(tmp_path, toolchain=qairt_toolchain(fake_msvc, sdk_root=str(sdk)))
    env = {k: v for k, v in os.environ.items() if k not in ("QNN_SDK_ROOT", "QAIRT_SDK_ROOT")}
    r = json.loads(_doctor(pipe, env, "--json").stdout)
    has_mapping = hasattr(onnx, "mapping")
    assert r["converter_python"]["packages"] == {"numpy": np.__version__, "onnx": onnx.__version__,
                                                 "onnx.mapping": has_mapping}
    mapping = [p for p in r["problems"] if "onnx.mapping" in p]
    assert len(mapping) == (0 if has_mapping else 1)
    assert any(f"has numpy {np.__version__}; the SDK's bin/check-python-dependency pins 1.26.4" in n
               for n in r["notes"]) == (np.__version__ != "1.26.4")
    # a converter that does not start under that Python is a problem with its last line
    (sdk / "lib" / "python" / "qti" / "aisw" / "converters" / "common" / "__init__.py").write_text(
        "raise ImportError('No module named numpy.core._multiarray_umath')\n")
    problems = _problems(pipe, env)
    assert any(p.startswith(f"qnn-onnx-converter does not start under {sys.executable}: ImportError: No module named "
                            "numpy.core._multiarray_umath") for p in problems), problems


def test_doctor_requires_arm64_msvc_libraries(fake_sdk, fake_msvc, tmp_path):
    """A developer prompt targets x86 or x64 unless told otherwise: an x64 kernel32.lib in the LIB
    folders is a problem before lld-link fails on it."""
    from smolvla_build.toolchains.qairt.doctor import lib_machine
    lib = Path(fake_msvc["lib"][0])
    assert lib_machine(lib / "kernel32.lib") == lib_machine(lib / "msvcrt.lib") == "ARM64"
    x64 = tmp_path / "x64"
    x64.mkdir()
    (tmp_path / "kernel32.def").write_text("LIBRARY kernel32.dll\nEXPORTS\nGetLastError\n")
    subprocess.run([shutil.which("llvm-dlltool-16") or "llvm-dlltool", "-m", "i386:x86-64", "-d",
                    str(tmp_path / "kernel32.def"), "-l", str(x64 / "kernel32.lib")], check=True)
    assert lib_machine(x64 / "kernel32.lib") == "x64" and lib_machine(tmp_path / "kernel32.def") is None
    msvc = {"include": fake_msvc["include"], "lib": [str(x64), *fake_msvc["lib"]]}
    pipe = write_pipeline(tmp_path, toolchain=qairt_toolchain(msvc))
    env = dict(os.environ, QAIRT_SDK_ROOT=str(fake_sdk))
    env.pop("QNN_SDK_ROOT", None)
    assert _problems(pipe, env) == [f"{x64 / 'kernel32.lib'} is a x64 library, the model DLL links ARM64 ones: point "
                                    "toolchain.msvc.lib (or the developer prompt, `vcvarsall.bat x64_arm64`) at the "
                                    "ARM64 folders"]


def test_doctor_scopes_what_the_qairt_chain_lacks_by_the_pipeline(tmp_path):
    """An ort-qnn pipeline without an SDK: exit 0, the SDK noted, lines a person reads."""
    env = {k: v for k, v in os.environ.items() if k not in ("QNN_SDK_ROOT", "QAIRT_SDK_ROOT")}
    proc = _doctor(ROOT / "examples" / "tiny.yaml", env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "None" not in out and "{" not in out and "Traceback" not in out + proc.stderr
    assert "absent  QAIRT SDK: not found (toolchain.sdk_root, QAIRT_SDK_ROOT, QNN_SDK_ROOT)" in out
    assert "note    toolchain 'qairt' needs the Qualcomm AI Runtime SDK" in out and "PROBLEM" not in out
    assert out.rstrip().endswith("the pipeline builds with ort-qnn: what the qairt chain lacks is noted, not a problem")
    pipe = write_pipeline(tmp_path, toolchain={"kind": "qairt"})
    qairt = _doctor(pipe, env)
    assert qairt.returncode == 1 and "MISSING QAIRT SDK" in qairt.stdout and "PROBLEM toolchain 'qairt' needs" in qairt.stdout


def test_doctor_on_the_laptop_checks_its_npu_and_the_vc_runtime(fake_sdk, fake_msvc, tmp_path, monkeypatch):
    """On the Windows ARM64 host itself (simulated: this machine named as that host): no NPU
    registered by onnxruntime-qnn is a problem when the pipeline runs on the HTP, and the card's /MD
    DLL needs vcruntime140.dll."""
    from smolvla_build.config import load_pipeline
    from smolvla_build.toolchains.qairt import doctor, sdk as sdk_module
    monkeypatch.setattr(sdk_module, "host_name", lambda configured="auto": "aarch64-windows-msvc")
    pipe_file = write_pipeline(tmp_path, toolchain=qairt_toolchain(fake_msvc, sdk_root=str(fake_sdk)),
                               evaluation={"tasks": [0], "max_steps": 4, "runtime": "ort-qnn"})
    system32 = tmp_path / "Windows" / "System32"
    system32.mkdir(parents=True)
    r = doctor.report(load_pipeline(pipe_file), environ={"SystemRoot": str(tmp_path / "Windows")})
    assert r["this_machine"] and r["onnxruntime_qnn"]["npu"] is False       # the emulator is a CPU device
    assert any(p.startswith("onnxruntime-qnn registered no NPU on this machine") and "qnn-platform-validator.exe "
               "--backend dsp --testBackend" in p for p in r["problems"]), r["problems"]
    assert any(p.startswith("vcruntime140.dll not found") for p in r["problems"])
    (system32 / "vcruntime140.dll").write_bytes(b"")
    again = doctor.report(load_pipeline(pipe_file), environ={"SystemRoot": str(tmp_path / "Windows")})
    assert again["link"]["vc_runtime"] == str(system32 / "vcruntime140.dll")
    assert not any("vcruntime140" in p for p in again["problems"])
    (system32 / "vcruntime140.dll").unlink()              # the SDK's /MT line needs no VC++ runtime DLL
    mt = write_pipeline(tmp_path, name="mt.yaml", toolchain=qairt_toolchain(fake_msvc, sdk_root=str(fake_sdk),
                                                                             link={"crt": "mt"}))
    static = doctor.report(load_pipeline(mt), environ={"SystemRoot": str(tmp_path / "Windows")})
    assert static["link"]["libs"] == ["libcmt.lib", "libvcruntime.lib", "ucrt.lib", "kernel32.lib"]
    assert not any("vcruntime140" in p for p in static["problems"]) and "vc_runtime" not in static["link"]
    assert static["msvc"]["machines"] == {"libcmt.lib": "ARM64", "kernel32.lib": "ARM64"}


def test_a_missing_converter_python_is_one_line_in_the_tasks_that_need_it(tmp_path, fake_msvc, tiny_export):
    """An SDK whose converter modules link a Python this host lacks: `doit list` and the stages that
    do not run the converter work; convert fails with one line, no traceback."""
    from make_fake_sdk import fake_qairt_sdk
    sdk = fake_qairt_sdk(tmp_path / "sdk399", python=(3, 99))
    pipe = write_pipeline(tmp_path, toolchain=qairt_toolchain(fake_msvc),
                          source={"preset": "tiny", "weights": "onnx", "path": str(tiny_export)})
    env = dict(os.environ, QAIRT_SDK_ROOT=str(sdk))
    env.pop("QNN_SDK_ROOT", None)
    listed = doit(pipe, "list", "--all", env=env)
    assert "convert:action_head-fp16" in listed.stdout and "Traceback" not in listed.stderr
    assert "preprocess:action_head" in doit(pipe, "preprocess:action_head", env=env).ran
    res = doit(pipe, "convert:action_head-fp16", check=False, env=env)
    assert res.returncode != 0 and "Traceback" not in res.stdout + res.stderr
    assert "qairt: the SDK's converter modules (lib/python/qti/aisw/converters/common/linux-x86_64/libPyIrGraph.so) " \
           "need Python 3.99, which is not installed here" in res.stdout + res.stderr


# --- 14. layout -------------------------------------------------------------------------------------

def test_runtime_does_not_reach_into_the_task_layer():
    import ast
    for f in (ROOT / "smolvla_build" / "runtime").glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "stages" not in (node.module or ""), f"{f.name} imports {node.module}"
