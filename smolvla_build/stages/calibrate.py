"""calibrate: record the calibration set of the integer precisions (smolvla_build.calibration).

One task per sample count the pipeline's quantized precisions ask for; nothing when every precision
is float. The set depends on the reference models, the suite, its tasks, N and the seed."""

from __future__ import annotations

import logging

from doit.exceptions import TaskFailed

from .keys import RUNTIME, code_digest, uptodate

FAMILY = "calibrate"
log = logging.getLogger("smolvla_build.calibrate")


def run_calibrate(pipeline_path: str, samples: int):
    from ..calibration import record
    from ..config import load_pipeline
    from ..evaluate.libero_env import LiberoError
    from ..layout import Layout
    from ..runtime.policy import Policy

    pipe = load_pipeline(pipeline_path)
    layout = Layout(pipe)
    cal, ev = pipe.section("calibration"), pipe.section("evaluation")
    tasks = list(range(10)) if cal["tasks"] == "all" else list(cal["tasks"])
    suite = pipe.calibration_suite()
    log.info("calibrate %s: %d samples per graph from the fp32 reference policy in %s tasks %s ...", suite, samples,
             suite, tasks)
    policy = Policy.from_artifacts(layout, "reference", pipe.soc, pipe.precisions, pipe.requested_precisions(),
                                   ev["n_action_steps"], seed=cal["seed"])
    try:
        info = record(policy, suite, tasks, samples, cal["seed"], layout.root / "libero-config",
                      layout.calibration_dir(samples))
    except LiberoError as exc:
        return TaskFailed(f"calibrate: {exc}")
    log.info("calibrate %s: %d samples per graph in %.1f s (%d episodes)", suite, samples, info["seconds"],
             len(info["episodes"]))
    return True


def sample_counts(pipe) -> list[int]:
    return sorted({pipe.precisions[p]["quantization"]["calibration"]["samples"] for p in pipe.quantized_precisions()})


def gen_tasks(pipe, layout, toolchain):
    from .infer import infer_inputs
    cal, ev = pipe.section("calibration"), pipe.section("evaluation")
    for n in sample_counts(pipe):
        kw = {"suite": pipe.calibration_suite(), "tasks": cal["tasks"], "seed": cal["seed"], "samples": n,
              "n_action_steps": ev["n_action_steps"],
              "code": code_digest("calibration.py", "runtime", RUNTIME, "evaluate", "stages/calibrate.py")}
        yield {
            "basename": FAMILY,
            "name": layout.calibration_dir(n).name,
            "doc": f"record {n} calibration samples per graph from the fp32 policy in LIBERO {pipe.calibration_suite()}",
            "actions": [(run_calibrate, [], {"pipeline_path": str(pipe.path), "samples": n})],
            "file_dep": infer_inputs(pipe, layout, "reference"),
            "targets": [str(layout.calibration_set(n, m)) for m in ("vision_encoder", "llm_backbone", "action_head")]
                       + [str(layout.calibration_info(n))],
            "uptodate": uptodate(kw),
            "clean": True,
        }
