"""JSON schema of pipeline.yaml.

Every object is closed (`additionalProperties: false`) so a misspelt key is an error, not a
silently ignored setting.
"""

from smolvla_runtime.model import MODELS, PRESETS

from ..evaluate.libero_env import SUITE_TASKS
from ..export.conventions import VISION_POSITION_IDS
from smolvla_runtime.htp import CONTEXT_PRIORITIES, PERFORMANCE_MODES

from ..toolchains.qairt.htp import LOG_LEVELS, PERF_PROFILES, PROFILING_LEVELS

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
SUITES = list(SUITE_TASKS)
TASK_ID = {"type": "integer", "minimum": 0, "maximum": max(SUITE_TASKS.values()) - 1}

_converter = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        # qnn-onnx-converter --float_bitwidth / --float_bias_bitwidth; ort-qnn converts the ONNX
        # weights and activations to float16 when float_bitwidth is 16.
        "float_bitwidth": {"enum": [16, 32]},
        "float_bias_bitwidth": {"enum": [0, 16, 32]},
        "extra_args": {"type": "array", "items": {"type": "string"}},
        # qairt: run the converter with its MATMUL_TO_FC optimization disabled (the card's patch),
        # without editing the SDK (smolvla_build/toolchains/qairt/converter_patch.py)
        "disable_matmul_to_fc": {"type": "boolean"},
    },
}

# An integer precision: weights and activations quantized with scales calibrated on recorded LIBERO
# inputs (artifacts/calibration/). ort-qnn: onnxruntime's QNN QDQ quantizer; qairt: the converter's
# --input_list quantizer. Combinations the HTP runs: W8A8, W8A16, W16A16 (checked in loader.py).
_quantization = {
    "type": "object",
    "additionalProperties": False,
    "required": ["weights", "activations"],
    "properties": {
        "weights": {"enum": [8, 16]},
        "activations": {"enum": [8, 16]},
        "per_channel": {"type": "boolean"},          # one weight scale per output channel
        "symmetric": {"type": "boolean"},            # symmetric weight (and activation) ranges
        "calibration": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"samples": {"type": "integer", "minimum": 1, "maximum": 4096}},
        },
    },
}

QUANTIZATION_COMBINATIONS = {(8, 8), (8, 16), (16, 16)}     # (weights, activations)

_gate = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "cosine_min": {"type": "number", "minimum": -1, "maximum": 1},
        "max_abs": {"type": "number", "exclusiveMinimum": 0},
        "max_relative": {"type": ["number", "null"], "exclusiveMinimum": 0},
    },
}

_context = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        # HTP graph options: backend-extension JSON (qairt) or provider options (ort-qnn).
        "fp16_relaxed_precision": {"type": "boolean"},
        "vtcm_mb": {"type": "integer", "minimum": 0},
        "optimization_level": {"enum": [1, 2, 3]},
        "hvx_threads": {"type": "integer", "minimum": 1},
    },
}

