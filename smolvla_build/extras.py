"""Which of the project's extras brings a module the build imports (pyproject.toml's
optional-dependencies, read from the installed package's metadata, so the fact lives there alone):
a task that needs one the environment lacks says what to install in one line (stages.Guarded)."""

from __future__ import annotations

import re

LIBERO = ("LIBERO is not installed: pip install -e .[libero], then python -m smolvla_build libero-install "
          "(docs/libero.md)")


def missing_module_line(module: str | None) -> str | None:
    """The line for a ModuleNotFoundError of `module`, or None when no extra of the project brings it."""
    from importlib import metadata
    top = (module or "").split(".")[0]
    if top == "libero":                       # hf-libero: installed by libero-install, not an extra
        return LIBERO
    try:
        requirements = metadata.requires("smolvla-build") or []
    except metadata.PackageNotFoundError:
        return None
    for req in requirements:
        m = re.match(r"\s*([A-Za-z0-9_.-]+).*extra\s*==\s*['\"]([\w-]+)['\"]", req)
        if m and re.sub(r"[-.]", "_", m.group(1)).lower() == top.lower():
            return (f"{top} is not installed: it comes with the project's `{m.group(2)}` extra "
                    f"(pip install -e .[{m.group(2)}]; README, \"Both scripts install what they need\")")
    return None
