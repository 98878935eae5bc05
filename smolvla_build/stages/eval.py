"""eval: LIBERO evaluation at scale on Ray, resumable (`doit eval`).

Not part of a bare `doit`: every (suite, task, trial) of pipeline.yaml's evaluation section, one
result file per episode; eval/eval_info.json (lerobot-eval's layout), summary.md and a chart per suite."""

from __future__ import annotations

from smolvla_runtime.host import planned_runtime

from ..evaluate.scale import EvalSpec
from .keys import action, declare

FAMILY = "eval"
EVAL = action("evaluate.scale:eval_task")
DEFAULT = False


def gen_tasks(build):
    pipe, layout = build.pipe, build.layout
    ev, src = pipe.section("evaluation"), pipe.source
    source = pipe.policy_source(layout, sdk=build.sdk)
    # the files of the runtime `auto` resolves to on this host; each episode's policy hash covers them
    files = tuple(source.files(planned_runtime(ev["runtime"], pipe.soc.htp_arch)))
    meta = {"preset": src["preset"], "weights": src["weights"], "meaningless_actions": src["weights"] == "random",
            "precision": ev["precision"]}
    spec = EvalSpec(policy=source, episodes=pipe.episodes(), out_root=layout.eval_dir, files=files,
                    config_dir=layout.libero_config, meta=meta)
    # always runs: the up-to-date check is per episode (each result records the hash of the policy files
    # and settings it was computed with), so a rerun after a crash runs exactly the missing episodes
    yield declare(FAMILY, EVAL, spec, file_dep=files, targets=layout.eval_files,
                  always=True, verbosity=2,
                  doc=f"LIBERO evaluation on Ray: suites x tasks x trials (evaluation: in pipeline.yaml): {layout.eval_dir}")
