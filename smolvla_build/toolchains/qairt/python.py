"""The Python that runs qnn-onnx-converter: the CPython the SDK's compiled converter modules link
(2.25: libpython3.10.so.1.0 on Linux, python310.dll on Windows; docs/qairt-sdk.md, "The converter's
Python"). On the Windows ARM64 host those modules are x64 / ARM64EC builds, so the interpreter must
be an x64 Python (emulated on the laptop).

Resolving the interpreter runs programs, so task generation runs none (the modules' files are in the
keys, toolchains/qairt/plan.py) and the tasks that run the converter resolve it (`converter_python`):
`doit list`, `doctor` and the other stages work on a host without that Python. `requirement` is what
the modules need, read from their files.
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


def converter_modules(sdk: Sdk) -> list[Path]:
    """Every compiled converter module (libPyIrGraph*) in the host's folders, in the order the SDK's
    qti/aisw/converters/common/__init__.py picks the folders: 2.25 names its CPython 3.10 build
    libPyIrGraph.so (Linux) or .pyd (Windows) and others libPyIrGraph36/38.pyd; newer releases name
    each by its Python (libPyIrGraph310.pyd, libPyIrGraph312.pyd; docs/qairt-sdk.md)."""
    common = sdk.python_lib / "qti" / "aisw" / "converters" / "common"
    return [p for folder in sdk.layout.pymodules if (common / folder).is_dir()
            for p in sorted((common / folder).iterdir()) if p.name.startswith("libPyIrGraph") and p.suffix in (".so", ".pyd")]


def module_python(module: Path) -> tuple[int, int] | None:
    """The CPython a compiled module links (DT_NEEDED libpython3.X.so on Linux, an import of
    python3X.dll on Windows), None if it links none; one line when it cannot be read."""
    names = _elf_needed(module) if module.suffix == ".so" else _pe_imports(module)
    for n in names:
        m = re.fullmatch(r"libpython(\d+)\.(\d+)\.so(?:\.[\d.]+)?", n) or re.fullmatch(r"python(\d)(\d+)\.dll", n, re.I)
        if m:
            return int(m.group(1)), int(m.group(2))
    return None


def converter_module_pythons(sdk: Sdk) -> tuple[list[tuple[int, int]], list[Path]]:
    """(the CPython versions the converter's compiled modules can run under, in the SDK's order of
    preference, the modules they were read from). An unreadable module raises ToolchainError."""
    versions, modules = [], []
    for module in converter_modules(sdk):
        v = module_python(module)
        if v is not None and v not in versions:
            versions.append(v)
            modules.append(module)
    return versions, modules


def requirement(sdk: Sdk, configured: str | None) -> dict:
    """What the converter's Python must be, cheaply (no program runs): what `converter_python` and
    `doctor` check. `problem`: no compiled module found, or one that cannot be read."""
    problem, versions, modules = None, [], []
    try:
        versions, modules = converter_module_pythons(sdk)
        if not versions:
            problem = (f"qairt: no compiled converter module (libPyIrGraph*.so|.pyd) linking a CPython under "
                       f"{sdk.python_lib / 'qti' / 'aisw' / 'converters' / 'common'} for host {sdk.host}: is {sdk.root} "
                       "a QAIRT SDK?")
    except ToolchainError as exc:          # an unreadable module: the convert task says so, in one line
        problem = str(exc)
    return {"configured": configured, "versions": ["%d.%d" % v for v in versions],
            "version": "%d.%d" % versions[0] if versions else None,
            "module": modules[0].relative_to(sdk.root).as_posix() if modules else None,
            "modules": [m.relative_to(sdk.root).as_posix() for m in modules],
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
    wanted = [tuple(int(x) for x in v.split(".")) for v in req["versions"]]
    # the machine check applies where the modules are x64 builds on an ARM64 machine (Windows ARM64)
    machine = req["machine"] if sdk.layout.windows else None

    def fits(facts) -> bool:
        return facts is not None and facts[0] in wanted and (machine is None or facts[1] == machine)

    if configured:
        exe = shutil.which(configured) or configured
        facts = interpreter_facts([exe])
        if facts is None:
            raise ToolchainError(f"qairt: toolchain.python: {configured} does not run as a Python interpreter")
        if not fits(facts):
            raise ToolchainError(f"qairt: toolchain.python: {configured} is {facts[1]} Python {facts[0][0]}.{facts[0][1]}, "
                                 f"but the SDK's converter modules ({req['module']}) need {describe(req, sdk)}")
        return exe
    if fits(interpreter_facts([sys.executable])):
        return sys.executable
    for want in wanted:
        for name in (f"python{want[0]}.{want[1]}", f"python{want[0]}{want[1]}"):
            exe = shutil.which(name)
            if exe and fits(interpreter_facts([exe])):
                return exe
    for want in wanted if shutil.which("py") else []:   # the Windows launcher: `py -3.10` picks a registered 3.10
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
    """`Python 3.10`, `Python 3.10 or 3.8`, or `x64 Python 3.10` where the modules are x64 builds on
    another machine."""
    arch = f"{req['machine']} " if sdk.layout.windows else ""
    return f"{arch}Python {' or '.join(req['versions'])}" if req["versions"] else f"{arch}Python"


def converter_starts(sdk: Sdk, python: str) -> str | None:
    """None if the SDK's converter starts under `python` in the SDK's environment (`--help`: it
    imports its modules and their packages first), else its last line."""
    converter = sdk.find_tool("qnn-onnx-converter")
    if converter is None:
        return None                    # a missing converter is reported on its own
    try:
        out = subprocess.run([python, str(converter), "--help"], capture_output=True, text=True, timeout=300,
                             env=sdk.env())
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{python} {converter} --help could not run ({exc})"
    if out.returncode == 0:
        return None
    last = ((out.stderr or out.stdout).strip().splitlines() or ["(no output)"])[-1]
    return f"qnn-onnx-converter does not start under {python}: {last}"


def reads_onnx_mapping(sdk: Sdk) -> bool:
    """Whether the SDK's converter sources read `onnx.mapping`, which onnx 1.19 removed (2.25's
    lib/python/qti/aisw/converters/onnx/util.py does; docs/qairt-sdk.md)."""
    root = sdk.python_lib / "qti" / "aisw" / "converters"
    return any(re.search(r"onnx\.mapping|from onnx import[^\n]*\bmapping\b", f.read_text(errors="replace"))
               for f in root.rglob("*.py")) if root.is_dir() else False


def pinned_version(sdk: Sdk, package: str) -> str | None:
    """The version the SDK's bin/check-python-dependency pins for `package` (2.25: numpy 1.26.4), if any."""
    script = sdk.root / "bin" / "check-python-dependency"
    if not script.is_file():
        return None
    m = re.search(r"""['"]%s['"]\s*[:,]\s*['"]([\d.]+)['"]""" % re.escape(package), script.read_text(errors="replace"))
    return m.group(1) if m else None