PIPELINE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["source", "precisions"],
    "properties": {
        "artifacts": {"type": "string", "minLength": 1},
        "source": {
            "type": "object",
            "additionalProperties": False,
            "required": ["preset", "weights"],
            "properties": {
                "preset": {"enum": list(PRESETS)},
                "weights": {"enum": ["random", "checkpoint", "hub", "onnx"]},
                "seed": {"type": "integer", "minimum": 0},
                "path": {"type": "string", "minLength": 1},
                "repo_id": {"type": "string", "pattern": r"^[\w.-]+/[\w.-]+$"},
                "revision": {"type": "string"},
                # the SmolVLM2 tokenizer: a folder holding tokenizer.json, or the file; default: the
                # checkpoint's tokenizer/ folder, its tokenizer.json, then vlm_model_name's (hub cache)
                "tokenizer": {"type": "string", "minLength": 1},
                # the vision encoder's patch position ids as this transformers major computes them:
                # the LeRobot the checkpoint was trained with decides (docs/lerobot-versions.md);
                # unset: read from files beside the checkpoint, else transformers-4 (LeRobot 0.4.4)
                "vision_position_ids": {"enum": list(VISION_POSITION_IDS)},
            },
        },
        "models": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"enum": list(MODELS)},
        },
        "precisions": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": IDENTIFIER},
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                # converter.float_bitwidth (a float precision) or quantization (an integer one)
                "properties": {"converter": _converter, "context": _context, "quantization": _quantization},
            },
        },
        "soc": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "soc_model": {"type": "integer", "minimum": 0},
                "htp_arch": {"type": "integer", "enum": [68, 69, 73, 75, 79, 81]},
            },
        },
        "toolchain": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "kind": {"enum": ["auto", "qairt", "ort-qnn"]},
                "sdk_version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+(\.\d+)?$"},
                "sdk_root": {"type": ["string", "null"]},
                "on_version_mismatch": {"enum": ["error", "warn"]},
                # the SDK host layout (bin/<host>, lib/<host>) and how the weight objects are made;
                # auto = this machine (Linux x86_64 or Windows ARM64)
                "host": {"enum": ["auto", "x86_64-linux-clang", "aarch64-windows-msvc"]},
                # the Python that runs qnn-onnx-converter: null = the version the SDK's compiled
                # converter modules link (QAIRT 2.25: 3.10), found on PATH
                "python": {"type": ["string", "null"]},
                # the MSVC STL/CRT and Windows SDK folders (ARM64) for clang-cl /imsvc and lld-link
                # /LIBPATH; on a Windows host the VS developer environment's INCLUDE/LIB by default
                "msvc": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "include": {"type": "array", "items": {"type": "string"}},
                        "lib": {"type": "array", "items": {"type": "string"}},
                    },
                },
                # the model DLL's C runtime (crt: md, the card's /MD line, or mt, the SDK's /MT one) and
                # extra lld-link inputs; libs replaces the crt's libraries
                "link": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "crt": {"enum": ["md", "mt"]},
                        "libpaths": {"type": "array", "items": {"type": "string"}},
                        "libs": {"type": "array", "items": {"type": "string"}},
                        "link_flags": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
        "preprocess": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "mask_bound": {"type": "number", "exclusiveMaximum": 0},
                "equivalence_rtol": {"type": "number", "exclusiveMinimum": 0},
                "seed": {"type": "integer", "minimum": 0},
            },
        },
        # the reference runtime's CPU copy of each preprocessed model (`doit reference`)
        "reference": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "cpu_fusions": {"type": "boolean"},
                "max_relative_error": {"type": "number", "exclusiveMinimum": 0},
            },
        },
        "validation": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "on_saturation": {"enum": ["fail", "fallback-fp32", "warn"]},
                # under fallback-fp32: what a miss of the precision fallen back to (fp32) does
                "on_fallback_miss": {"enum": ["fail", "warn"]},
                "cosine_min": {"type": "number", "minimum": -1, "maximum": 1},
                "max_abs": {"type": "number", "exclusiveMinimum": 0},
                # max abs error / max |reference| of every model's output: the same meaning at any scale
                # (max_abs, the action chunk's, sits at fp16's own step near |ref| = 4); null: off
                "max_relative": {"type": ["number", "null"], "exclusiveMinimum": 0},
                "seed": {"type": "integer", "minimum": 0},
                # per precision: its own cosine_min / max_abs (defaults: QUANTIZED_GATES for integer ones)
                "gates": {"type": "object", "propertyNames": {"pattern": IDENTIFIER}, "additionalProperties": _gate},
            },
        },
        # the LIBERO episodes the integer precisions are calibrated on (one set per sample count,
        # shared by every quantized precision): the fp32 reference policy acting in them
        "calibration": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "suite": {"type": ["string", "null"], "enum": [None, *SUITES]},
                "tasks": {"oneOf": [{"type": "array", "minItems": 1, "items": TASK_ID}, {"const": "all"}]},
                "seed": {"type": "integer", "minimum": 0},
            },
        },
        "bundle": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                # the precision `doit bundle` packs (default: evaluation.precision)
                "precision": {"type": "string", "pattern": IDENTIFIER},
            },
        },
        "evaluation": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                # proxy: each precision's CPU proxy (docs/runtimes.md, "CPU proxies")
                "runtime": {"enum": ["auto", "reference", "ort-qnn", "qnn-net-run", "proxy"]},
                # the proxy runtime runs a stage only if its measured distance to the HTP output is at
                # most this fraction of the HTP's own distance to fp32
                "proxy_max_ratio": {"type": "number", "exclusiveMinimum": 0},
                # doit divergence: these precisions' episodes beside the fp32 reference policy
                "divergence": {"type": "array", "items": {"type": "string", "pattern": IDENTIFIER}},
                # one precision for every model, or per model ({action_head: fp16, default: w8a16})
                "precision": {"oneOf": [{"type": "string", "pattern": IDENTIFIER},
                                        {"type": "object", "minProperties": 1, "additionalProperties": False,
                                         "properties": {k: {"type": "string", "pattern": IDENTIFIER} for k in
                                                        ("default", *MODELS)}}]},
                "suite": {"enum": SUITES},
                # doit eval (Ray): suites x tasks x trials; default suites: [suite]
                "suites": {"type": ["array", "null"], "minItems": 1, "items": {"enum": SUITES}},
                "tasks": {"oneOf": [{"type": "array", "items": TASK_ID}, {"const": "all"}]},
                "trials": {"oneOf": [{"type": "integer", "minimum": 1, "maximum": 50},
                                     {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 49}}]},
                "workers": {"type": ["integer", "null"], "minimum": 1},      # null: what cores and memory allow
                # how often `doit eval`/`divergence` report the step of each episode still running
                "progress_every_s": {"type": "number", "exclusiveMinimum": 0},
                "videos": {"enum": ["first", "all", "none"]},
                "ray": {"type": "object", "additionalProperties": False,
                        "properties": {"address": {"type": ["string", "null"]}}},   # null: a local instance
                "trial": {"type": "integer", "minimum": 0},
                "n_action_steps": {"type": "integer", "minimum": 1, "maximum": 50},
                "max_steps": {"type": ["integer", "null"], "minimum": 1},
                "seed": {"type": "integer", "minimum": 0},
                # the onnxruntime-qnn sessions' performance settings (runtime ort-qnn, and validation's
                # measurements): docs/runtimes.md, "HTP performance settings"
                "ort_qnn": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "htp_performance_mode": {"enum": list(PERFORMANCE_MODES)},
                        "rpc_control_latency": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},  # microseconds
                        "qnn_context_priority": {"enum": list(CONTEXT_PRIORITIES)},
                    },
                },
                # qnn-net-run's backend-extension config (runtime qnn-net-run; docs/qairt-sdk.md)
                "qnn_net_run": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "perf_profile": {"enum": list(PERF_PROFILES)},
                        "rpc_control_latency": {"type": "integer", "minimum": 0},        # microseconds
                        "rpc_polling_time": {"type": ["integer", "null"], "minimum": 0},  # microseconds
                        "log_level": {"enum": [None, *LOG_LEVELS]},
                        "profiling_level": {"enum": [None, *PROFILING_LEVELS]},
                    },
                },
            },
        },
    },
}

