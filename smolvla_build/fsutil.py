"""Atomic file output: every target is written to a temp name beside it and renamed into place,
so an interrupted stage never leaves a half-written file that looks up to date."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = ""):
    """Yield a temp path in target's folder; on success rename it onto target."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600 files; targets get the usual mode
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(final_dir: str | Path):
    """Yield a temp folder beside final_dir; on success move each file it holds into final_dir
    (rename, same file system). Files appear only complete; a crash leaves only the temp folder."""
    final_dir = Path(final_dir)
    final_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".staging-", dir=final_dir))
    try:
        yield tmp
        for f in sorted(tmp.rglob("*")):
            if f.is_file():
                dest = final_dir / f.relative_to(tmp)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(f, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def link_or_copy(src: str | Path, target: str | Path) -> None:
    """target becomes src's content, atomically: a hard link where the file system allows, else a copy."""
    with atomic_path(target) as tmp:
        os.unlink(tmp)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: str | Path, data) -> None:
    write_text(target, json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(o):
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def save_npy(target: str | Path, array) -> None:
    import numpy as np
    with atomic_path(target, suffix=".npy") as tmp:
        np.save(tmp, array)


def save_npz(target: str | Path, arrays: dict) -> None:
    import numpy as np
    with atomic_path(target, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:          # a file object: np.savez would append .npz to a path
            np.savez(fh, **arrays)


def tree_digest(*paths: str | Path, pattern: str = "*.py") -> str:
    """Digest of the source files under `paths`: part of a stage's up-to-date key, so a change
    of the code that produces an output rebuilds it."""
    h = hashlib.sha256()
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else sorted(root.rglob(pattern))
        for f in files:
            h.update(str(f.name).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]