PACKAGES_PROBE = ("import json, importlib\n"
                  "out = {}\n"
                  "for name in ('numpy', 'onnx'):\n"
                  "    try:\n"
                  "        out[name] = getattr(importlib.import_module(name), '__version__', 'present')\n"
                  "    except Exception:\n"
                  "        out[name] = None\n"
                  "try:\n"
                  "    import onnx.mapping\n"
                  "    out['onnx.mapping'] = True\n"
                  "except Exception:\n"
                  "    out['onnx.mapping'] = False\n"
                  "print(json.dumps(out))")


def converter_packages(sdk: Sdk, python: str) -> tuple[dict, list[str], list[str]]:
    """What the converter needs of `python` beyond its own modules: (the numpy and onnx it imports,
    problems, notes). A problem: the converter does not start; it reads onnx.mapping and this onnx has
    none. A note: numpy is not the version the SDK pins."""
    import json
    problems = [p for p in [converter_starts(sdk, python)] if p]
    try:
        out = subprocess.run([python, "-c", PACKAGES_PROBE], capture_output=True, text=True, timeout=120)
        found = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return {}, problems + [f"{python} could not be asked for its numpy and onnx"], []
    if reads_onnx_mapping(sdk) and not found.get("onnx.mapping"):
        problems.append(f"the SDK's converter reads onnx.mapping, which the onnx {found.get('onnx') or '(none)'} of "
                        f"{python} lacks (removed in onnx 1.19): install the onnx the SDK's setup page names (2.25: 1.16.1)")
    pin = pinned_version(sdk, "numpy")
    notes = [f"{python} has numpy {found.get('numpy')}; the SDK's bin/check-python-dependency pins {pin}"] \
        if pin and found.get("numpy") != pin else []
    return found, problems, notes
