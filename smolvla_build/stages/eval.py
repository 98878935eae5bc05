"""eval: LIBERO evaluation at scale on Ray (`doit eval`, not part of a bare `doit`): every
(suite, task, trial) of pipeline.yaml's evaluation section, one result file per episode, resumable;
artifacts/eval/eval_info.json (lerobot-eval's layout), summary.md and a chart per suite."""

from __future__ import annotations

from .keys import action

FAMILY = "eval"
EVAL = action("evaluate.scale:eval_task")
DEFAULT = False


def gen_tasks(pipe, layout, toolchain):
    from smolvla_runtime.host import planned_runtime
    ev = pipe.section("evaluation")
    # the files of the runtime `auto` resolves to on this host; each episode's policy hash covers them
    runtime = planned_runtime(ev["runtime"], int(pipe.soc["htp_arch"]))
    files = [str(f) for f in layout.runtime_files(runtime)]
    out = layout.root / "eval"
    meta = {"preset": pipe.source["preset"], "weights": pipe.source["weights"],
            "meaningless_actions": pipe.source["weights"] == "random", "precision": ev["precision"]}
    yield {
        "basename": FAMILY,
        "doc": "LIBERO evaluation on Ray: suites x tasks x trials (evaluation: in pipeline.yaml), resumable",
        "actions": [(EVAL, [{"pipeline_path": str(pipe.path), "runtime": ev["runtime"],
                                                           "files": files, "out_root": str(out), "meta": meta,
                                                           "htp_arch": int(pipe.soc["htp_arch"])}])],
        "file_dep": files,
        "targets": [str(out / "eval_info.json"), str(out / "summary.md")],
        # always runs: the up-to-date check is per episode (each result records the hash of the policy files
        # and settings it was computed with), so a rerun after a crash runs exactly the missing episodes
        "uptodate": [False],
        "clean": True,
        "verbosity": 2,
    }
