"""`python -m bench.noop_ab [--base REV] [--reps 7]`: the no-op `doit` (task generation and the
up-to-date checks on a finished build) of HEAD against an earlier revision, in the same run: each
revision is cloned into a temporary folder, builds the tiny preset once, then a bare `doit` is timed
`reps` times per revision, alternating. Task generation does not depend on the preset's size, so the
tiny build isolates what a change to the task declarations costs. Written into bench/results.json
and BENCHMARKS.md (section 10)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import ROOT, machine, stats


def clone(rev: str, dest: Path) -> str:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    subprocess.run(["git", "-C", str(dest), "checkout", "-q", rev], check=True)
    return subprocess.run(["git", "-C", str(dest), "rev-parse", "--short", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def bare_doit(folder: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "doit", "pipeline=examples/tiny.yaml"], cwd=folder,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0 or "\n.  " in "\n" + proc.stdout:
        raise RuntimeError(f"{folder}: the bare doit was not a no-op:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return elapsed


def noop_ab(base: str, reps: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="noop-ab-"))
    try:
        revs = {"base": clone(base, tmp / "base"), "head": clone("HEAD", tmp / "head")}
        for side in revs:                                   # the tiny build each no-op runs on
            subprocess.run([sys.executable, "-m", "doit", "pipeline=examples/tiny.yaml"], cwd=tmp / side,
                           check=True, capture_output=True)
        times = {side: [] for side in revs}
        for _ in range(reps):
            for side in revs:
                times[side].append(bare_doit(tmp / side))
        return {"machine": machine(), "revisions": revs, **{side: stats(t) for side, t in times.items()}}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    from .benchmarks_md import merge_scenario
    ap = argparse.ArgumentParser(prog="python -m bench.noop_ab")
    ap.add_argument("--base", default="HEAD~1")
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    merge_scenario("noop_ab", noop_ab(args.base, args.reps),
                   f"python -m bench.noop_ab --base {args.base} --reps {args.reps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
