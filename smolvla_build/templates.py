"""Rendering of the toolchain command lines and config files: the only place they are built.

Templates live in <repo>/templates/, shipped inside the package as smolvla_build/_templates (a link
in the checkout, real files in a wheel). A command renders to one readable line in which the `q`
filter quotes each argument POSIX-style (shlex) on every host; `argv()` splits that line back into
exactly those arguments, which run without a shell (toolchains.qairt.run), so no folder name (`R&D`,
`100%`, `$(...)`, quotes) is ever interpreted by sh or cmd.exe. A stage's up-to-date key holds the
rendered text, so editing a template or a flag reruns exactly the stages it renders.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shlex
from pathlib import Path

import jinja2


def _templates_dir() -> Path:
    inside = Path(__file__).resolve().parent / "_templates"       # a wheel, or the checkout's link
    return inside if inside.is_dir() else Path(__file__).resolve().parents[1] / "templates"


TEMPLATES = _templates_dir()


def quote(arg) -> str:
    return shlex.quote(str(arg))


@functools.lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)
    env.filters["q"] = quote
    env.filters["c_string"] = lambda s: json.dumps(str(s))[1:-1]     # inside "..." of an assembler/C string
    return env


def render(template: str, **values) -> str:
    return environment().get_template(template).render(**values)


def render_command(template: str, **values) -> str:
    """A command as one line of shell-quoted arguments (see argv)."""
    return " ".join(render(template, **values).split("\n")).strip()


def argv(command: str) -> list[str]:
    """The arguments of a rendered command line: the inverse of its `q` quoting."""
    return shlex.split(command, posix=True)


def template_names() -> list[str]:
    return sorted(p.relative_to(TEMPLATES).as_posix() for p in TEMPLATES.rglob("*.j2"))


def template_digest(*names: str) -> str:
    h = hashlib.sha256()
    for n in names:
        h.update((TEMPLATES / n).read_bytes())
    return h.hexdigest()[:16]
