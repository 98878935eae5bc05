"""Scenarios 1 and 2: cold build per stage (wall time, peak RSS of the stage's own process), the
no-op `doit`, and the rebuild after a one-line change of one precision's options."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from .common import ROOT, doit_cmd, run_measured, stats

from smolvla_runtime.model import MODELS


def write_pipeline(folder: Path, preset: str = "smolvla-libero") -> Path:
    data = yaml.safe_load((ROOT / "pipeline.yaml").read_text())
    data["artifacts"] = "artifacts"
    data["source"]["preset"] = preset
    data["toolchain"]["kind"] = "ort-qnn"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def ran(output: str) -> list[str]:
    return re.findall(r"^\.  (\S+)", output, re.M)


def cold_build(pipe: Path, validate_precisions: tuple[str, ...], log) -> dict:
    """Each stage in its own `doit` process, in dependency order, from an empty artifacts folder."""
    shutil.rmtree(pipe.parent / "artifacts", ignore_errors=True)
    data = yaml.safe_load(pipe.read_text())
    stages = ["export"] + [f"preprocess:{m}" for m in MODELS] + [f"reference:{m}" for m in MODELS]
    stages += [f"context:{m}-{p}" for p in data["precisions"] for m in MODELS]
    # validation is two tasks: the measurement (HTP emulation) and its verdict (cheap)
    stages += [f"{family}:{m}-{p}" for p in validate_precisions for m in MODELS for family in ("measure", "validate")]
    out = {}
    for task in stages:
        log(f"  cold build: {task} ...")
        r = run_measured(doit_cmd(pipe, task))
        assert ran(r["output"]) == [task], (task, ran(r["output"]))
        out[task] = {"seconds": r["seconds"], "peak_rss_mb": r["peak_rss_mb"]}
        log(f"    {r['seconds']:.1f} s, {r['peak_rss_mb']:.0f} MB")
    return out


def noop(pipe: Path, targets: tuple[str, ...], reps: int = 5) -> dict:
    times = []
    for _ in range(reps):
        r = run_measured(doit_cmd(pipe, *targets))
        assert ran(r["output"]) == [], ran(r["output"])
        times.append(r["seconds"])
    return stats(times)


def main_job(log, reps: int = 5) -> dict:
    """The main job as a user runs it, cold (no artifacts; the packages installed): `bash
    scripts/build.sh` on the default pipeline (doit: export ... validate, report; then the LIBERO
    episode `doit infer`). Then bare `doit` on the finished build, `reps` times: the no-op."""
    folder = ROOT / "artifacts" / "bench-main"
    shutil.rmtree(folder / "artifacts", ignore_errors=True)
    pipe = write_pipeline(folder)
    r = run_measured(["bash", str(ROOT / "scripts" / "build.sh"), f"pipeline={pipe}"])
    log(f"  cold main job: {r['seconds'] / 60:.1f} min, largest process {r['peak_rss_mb']:.0f} MB")
    times = []
    for _ in range(reps):
        n = run_measured(doit_cmd(pipe))
        assert ran(n["output"]) == [], ran(n["output"])
        times.append(n["seconds"])
    return {"seconds": r["seconds"], "peak_rss_mb": r["peak_rss_mb"], "tasks_ran": len(ran(r["output"])),
            "noop_full_doit": stats(times), "pipeline": str(pipe)}


def rebuild_after_option_change(pipe: Path, precision: str, targets: tuple[str, ...]) -> dict:
    """Edit one line (the precision's vtcm_mb) and rebuild: only that precision's chain may run."""
    text = pipe.read_text()
    data = yaml.safe_load(text)
    data["precisions"][precision]["context"]["vtcm_mb"] = 4 if data["precisions"][precision]["context"].get("vtcm_mb") != 4 else 8
    pipe.write_text(yaml.safe_dump(data, sort_keys=False))
    r = run_measured(doit_cmd(pipe, *targets))
    tasks = ran(r["output"])
    assert all(t.endswith(f"-{precision}") for t in tasks), tasks
    return {"seconds": r["seconds"], "peak_rss_mb": r["peak_rss_mb"], "ran": tasks, "precision": precision}
