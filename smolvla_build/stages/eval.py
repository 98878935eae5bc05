"""eval: LIBERO evaluation at scale on Ray (`doit eval`, not part of a bare `doit`): every
(suite, task, trial) of pipeline.yaml's evaluation section, one result file per episode, resumable;
artifacts/eval/eval_info.json (lerobot-eval's layout), summary.md and a chart per suite."""

from __future__ import annotations

import logging

from .infer import infer_inputs

FAMILY = "eval"
DEFAULT = False
log = logging.getLogger("smolvla_build.eval")


def run_eval_task(pipeline_path: str, runtime: str, files: list, out_root: str, meta: dict):
    from ..evaluate.scale import run_eval
    from ..export.onnx_export import RANDOM_WARNING
    from ..runtime.policy import resolve_runtime
    if meta["meaningless_actions"]:
        log.warning(RANDOM_WARNING)
    stats = run_eval(pipeline_path, resolve_runtime(runtime), files, out_root, meta)
    log.info("eval: %d episode(s) run (%d error(s), %d actor(s) replaced, %d retried)%s: %s/summary.md",
             stats["run"], stats["errors"], stats["actor_deaths"], stats["retries"],
             f", ray start {stats['ray_start_s']:.2f} s" if "ray_start_s" in stats else "", out_root)
    return True


def gen_tasks(pipe, layout, toolchain):
    from smolvla_runtime.host import resolve_runtime
    ev = pipe.section("evaluation")
    runtime = resolve_runtime(ev["runtime"]) if ev["runtime"] != "auto" else "reference"
    files = infer_inputs(pipe, layout, runtime)
    out = layout.root / "eval"
    meta = {"preset": pipe.source["preset"], "weights": pipe.source["weights"],
            "meaningless_actions": pipe.source["weights"] == "random", "precision": ev["precision"]}
    yield {
        "basename": FAMILY,
        "doc": "LIBERO evaluation on Ray: suites x tasks x trials (evaluation: in pipeline.yaml), resumable",
        "actions": [(run_eval_task, [], {"pipeline_path": str(pipe.path), "runtime": ev["runtime"], "files": files,
                                         "out_root": str(out), "meta": meta})],
        "file_dep": files,
        "targets": [str(out / "eval_info.json"), str(out / "summary.md")],
        # always runs: the up-to-date check is per episode (each result records the hash of the policy files
        # and settings it was computed with), so a rerun after a crash runs exactly the missing episodes
        "uptodate": [False],
        "clean": True,
        "verbosity": 2,
    }
