"""`python -m smolvla_build prune [--pipeline FILE] [--yes]`: remove what no task of the pipeline
makes any more (a removed precision's contexts, validations, bundles; a bundle of another precision).

`doit clean` knows only the tasks of the pipeline it is given, so after a precision is removed its
files stay (docs/incremental.md: nothing reads them). Every task that succeeds therefore writes one
line in the artifacts folder's ledger (`Layout.made_ledger`): its name and the paths it made, its
targets and the folders it fills (`declare(owns=...)`), in smolvla_build/ledger.py. `prune` lists the
paths the ledger knows that no task of the pipeline makes now, and removes them only with `--yes`,
holding the build lock; the ledger then keeps the current tasks' paths. What a build made before
the ledger existed is not known to it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .ledger import read, rewrite


def current_tasks(pipeline_path) -> tuple:
    """(the pipeline's Layout, {task: the paths it makes}) of the pipeline's tasks."""
    from .stages import declared
    build, made = declared(pipeline_path)
    return build.layout, {m["task"]: m["paths"] for m in made}


def leftovers(root: Path, ledger: Path, tasks: dict[str, list[str]]) -> list[Path]:
    """The paths the ledger's tasks made that still exist and that no task in `tasks` makes (itself,
    inside a folder it fills, or inside the path)."""
    current = {Path(p) for paths in tasks.values() for p in paths}
    out = set()
    for paths in read(ledger).values():
        for p in map(Path, paths):
            inside_current = any(c == p or p in c.parents or c in p.parents for c in current)
            if p.exists() and not inside_current and root in p.parents:
                out.add(p)
    return sorted(out)


def _size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size


def prune(pipeline_path, remove: bool) -> tuple[list[str], int]:
    """(lines to print, exit status): what would go, or with `remove` what went."""
    layout, tasks = current_tasks(pipeline_path)
    root, ledger = layout.root, layout.made_ledger
    found = leftovers(root, ledger, tasks)
    total = sum(_size(p) for p in found)
    lines = [f"{p.relative_to(root)}{'/' if p.is_dir() else ''} ({_size(p) / 1e6:.1f} MB)" for p in found]
    if not found:
        return [f"nothing to prune in {root}: every path the ledger knows is made by a task of {pipeline_path}"], 0
    if not remove:
        return lines + [f"{len(found)} path(s), {total / 1e6:.1f} MB in {root} that no task of {pipeline_path} makes: "
                        "run again with --yes to remove them"], 0
    from .lock import hold
    hold(root, ["prune"])
    for p in found:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
        parent = p.parent
        while parent != root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    rewrite(ledger, tasks)
    return [f"removed {line}" for line in lines] + [f"removed {len(found)} path(s), {total / 1e6:.1f} MB"], 0
