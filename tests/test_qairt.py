"""The qairt toolchain with the test-double SDK (tests/fixtures/fake_qairt_sdk) and real clang/lld."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest

from smolvla_build import MODELS
from smolvla_build.templates import render, render_command
from smolvla_build.toolchains.qairt import sanitize

from conftest import ROOT, doit, write_pipeline

FAKE_SDK = ROOT / "tests" / "fixtures" / "fake_qairt_sdk"
READOBJ = shutil.which("llvm-readobj-16") or shutil.which("llvm-readobj")
needs_llvm = pytest.mark.skipif(not (shutil.which("clang-16") and shutil.which("lld-link-16") and READOBJ),
                                reason="clang-16/lld-16 are installed by scripts/test.sh")


# --- golden tests on the rendered text -----------------------------------------------------------

def test_converter_command_golden():
    cmd = render_command("qairt/converter.j2", host="posix", python="/usr/bin/python3",
                         converter="/sdk/bin/x86_64-linux-clang/qnn-onnx-converter", disable_matmul_to_fc=False,
                         onnx="/my models/llm.onnx", cpp="/out/llm.cpp", float_bitwidth=16, float_bias_bitwidth=32,
                         extra_args=[])
    assert cmd == ("/usr/bin/python3 /sdk/bin/x86_64-linux-clang/qnn-onnx-converter --input_network '/my models/llm.onnx' "
                   "--output_path /out/llm.cpp --float_bitwidth 16 --float_bias_bitwidth 32 --preserve_io layout")
    patched = render_command("qairt/converter.j2", host="posix", python="py", converter="conv",
                             disable_matmul_to_fc=True, onnx="m.onnx", cpp="m.cpp", float_bitwidth=32,
                             float_bias_bitwidth=0, extra_args=["--no_simplification"])
    assert patched == ("py -m smolvla_build.toolchains.converter_patch conv --input_network m.onnx --output_path m.cpp "
                       "--float_bitwidth 32 --preserve_io layout --no_simplification")


def test_windows_quoting_golden():
    cmd = render_command("qairt/converter.j2", host="nt", python=r"C:\Python 311\python.exe",
                         converter=r"C:\qairt\2.43.0.260128\bin\aarch64-windows-msvc\qnn-onnx-converter",
                         disable_matmul_to_fc=False, onnx=r"C:\My Models\llm.onnx", cpp=r"C:\out\llm.cpp",
                         float_bitwidth=16, float_bias_bitwidth=0, extra_args=[])
    assert cmd.startswith('"C:\\Python 311\\python.exe" C:\\qairt\\2.43.0.260128\\bin\\aarch64-windows-msvc\\qnn-onnx-converter '
                          '--input_network "C:\\My Models\\llm.onnx"')


def test_compile_link_context_golden():
    assert render_command("qairt/clang_cl_compile.j2", host="posix", clang_cl="clang-cl", target="aarch64-pc-windows-msvc",
                          jni="/sdk/share/QNN/converter/jni", include="/sdk/include/QNN", source="/o/QnnModel.cpp",
                          obj="/o/QnnModel.o") == (
        'clang-cl /nologo /c /O2 /MT /EHsc /GS- --target=aarch64-pc-windows-msvc "-DQNN_API=__declspec(dllexport)" '
        "/I /sdk/share/QNN/converter/jni /I /sdk/include/QNN /Fo/o/QnnModel.o -- /o/QnnModel.cpp")
    assert render_command("qairt/lld_link.j2", host="posix", lld_link="lld-link", dll="/o/libllm_htp.dll",
                          objects=["/o/a.o", "/o/b c.o"], libpaths=["/winsdk/lib"], libs=["msvcrt.lib", "kernel32.lib", "QnnHtp.lib"],
                          link_flags=[]) == (
        "lld-link /nologo /DLL /MACHINE:ARM64 /OUT:/o/libllm_htp.dll /LIBPATH:/winsdk/lib /o/a.o '/o/b c.o' "
        "msvcrt.lib kernel32.lib QnnHtp.lib")
    assert render_command("qairt/context_binary_generator.j2", host="posix", ctxgen="/sdk/bin/qnn-context-binary-generator",
                          model_lib="/o/libllm.so", backend="/sdk/lib/libQnnHtp.so",
                          binary_name="libllm_backbone_htp_fp16.serialized", outdir="/o", config="/o/htp_config.json") == (
        "/sdk/bin/qnn-context-binary-generator --model /o/libllm.so --backend /sdk/lib/libQnnHtp.so "
        "--binary_file libllm_backbone_htp_fp16.serialized --output_dir /o --config_file /o/htp_config.json")
    assert render_command("qairt/qnn_net_run.j2", host="posix", netrun="qnn-net-run", context="/o/ctx.bin",
                          backend="libQnnHtp.so", input_list="/o/input_list.txt", outdir="/o/out",
                          native_inputs=["lang_mask"]) == (
        "qnn-net-run --retrieve_context /o/ctx.bin --backend libQnnHtp.so --input_list /o/input_list.txt "
        "--output_dir /o/out --native_input_tensor_names lang_mask")
    assert render("qairt/input_list.txt.j2", lines=[[("x_t", "/in/x.raw"), ("timestep", "/in/t.raw")]]) == \
        "x_t:=/in/x.raw timestep:=/in/t.raw\n"


def test_htp_config_json_golden():
    ext = json.loads(render("qairt/htp_backend_ext.json.j2", graph_name="llm_backbone", soc_model=60, htp_arch=73,
                            vtcm_mb=8, fp16_relaxed_precision=True, optimization_level=3, hvx_threads=4))
    assert ext["graphs"] == [{"graph_names": ["llm_backbone"], "vtcm_mb": 8, "fp16_relaxed_precision": 1, "O": 3,
                              "hvx_threads": 4}]
    assert ext["devices"][0]["soc_model"] == 60 and ext["devices"][0]["dsp_arch"] == "v73"
    cfg = json.loads(render("qairt/htp_config.json.j2", extensions_lib="/sdk/lib/libQnnHtpNetRunExtensions.so",
                            backend_ext="/o/htp_backend_ext.json"))
    assert cfg == {"backend_extensions": {"shared_library_path": "/sdk/lib/libQnnHtpNetRunExtensions.so",
                                          "config_file_path": "/o/htp_backend_ext.json"}}


# --- the chain through doit with the test-double SDK ----------------------------------------------

@pytest.fixture(scope="module")
def qairt_build(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qairt with space")
    data = {"kind": "qairt"}
    pipe = write_pipeline(folder, toolchain=data)
    cfg = json.loads(json.dumps(__import__("yaml").safe_load(pipe.read_text())))
    cfg["precisions"]["fp16"]["converter"]["disable_matmul_to_fc"] = True
    pipe.write_text(__import__("yaml").safe_dump(cfg))
    env = dict(os.environ, QNN_SDK_ROOT=str(FAKE_SDK), FAKE_QAIRT_LOG=str(folder / "calls.jsonl"))
    first = doit(pipe, env=env)
    return folder, pipe, env, first


@needs_llvm
def test_full_chain_produces_arm64_dlls(qairt_build):
    folder, pipe, env, first = qairt_build
    for stage in ("convert", "compile", "link", "hostlib", "context"):
        assert {f"{stage}:{m}-{p}" for m in MODELS for p in ("fp16", "fp32")} <= first.ran
    for m in MODELS:
        for p in ("fp16", "fp32"):
            d = folder / "artifacts" / "qairt" / p / m
            dll = d / f"lib{m}_htp.dll"
            out = subprocess.run([READOBJ, "--file-headers", "--coff-exports", str(dll)], capture_output=True, text=True).stdout
            assert "Format: COFF-ARM64" in out and "IMAGE_FILE_MACHINE_ARM64" in out
            assert "Name: QnnModel_composeGraphs" in out and "Name: QnnModel_freeGraphsInfo" in out
            assert (d / f"lib{m}_htp_{p}.serialized.bin").read_bytes().startswith(b"FAKE-QNN-CONTEXT")
            ctx = onnx.load(str(d / f"{m}_qairt_ctx.onnx"))
            assert ctx.graph.node[0].op_type == "EPContext"
            # I/O of the QNN graph: the converter's sanitized names, fp16 floats in the fp16 context
            pre = onnx.load(str(folder / "artifacts" / "preprocessed" / f"{m}.onnx"), load_external_data=False)
            assert [i.name for i in ctx.graph.input] == [sanitize(i.name) for i in pre.graph.input]
            float_type = onnx.TensorProto.FLOAT16 if p == "fp16" else onnx.TensorProto.FLOAT
            assert [o.type.tensor_type.elem_type for o in ctx.graph.output] == [float_type] * len(pre.graph.output)
    assert doit(pipe, env=env).ran == set()


@needs_llvm
def test_recorded_arguments(qairt_build):
    folder, _, _, _ = qairt_build
    calls = [json.loads(line) for line in (folder / "calls.jsonl").read_text().splitlines()]
    conv = [c for c in calls if c["tool"] == "qnn-onnx-converter"]
    assert {c["args"]["float_bitwidth"] for c in conv} == {16, 32}
    assert all(c["args"]["preserve_io"] == ["layout"] for c in conv)
    nets = {p: json.loads((folder / "artifacts" / "qairt" / p / "llm_backbone" / "llm_backbone_net.json").read_text())
            for p in ("fp16", "fp32")}
    assert nets["fp16"]["test_double_applied_optimizations"] == []               # the card's patch, applied per precision
    assert nets["fp32"]["test_double_applied_optimizations"] == ["matmul_to_fc"]
    gens = [c for c in calls if c["tool"] == "qnn-context-binary-generator"]
    assert all(c["args"]["model"].endswith(".so") and not c["args"]["binary_file"].endswith(".bin") for c in gens)
    libgen = [c for c in calls if c["tool"] == "qnn-model-lib-generator"]
    assert all(c["args"]["lib_targets"] == ["x86_64-linux-clang"] for c in libgen)


@needs_llvm
def test_windows_arm64_host_links_the_lib_generators_weight_objects(tmp_path):
    """The Windows ARM64 layout (toolchain.host): qnn-model-lib-generator -t windows-aarch64 stages
    tmp_*/obj/windows-aarch64 (and, as without the VS ClangCL toolset, fails its own CMake build);
    its weight objects are linked by hand into the DLL, which the context generator loads itself."""
    pipe = write_pipeline(tmp_path, toolchain={"kind": "qairt", "host": "aarch64-windows-msvc"})
    env = dict(os.environ, QNN_SDK_ROOT=str(FAKE_SDK), FAKE_QAIRT_LOG=str(tmp_path / "calls.jsonl"))
    listed = doit(pipe, "list", "--all", env=env).stdout
    assert "compile:action_head-fp16" in listed and "hostlib:" not in listed
    res = doit(pipe, "context:action_head-fp16", env=env)
    assert {"convert:action_head-fp16", "compile:action_head-fp16", "link:action_head-fp16",
            "context:action_head-fp16"} <= res.ran
    d = tmp_path / "artifacts" / "qairt" / "fp16" / "action_head"
    weights = sorted((d / "obj" / "weights").glob("*.o"))
    assert weights and not (d / "obj" / "libgen").exists() and not (d / "obj" / "weights.o").exists()
    manifest = json.loads((d / "obj" / "objects.json").read_text())["objects"]
    assert {str(w) for w in weights} <= set(manifest)
    out = subprocess.run([READOBJ, "--file-headers", "--coff-exports", str(d / "libaction_head_htp.dll")],
                         capture_output=True, text=True).stdout
    assert "IMAGE_FILE_MACHINE_ARM64" in out and "Name: QnnModel_composeGraphs" in out
    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    libgen = [c for c in calls if c["tool"] == "qnn-model-lib-generator"]
    assert [c["args"]["lib_targets"] for c in libgen] == [["windows-aarch64"]]
    gen = [c for c in calls if c["tool"] == "qnn-context-binary-generator"]
    assert gen[0]["args"]["model"].endswith("libaction_head_htp.dll")
    assert gen[0]["args"]["backend"].endswith("aarch64-windows-msvc/QnnHtp.dll")
    assert "exited 1 after making the weight objects" in res.stderr


@needs_llvm
def test_edited_model_cpp_recompiles_relinks_and_regenerates_not_reconverts(qairt_build):
    folder, pipe, env, _ = qairt_build
    cpp = folder / "artifacts" / "qairt" / "fp32" / "action_head" / "action_head.cpp"
    cpp.write_text(cpp.read_text() + '\nextern "C" QNN_API int smolvla_edit_marker(void) { return 7; }\n')
    assert doit(pipe, env=env).ran == {f"{s}:action_head-fp32" for s in ("compile", "link", "hostlib", "context")}


def test_sdk_version_mismatch_is_one_line(tmp_path):
    sdk = tmp_path / "sdk"
    shutil.copytree(FAKE_SDK, sdk, symlinks=True)
    (sdk / "sdk.yaml").write_text("version: 2.40.0.250101\n")
    pipe = write_pipeline(tmp_path, toolchain={"kind": "qairt"})
    res = doit(pipe, "list", check=False, env=dict(os.environ, QNN_SDK_ROOT=str(sdk)))
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode != 0 and len(lines) == 1
    assert "version 2.40.0.250101" in lines[0] and "expects 2.43.0.260128" in lines[0]
    pipe = write_pipeline(tmp_path, toolchain={"kind": "qairt", "on_version_mismatch": "warn"})
    assert "convert:vision_encoder-fp16" in doit(pipe, "list", "--all", env=dict(os.environ, QNN_SDK_ROOT=str(sdk))).stdout


def test_auto_picks_qairt_when_an_sdk_is_found(tmp_path):
    pipe = write_pipeline(tmp_path, toolchain={"kind": "auto"})
    with_sdk = doit(pipe, "list", env=dict(os.environ, QNN_SDK_ROOT=str(FAKE_SDK)))
    assert "convert" in with_sdk.stdout.split() and "using qairt" in with_sdk.stderr
    env = dict(os.environ)
    env.pop("QNN_SDK_ROOT", None)
    without = doit(pipe, "list", env=env)
    assert "convert" not in without.stdout.split() and "using ort-qnn" in without.stderr


def test_epcontext_wrapper_runs_an_ort_qnn_context_binary(tiny_export, tmp_path):
    """A context binary made by the ort-qnn toolchain, re-wrapped by our EPContext writer, runs in
    onnxruntime-qnn and gives the same outputs as onnxruntime's own wrapper."""
    from smolvla_build import onnx_io
    from smolvla_build.passes import preprocess
    from smolvla_build.runtime import OrtQnnRunner
    from smolvla_build.toolchains.epcontext import signature, wrap_context_binary
    from smolvla_build.toolchains.ort_qnn import build_context
    soc = {"soc_model": 60, "htp_arch": 73}
    precision = {"converter": {"float_bitwidth": 32},
                 "context": {"fp16_relaxed_precision": True, "vtcm_mb": 8, "optimization_level": 3}}
    res = preprocess(onnx.load(str(tiny_export / "vision_encoder.onnx")))
    onnx_io.save(res.model, tmp_path / "ve.onnx")
    info = build_context(tmp_path / "ve.onnx", tmp_path / "ort" / "ve_ctx.onnx", soc, precision)
    node = onnx.load(str(tmp_path / "ort" / "ve_ctx.onnx")).graph.node[0]
    ours = tmp_path / "ours"
    ours.mkdir()
    shutil.copyfile(tmp_path / "ort" / info["binaries"][0], ours / "ve.serialized.bin")
    inputs, outputs = signature(tmp_path / "ve.onnx")
    wrap_context_binary(ours / "ve.serialized.bin", ours / "ve_qairt_ctx.onnx", node.name, inputs, outputs)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 512, 512)).astype(np.float32)
    a = OrtQnnRunner(tmp_path / "ort" / "ve_ctx.onnx", soc, precision).infer({"pixel_values": x})
    b = OrtQnnRunner(ours / "ve_qairt_ctx.onnx", soc, precision).infer({"pixel_values": x})
    assert np.array_equal(a["image_embeddings"], b["image_embeddings"])


