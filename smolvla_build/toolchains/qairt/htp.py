"""The HTP side of the SDK: the libraries qnn-net-run loads for a SoC's htp_arch, staged into one
folder, and the JSON configs of qnn-context-binary-generator and qnn-net-run (built as dicts and
written with json: a `"` or `\\` in a path cannot break them). The facts and their public sources
are in docs/qairt-sdk.md, "HTP libraries" and "Backend-extension configs".
"""

from __future__ import annotations

import os
from pathlib import Path

from smolvla_runtime.host import htp_stub_name
from smolvla_runtime.htp import Soc

from .sdk import Sdk

# qnn-net-run's perf profiles (2.25 tools.html, qnn-net-run --perf_profile; the same list is the
# backend-extension `cores[].perf_profile`)
PERF_PROFILES = ("low_balanced", "balanced", "default", "high_performance", "sustained_high_performance", "burst",
                 "low_power_saver", "power_saver", "high_power_saver", "extreme_power_saver", "system_settings")
LOG_LEVELS = ("error", "warn", "info", "verbose", "debug")
PROFILING_LEVELS = ("basic", "detailed", "client")


def htp_runtime_libs(sdk: Sdk, htp_arch: int) -> dict[str, Path]:
    """role -> SDK file that qnn-net-run needs to run a context on `htp_arch`.

    Windows ARM64: QnnHtp.dll, QnnSystem.dll and the V<arch> stub from lib/aarch64-windows-msvc, the
    skel and its signature catalogue from lib/hexagon-v<arch>/unsigned; the skel and the .cat must
    sit in one folder, and Qualcomm's tutorials put all of them beside each other. Linux x86_64: the
    backend simulates the HTP (no stub or skel)."""
    libs = {"backend": sdk.lib / sdk.layout.backend, "system": sdk.lib / sdk.layout.system_lib,
            "extensions": sdk.lib / sdk.layout.extensions}
    if sdk.layout.windows:
        hexagon = sdk.hexagon(htp_arch)
        libs.update(stub=sdk.lib / htp_stub_name(htp_arch), skel=hexagon / f"libQnnHtpV{htp_arch}Skel.so",
                    cat=hexagon / f"libqnnhtpv{htp_arch}.cat")
    return libs


def missing_runtime_libs(sdk: Sdk, htp_arch: int) -> list[str]:
    return [f"qnn-net-run's {role} {p.relative_to(sdk.root).as_posix()} is not in the SDK at {sdk.root} ({sdk.version})"
            for role, p in htp_runtime_libs(sdk, htp_arch).items() if not p.is_file()]


def stage_htp_runtime(sdk: Sdk, htp_arch: int, folder: Path) -> dict[str, Path]:
    """The runtime libraries linked (or copied) side by side into `folder`: role -> path. A file
    already there with the same content stays (Windows cannot replace a DLL a running qnn-net-run
    has loaded); another one is replaced atomically."""
    import filecmp

    from ...fsutil import link_or_copy
    missing = missing_runtime_libs(sdk, htp_arch)
    if missing:
        from .. import ToolchainError
        raise ToolchainError("qairt: " + "; ".join(missing))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staged = {}
    for role, src in htp_runtime_libs(sdk, htp_arch).items():
        dest = folder / src.name
        if not (dest.is_file() and filecmp.cmp(src, dest, shallow=True)):
            link_or_copy(src, dest)
        staged[role] = dest
    return staged


def runtime_env(sdk: Sdk, staged_folder: Path, base: dict | None = None) -> dict:
    """The SDK's environment with the staged folder searched first: PATH on Windows (the DLL search
    path, where the stub finds the skel beside it), LD_LIBRARY_PATH on Linux (the x86_64 backend
    simulates the HTP: no skel to find)."""
    env = sdk.env(base)
    var = "PATH" if sdk.layout.windows else "LD_LIBRARY_PATH"
    env[var] = os.pathsep.join([str(staged_folder)] + ([env[var]] if env.get(var) else []))
    return env


def device_config(soc: Soc) -> dict:
    return {"soc_model": soc.soc_model, "dsp_arch": f"v{soc.htp_arch}", "pd_session": "unsigned"}


def context_backend_extensions(graph: str, soc: Soc, ctx: dict) -> dict:
    """qnn-context-binary-generator's HTP backend extensions: the graph options apply only to the
    graphs named in graph_names (the converter's graph name, the .cpp stem); `cores` settings are
    read by qnn-net-run alone, so they live in `netrun_backend_extensions`."""
    return {"graphs": [{"graph_names": [graph], "vtcm_mb": int(ctx["vtcm_mb"]),
                        "fp16_relaxed_precision": 1 if ctx["fp16_relaxed_precision"] else 0,
                        "O": int(ctx["optimization_level"]), "hvx_threads": int(ctx["hvx_threads"])}],
            "devices": [device_config(soc)],
            "context": {"weight_sharing_enabled": False}}


def netrun_backend_extensions(soc: Soc, net_run: dict) -> dict:
    """qnn-net-run's HTP backend extensions: the device and its core's performance settings
    (evaluation.qnn_net_run in pipeline.yaml)."""
    core = {"core_id": 0, "perf_profile": net_run["perf_profile"], "rpc_control_latency": int(net_run["rpc_control_latency"])}
    if net_run.get("rpc_polling_time") is not None:
        core["rpc_polling_time"] = int(net_run["rpc_polling_time"])
    device = dict(device_config(soc), device_id=0, cores=[core])
    return {"devices": [device]}


def backend_config(extensions_lib: Path, extensions_json: Path) -> dict:
    """The --config_file of both tools: which extension library reads which JSON."""
    return {"backend_extensions": {"shared_library_path": str(extensions_lib), "config_file_path": str(extensions_json)}}