DEFAULTS = {
    "artifacts": "artifacts",
    "source": {"seed": 0},
    "models": list(MODELS),
    "soc": {"name": "Snapdragon X Elite", "soc_model": 60, "htp_arch": 73},
    "toolchain": {
        "kind": "auto",
        "sdk_version": "2.43.0.260128",
        "sdk_root": None,
        "on_version_mismatch": "error",
        "host": "auto",
        "python": None,
    },
    "preprocess": {"mask_bound": -1.0e4, "equivalence_rtol": 1.0e-5, "seed": 0},
    "reference": {"cpu_fusions": True, "max_relative_error": 1.0e-5},
    "validation": {"on_saturation": "fallback-fp32", "on_fallback_miss": "fail", "cosine_min": 0.999, "max_abs": 5.0e-3,
                   "max_relative": 0.02, "seed": 0, "gates": {}},
    "calibration": {"suite": None, "tasks": "all", "seed": 0},
    "evaluation": {
        "runtime": "auto",
        "proxy_max_ratio": 0.2,
        "divergence": [],
        "precision": "fp16",
        "suite": "libero_spatial",
        "suites": None,
        "tasks": [0],
        "trials": 1,
        "workers": None,
        "progress_every_s": 60,
        "videos": "first",
        "ray": {"address": None},
        "trial": 0,
        "n_action_steps": 10,
        "max_steps": None,
        "seed": 0,
        "ort_qnn": {"htp_performance_mode": "burst", "rpc_control_latency": 100, "qnn_context_priority": "normal"},
        "qnn_net_run": {"perf_profile": "burst", "rpc_control_latency": 100, "rpc_polling_time": None,
                        "log_level": None, "profiling_level": None},
    },
}

# Gates of an integer precision unless validation.gates.<precision> says otherwise. Set from the full
# preset (BENCHMARKS.md section 9): W8A16 passes (worst cosine 0.99942, vision encoder; action chunk
# max abs 0.036), W8A8 misses (cosine 0.68 / 0.82 / 0.993, action max abs 0.40).
QUANTIZED_GATES = {"cosine_min": 0.999, "max_abs": 0.05, "max_relative": None}      # relative: not measured yet
QUANTIZATION_DEFAULTS = {"per_channel": True, "symmetric": False, "calibration": {"samples": 32}}

PRECISION_DEFAULTS = {
    # the card's converter: MATMUL_TO_FC disabled (its "patched: matmul_to_fc disabled")
    "converter": {"float_bias_bitwidth": 0, "extra_args": [], "disable_matmul_to_fc": True},
    "context": {"fp16_relaxed_precision": True, "vtcm_mb": 8, "optimization_level": 3, "hvx_threads": 4},
}
