"""infer: one LIBERO episode of the built policy per task (`doit infer:task0`)."""

from __future__ import annotations

from smolvla_runtime.host import planned_runtime

from ..evaluate.episode import InferSpec
from ..evaluate.libero_env import SUITE_TASKS
from .keys import action, declare

FAMILY = "infer"
INFER = action("evaluate.episode:infer_task")
DEFAULT = False        # episodes take minutes: run them by name, not with a bare `doit`


def gen_tasks(build):
    pipe, layout = build.pipe, build.layout
    ev, src = pipe.section("evaluation"), pipe.source
    source = pipe.policy_source(layout, sdk=build.sdk)
    # the files of the runtime `auto` resolves to on this host (the HTP contexts on the laptop)
    runtime = planned_runtime(ev["runtime"], pipe.soc.htp_arch)
    files = source.files(runtime)
    meta = {"preset": src["preset"], "weights": src["weights"], "meaningless_actions": src["weights"] == "random",
            "trial": ev["trial"], "n_action_steps": ev["n_action_steps"]}
    for task_id in range(SUITE_TASKS[ev["suite"]]) if ev["tasks"] == "all" else ev["tasks"]:
        spec = InferSpec(policy=source, suite=ev["suite"], task_id=task_id, trial=ev["trial"],
                         max_steps=ev["max_steps"], seed=ev["seed"], out_dir=layout.episode_dir(ev["suite"], task_id),
                         config_dir=layout.libero_config, meta=meta)
        yield declare(FAMILY, INFER, spec, name=f"task{task_id}", file_dep=files, verbosity=2, tools={"runtime": runtime},
                      targets=layout.episode_files(ev["suite"], task_id),
                      doc=f"LIBERO {ev['suite']} task {task_id}, trial {ev['trial']} ({ev['runtime']} runtime): "
                          f"{spec.out_dir}")
