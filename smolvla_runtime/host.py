"""Which runtime this host runs by default, and why.

`runtime: auto` picks ort-qnn only where a Hexagon NPU is reachable: Windows on a native ARM64
machine (Snapdragon X), with onnxruntime-qnn's HTP libraries for this Python's architecture (the
V<arch> stub among them) and a QNN device that registers. Everything else runs the fp32 reference on
the CPU. The facts behind each rule, with their public sources, are in docs/laptop.md:

- An x64 Python on Windows ARM64 runs under emulation; its platform.machine() says AMD64 before
  Python 3.12 and ARM64 from 3.12 on, so the machine's own architecture comes from IsWow64Process2
  (its native machine) and the interpreter's from its build (sysconfig).
- onnxruntime-qnn's win_arm64 wheel keeps the HTP libraries in its package folder; its win_amd64
  wheel loads libs/arm64ec (ARM64X libraries with the stub) or libs/amd64 (no stub: no NPU), chosen
  by platform.machine() in its platform_loader.py, so an emulated x64 Python before 3.12 gets amd64.

The decision is a plain function of a `Host` description and a probe of the HTP libraries
(`choose_runtime`), so it is tested on any machine with simulated hosts. Nothing here imports numpy
or onnxruntime unless the host is Windows ARM64 (task generation asks on every `doit`).
"""

from __future__ import annotations

import logging
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger("smolvla_runtime.policy")

# IMAGE_FILE_MACHINE_* values (winnt.h) that IsWow64Process2 reports
IMAGE_FILE_MACHINE = {0xAA64: "arm64", 0x8664: "x64", 0x014C: "x86", 0x01C4: "arm"}
MACHINE_NAMES = {"arm64": "arm64", "aarch64": "arm64", "amd64": "x64", "x86_64": "x64", "x64": "x64",
                 "x86": "x86", "i386": "x86", "i686": "x86"}


def machine_name(raw: str) -> str:
    """platform.machine()'s many spellings as arm64 | x64 | x86 (others lower-cased)."""
    return MACHINE_NAMES.get(raw.lower(), raw.lower())


@dataclass(frozen=True)
class Host:
    """What the runtime choice depends on: the OS, this interpreter's architecture and the machine's own."""
    system: str                    # platform.system(): Windows | Linux | Darwin
    python_machine: str            # this process: arm64 | x64 | ...
    native_machine: str            # the machine: arm64 | x64 | ... (differs under emulation)
    python_version: tuple[int, int] = (3, 12)

    @property
    def emulated(self) -> bool:
        return self.python_machine != self.native_machine

    def describe(self) -> str:
        py = f"{self.python_machine} Python {self.python_version[0]}.{self.python_version[1]}"
        return f"{self.system} {self.native_machine}" + (f" ({py} under emulation)" if self.emulated else f" ({py})")


def windows_native_machine() -> str | None:
    """The machine's own architecture from kernel32's IsWow64Process2 (Windows 10 1709+), which an
    emulated process cannot be misled about; None where the call is unavailable."""
    import ctypes
    from ctypes import wintypes
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    fn = getattr(kernel32, "IsWow64Process2", None)
    if fn is None:
        return None
    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    fn.argtypes = [wintypes.HANDLE, ctypes.POINTER(wintypes.USHORT), ctypes.POINTER(wintypes.USHORT)]
    fn.restype = wintypes.BOOL
    process, native = wintypes.USHORT(), wintypes.USHORT()
    if not fn(kernel32.GetCurrentProcess(), ctypes.byref(process), ctypes.byref(native)):
        return None
    return IMAGE_FILE_MACHINE.get(native.value, hex(native.value))


def interpreter_machine() -> str:
    """This interpreter's own architecture, from its build (sysconfig: win-amd64, win-arm64,
    linux-x86_64): emulation does not change it, while platform.machine() of an x64 Python 3.12+
    under emulation says ARM64."""
    import sysconfig
    return machine_name(sysconfig.get_platform().rsplit("-", 1)[-1])


def this_host() -> Host:
    python_machine = interpreter_machine()
    native = windows_native_machine() if platform.system() == "Windows" else None
    return Host(platform.system(), python_machine, native or python_machine, tuple(sys.version_info[:2]))


def htp_stub_name(htp_arch: int) -> str:
    return f"QnnHtpV{htp_arch}Stub.dll"


@dataclass(frozen=True)
class HtpProbe:
    """What onnxruntime-qnn offers this process: the folder its HTP backend loads from (None when the
    package does not import) and whether a QNN device registered; `error` says why not."""
    folder: Path | None
    device: bool
    error: str = ""


def probe_onnxruntime_qnn() -> HtpProbe:
    """Import onnxruntime-qnn (its platform loader picks the library folder), then register its EP
    and look for a QNN device: the HTP backend really loads, not just a file exists."""
    try:
        import onnxruntime_qnn
        folder = Path(onnxruntime_qnn.get_qnn_htp_path()).parent
    except Exception as exc:        # ImportError, or the loader's RuntimeError on an unsupported machine
        return HtpProbe(None, False, f"onnxruntime-qnn does not import ({exc})")
    try:
        from .htp import register
        register()
    except Exception as exc:
        return HtpProbe(folder, False, f"onnxruntime-qnn registered no QNN device ({exc})")
    return HtpProbe(folder, True)


def choose_runtime(host: Host, probe: Callable[[], HtpProbe], htp_arch: int = 73) -> tuple[str, str]:
    """(runtime, reason) for `runtime: auto` on `host`; `probe` is only called on Windows ARM64."""
    if host.system != "Windows" or host.native_machine != "arm64":
        return "reference", (f"no Hexagon NPU on this {host.describe()} host, and HTP emulation is for numeric "
                             "checks, far too slow for episodes")
    found = probe()
    if found.folder is None:
        return "reference", f"{host.describe()}, but {found.error}: pip install -r requirements.txt"
    stub = found.folder / htp_stub_name(htp_arch)
    if not stub.is_file():
        hint = (" (an x64 Python before 3.12 gets onnxruntime-qnn's libs/amd64 folder: install CPython 3.12, "
                "ARM64 or x64)" if host.python_machine == "x64" else "")
        return "reference", (f"{host.describe()}, but onnxruntime-qnn loads its HTP libraries from {found.folder}, "
                             f"which has no {stub.name}{hint}")
    if not found.device:
        return "reference", f"{host.describe()}, but {found.error}"
    return "ort-qnn", f"{host.describe()}; onnxruntime-qnn's HTP backend loads from {found.folder} ({stub.name})"


def planned_runtime(kind: str, htp_arch: int = 73) -> str:
    """What resolve_runtime will pick here, without the log line: which files a task reads (task
    generation asks on every `doit`)."""
    return kind if kind != "auto" else choose_runtime(this_host(), probe_onnxruntime_qnn, htp_arch)[0]


def resolve_runtime(kind: str, htp_arch: int = 73) -> str:
    """`kind` itself, or for auto the choice of choose_runtime, logged in one line with its reason."""
    if kind != "auto":
        return kind
    runtime, reason = choose_runtime(this_host(), probe_onnxruntime_qnn, htp_arch)
    log.info("runtime auto: %s: %s", runtime, reason)
    return runtime
