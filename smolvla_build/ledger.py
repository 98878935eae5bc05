"""The artifacts folder's ledger of what each task made (`Layout.made_ledger`): one JSON line per
success, {"task": name, "paths": its targets and the folders it fills}. Written by every task
(stages.Guarded), read by `prune` (smolvla_build/leftovers.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def record(ledger: Path, made: dict) -> None:
    """Append one task's line; one small O_APPEND write, so `doit -n` workers never interleave."""
    line = (json.dumps(made, sort_keys=True) + "\n").encode()
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read(ledger: Path) -> dict[str, set[str]]:
    """{task: every path its successes made} (a task that now makes other paths made the old ones too)."""
    made: dict[str, set[str]] = {}
    if Path(ledger).is_file():
        for line in Path(ledger).read_text().splitlines():
            try:
                entry = json.loads(line)
                made.setdefault(entry["task"], set()).update(entry["paths"])
            except (ValueError, KeyError, TypeError, AttributeError):
                continue                          # a line cut by a kill: that task reruns and writes it again
    return made


def rewrite(ledger: Path, tasks: dict[str, list[str]]) -> None:
    """The ledger after a prune: of the tasks it knows, those of `tasks` with the paths they make now."""
    from .fsutil import write_text
    kept = [json.dumps({"task": t, "paths": tasks[t]}, sort_keys=True) for t in sorted(read(ledger)) if t in tasks]
    write_text(ledger, "".join(line + "\n" for line in kept))