def test_qnn_net_run_runner_raw_formats(tmp_path, monkeypatch):
    """One process per call, float32 .raw inputs except native int32 ones, Result_0/<name>.raw back."""
    from smolvla_build.runtime import QnnNetRunRunner
    from smolvla_build.toolchains.qairt import Sdk
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_QAIRT_LOG", str(log))
    program = {"inputs": {"x_t": {"dims": [1, 2, 3], "dtype": "float32"},
                          "_embed_tokens_Gather_output_0": {"dims": [1, 2], "dtype": "float32"},
                          "lang_mask": {"dims": [1, 4], "dtype": "int32"}},
               "outputs": {"v_t": {"dims": [1, 2, 3], "expr": "x_t * 2 + lang_mask.sum()"}}}
    ctx = tmp_path / "ctx dir" / "m.serialized.bin"
    ctx.parent.mkdir()
    ctx.write_bytes(b"FAKE-QNN-CONTEXT\n" + json.dumps({"program": program}).encode())
    sdk = Sdk(FAKE_SDK, "2.43.0.260128", "x86_64-linux-clang")
    runner = QnnNetRunRunner(ctx, sdk, [("x_t", "float32", [1, 2, 3]), ("/embed_tokens/Gather_output_0", "float32", [1, 2]),
                                        ("lang_mask", "int32", [1, 4])], [("v_t", [1, 2, 3])])
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    out = runner.infer({"x_t": x, "/embed_tokens/Gather_output_0": np.ones((1, 2)), "lang_mask": np.array([[1, 1, 0, 0]])})
    assert np.array_equal(out["v_t"], x * 2 + 2)
    call = json.loads(log.read_text().splitlines()[-1])
    assert call["args"]["native_input_tensor_names"] == "lang_mask"
    assert call["args"]["retrieve_context"] == str(ctx)
    runner.infer({"x_t": x, "/embed_tokens/Gather_output_0": np.ones((1, 2)), "lang_mask": np.zeros((1, 4))})
    assert len(runner.inference_times) == 2 and len(log.read_text().splitlines()) == 2


