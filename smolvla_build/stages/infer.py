"""infer: LIBERO evaluation episodes of the built policy (`doit infer:task0`)."""

from __future__ import annotations

from .keys import action, uptodate

FAMILY = "infer"
INFER = action("evaluate.episode:infer_task")
DEFAULT = False        # episodes take minutes: run them by name, not with a bare `doit`


def gen_tasks(pipe, layout, toolchain):
    from smolvla_runtime.host import planned_runtime
    ev = pipe.section("evaluation")
    # the files of the runtime `auto` resolves to on this host (the HTP contexts on the laptop)
    runtime = planned_runtime(ev["runtime"], int(pipe.soc["htp_arch"]))
    tasks = range(10) if ev["tasks"] == "all" else ev["tasks"]
    episode = {k: ev[k] for k in ("runtime", "precision", "suite", "trial", "n_action_steps", "max_steps", "seed")}
    for task_id in tasks:
        out = layout.root / "eval" / ev["suite"] / f"task{task_id}"
        kw = {"pipeline_path": str(pipe.path), "task_id": task_id, "out_dir": str(out), "evaluation": episode,
              "source": pipe.source, "soc": dict(pipe.soc), "runtime": runtime, "code": INFER.code()}
        yield {
            "basename": FAMILY,
            "name": f"task{task_id}",
            "doc": f"LIBERO {ev['suite']} task {task_id}, trial {ev['trial']} ({ev['runtime']} runtime)",
            "actions": [(INFER, [kw])],
            "file_dep": [str(f) for f in layout.runtime_files(runtime)],
            "targets": [str(out / f) for f in ("eval_info.json", "video.mp4", "actions.json", "timings.json",
                                              "actions.png")],
            "uptodate": uptodate(kw),
            "clean": True,
            "verbosity": 2,
        }
