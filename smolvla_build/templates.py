"""Rendering of the toolchain command lines and config files: the only place they are built.

Templates live in <repo>/templates/. The `q` filter quotes one argument for the host shell
(POSIX sh, or cmd.exe on Windows), so paths with spaces work. A stage's up-to-date key holds
the rendered text, so editing a template or a flag reruns exactly the stages it renders.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shlex
import subprocess
from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


def quote(arg, host: str = os.name) -> str:
    s = str(arg)
    return subprocess.list2cmdline([s]) if host == "nt" else shlex.quote(s)


@functools.lru_cache(maxsize=None)
def environment(host: str = os.name) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)
    env.filters["q"] = functools.partial(quote, host=host)
    return env


def render(template: str, host: str = os.name, **values) -> str:
    return environment(host).get_template(template).render(**values)


def render_command(template: str, host: str = os.name, **values) -> str:
    """A one-line command for the host shell."""
    return " ".join(render(template, host, **values).split("\n")).strip()


def template_digest(*names: str) -> str:
    h = hashlib.sha256()
    for n in names:
        h.update((TEMPLATES / n).read_bytes())
    return h.hexdigest()[:16]