def test_net_json_signature_orders_by_id_and_names_unknown_types(tmp_path):
    from smolvla_build.toolchains.epcontext import net_json_signature
    net = tmp_path / "m_net.json"
    net.write_text(json.dumps({"graph": {"tensors": {
        "out_1": {"id": 3, "type": 1, "data_type": 0x0216, "dims": [1, 4]},
        "b": {"id": 2, "type": 0, "data_type": 0x0032, "dims": [1]},
        "a": {"id": 1, "type": 0, "data_type": 0x0232, "dims": [1, 64, 64, 3]},
        "w": {"id": 4, "type": 4, "data_type": 0x0232, "dims": [4]}}}}))
    assert net_json_signature(net) == ([("a", onnx.TensorProto.FLOAT, [1, 64, 64, 3]), ("b", onnx.TensorProto.INT32, [1])],
                                       [("out_1", onnx.TensorProto.FLOAT16, [1, 4])])
    net.write_text(json.dumps({"graph": {"tensors": {"q": {"id": 1, "type": 0, "data_type": 0x0408, "dims": [1]}}}}))
    with pytest.raises(ValueError, match=r"m_net.json: tensor q: QNN data_type 0x0408"):
        net_json_signature(net)


def test_sanitized_names_follow_the_converter():
    assert sanitize("output.1") == "output_1"
    assert sanitize("/model/x:0") == "_model_x_0"
    assert sanitize("/embed_tokens/Gather_output_0") == "_embed_tokens_Gather_output_0"
    assert sanitize("1st") == "_1st"
