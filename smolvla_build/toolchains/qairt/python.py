"""The Python that runs qnn-onnx-converter: the CPython the SDK's compiled converter modules link
(2.25: libpython3.10.so.1.0 on Linux, python310.dll on Windows; docs/qairt-sdk.md, "The converter's
Python"). On the Windows ARM64 host those modules are x64 / ARM64EC builds, so the interpreter must
be an x64 Python (emulated on the laptop).

Resolving the interpreter runs programs, so task generation only records what is needed
(`requirement`) and the tasks that run the converter resolve it (`converter_python`): `doit list`,
`doctor` and the other stages work on a host without that Python.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from .. import ToolchainError
from .sdk import Sdk


def _elf_needed(path: Path) -> list[str]:
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    try:
        with open(path, "rb") as f:
            return [t.needed for s in ELFFile(f).iter_sections() if isinstance(s, DynamicSection)
                    for t in s.iter_tags("DT_NEEDED")]
    except (ELFError, OSError) as e:
        raise ToolchainError(f"qairt: {path}: not a readable ELF shared object ({e})") from None


def _pe_imports(path: Path) -> list[str]:
    import pefile
    try:
        pe = pefile.PE(str(path), fast_load=True)
        pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"]])
        return [e.dll.decode(errors="replace") for e in getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])]
    except (pefile.PEFormatError, OSError) as e:
        raise ToolchainError(f"qairt: {path}: not a readable PE module ({e})") from None


def converter_module_python(sdk: Sdk) -> tuple[tuple[int, int], Path] | None:
    """The CPython the converter's compiled modules link (libPyIrGraph: DT_NEEDED libpython3.X.so on
    Linux, an import of python3X.dll on Windows), and the module it was read from."""
    common = sdk.python_lib / "qti" / "aisw" / "converters" / "common"
    for folder in sdk.layout.pymodules:
        for module in (common / folder / "libPyIrGraph.so", common / folder / "libPyIrGraph.pyd"):
            if not module.is_file():
                continue
            names = _elf_needed(module) if module.suffix == ".so" else _pe_imports(module)
            for n in names:
                m = re.fullmatch(r"libpython(\d+)\.(\d+)\.so(?:\.[\d.]+)?", n) or re.fullmatch(r"python(\d)(\d+)\.dll", n, re.I)
                if m:
                    return (int(m.group(1)), int(m.group(2))), module
    return None


def requirement(sdk: Sdk, configured: str | None) -> dict:
    """What the converter's Python must be, cheaply (no program runs): the up-to-date key of the tasks
    that run it, and what `converter_python` checks."""
    try:
        needed, problem = converter_module_python(sdk), None
    except ToolchainError as exc:          # an unreadable module: the convert task says so, in one line
        needed, problem = None, str(exc)
    return {"configured": configured, "version": "%d.%d" % needed[0] if needed else None,
            "module": needed[1].relative_to(sdk.root).as_posix() if needed else None,
            "machine": sdk.layout.converter_machine, "problem": problem}


def interpreter_facts(python: list[str]) -> tuple[tuple[int, int], str] | None:
    """((major, minor), machine) of an interpreter command, or None when it does not run. The machine
    is the interpreter's own build (sysconfig: win-amd64, win-arm64, linux-x86_64), which emulation
    does not change, unlike platform.machine() (docs/laptop.md)."""
    from smolvla_runtime.host import machine_name
    try:
        out = subprocess.run(python + ["-c", "import sys, sysconfig; print('%d.%d' % sys.version_info[:2], "
                                             "sysconfig.get_platform().rsplit('-', 1)[-1])"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.fullmatch(r"(\d+)\.(\d+) (\S+)", out.stdout.strip())
    return ((int(m.group(1)), int(m.group(2))), machine_name(m.group(3))) if out.returncode == 0 and m else None


def converter_python(sdk: Sdk, configured: str | None = None) -> str:
    """The interpreter that runs qnn-onnx-converter: `toolchain.python`, else the one the SDK's
    compiled modules need (this interpreter if it is that version, else python3.X on PATH, or the
    Windows `py -3.X` launcher). A missing or wrong one is one line naming what to install."""
    req = requirement(sdk, configured)
    if req["problem"]:
        raise ToolchainError(req["problem"])
    want = tuple(int(x) for x in req["version"].split(".")) if req["version"] else None
    # the machine check applies where the modules are x64 builds on an ARM64 machine (Windows ARM64)
    machine = req["machine"] if sdk.layout.windows else None

    def fits(facts) -> bool:
        return facts is not None and (want is None or facts[0] == want) and (machine is None or facts[1] == machine)

    if configured:
        exe = shutil.which(configured) or configured
        facts = interpreter_facts([exe])
        if facts is None:
            raise ToolchainError(f"qairt: toolchain.python: {configured} does not run as a Python interpreter")
        if not fits(facts):
            raise ToolchainError(f"qairt: toolchain.python: {configured} is {facts[1]} Python {facts[0][0]}.{facts[0][1]}, "
                                 f"but the SDK's converter modules ({req['module']}) need {describe(req, sdk)}")
        return exe
    if want is None:                # no compiled modules found: trust this interpreter
        return sys.executable
    if fits(interpreter_facts([sys.executable])):
        return sys.executable
    for name in (f"python{want[0]}.{want[1]}", f"python{want[0]}{want[1]}"):
        exe = shutil.which(name)
        if exe and fits(interpreter_facts([exe])):
            return exe
    if shutil.which("py"):          # the Windows launcher: `py -3.10` picks a registered 3.10 (any machine)
        try:
            out = subprocess.run(["py", f"-{want[0]}.{want[1]}", "-c", "import sys; print(sys.executable)"],
                                 capture_output=True, text=True, timeout=60)
            if out.returncode == 0 and out.stdout.strip() and fits(interpreter_facts([out.stdout.strip()])):
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    raise ToolchainError(f"qairt: the SDK's converter modules ({req['module']}) need {describe(req, sdk)}, which is "
                         f"not installed here: install it (with the SDK's Python packages, bin/check-python-dependency) "
                         "or set toolchain.python")


def describe(req: dict, sdk: Sdk) -> str:
    """`Python 3.10`, or `x64 Python 3.10` where the modules are x64 builds on another machine."""
    arch = f"{req['machine']} " if sdk.layout.windows else ""
    return f"{arch}Python {req['version']}" if req["version"] else f"{arch}Python"
