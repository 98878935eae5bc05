"""infer: LIBERO evaluation episodes of the built policy (`doit infer:task0`)."""

from __future__ import annotations

import logging

from doit.exceptions import TaskFailed

from .keys import RUNTIME, code_digest, uptodate
from .preprocess import SINUSOID_ON_CPU

FAMILY = "infer"
DEFAULT = False        # episodes take minutes: run them by name, not with a bare `doit`
log = logging.getLogger("smolvla_build.infer")
MODELS = ("vision_encoder", "llm_backbone", "action_head")


def run_infer(pipeline_path: str, task_id: int, out_dir: str):
    from pathlib import Path

    from ..config import load_pipeline
    from ..evaluate.episode import run_episode
    from ..evaluate.libero_env import LiberoError
    from ..export.onnx_export import RANDOM_WARNING
    from ..runtime.policy import Policy, resolve_runtime
    from ..layout import Layout

    pipe = load_pipeline(pipeline_path)
    layout = Layout(pipe)
    ev = pipe.section("evaluation")
    runtime = resolve_runtime(ev["runtime"])
    meaningless = pipe.source["weights"] == "random"
    if meaningless:
        log.warning(RANDOM_WARNING)
    try:
        policy = Policy.from_artifacts(layout, runtime, pipe.soc, pipe.precisions, pipe.requested_precisions(),
                                       ev["n_action_steps"], seed=ev["seed"])
        run_episode(policy, ev["suite"], task_id, ev["trial"], ev["max_steps"], Path(out_dir),
                    layout.root / "libero-config", seed=ev["seed"], meaningless=meaningless,
                    meta={"runtime": runtime, "preset": pipe.source["preset"], "weights": pipe.source["weights"],
                          "trial": ev["trial"], "n_action_steps": ev["n_action_steps"]})
    except LiberoError as exc:
        return TaskFailed(str(exc))
    return True


def infer_inputs(pipe, layout, runtime: str) -> list:
    """The built files the episode reads, for the runtime it will use."""
    files = [layout.export_dir / "tokenizer.json", layout.export_dir / "normalization.json"]
    for m in MODELS:
        files += [layout.reference_model(m), layout.reference_info(m), layout.io_sidecar(m)]
        if runtime in ("ort-qnn", "qnn-net-run"):
            files += [f for p in pipe.precisions for f in layout.context_files(m, p)]
    files += [layout.embed_table] + [layout.cpu_model(m) for m in sorted(SINUSOID_ON_CPU)]
    return [str(f) for f in files]


def gen_tasks(pipe, layout, toolchain):
    from smolvla_runtime.host import resolve_runtime
    ev = pipe.section("evaluation")
    runtime = resolve_runtime(ev["runtime"]) if ev["runtime"] != "auto" else "auto"
    tasks = range(10) if ev["tasks"] == "all" else ev["tasks"]
    episode = {k: ev[k] for k in ("runtime", "precision", "suite", "trial", "n_action_steps", "max_steps", "seed")}
    for task_id in tasks:
        out = layout.root / "eval" / ev["suite"] / f"task{task_id}"
        kw = {"evaluation": episode, "task": task_id, "source": pipe.source,
              "code": code_digest("runtime", RUNTIME, "evaluate", "stages/infer.py")}
        yield {
            "basename": FAMILY,
            "name": f"task{task_id}",
            "doc": f"LIBERO {ev['suite']} task {task_id}, trial {ev['trial']} ({ev['runtime']} runtime)",
            "actions": [(run_infer, [], {"pipeline_path": str(pipe.path), "task_id": task_id, "out_dir": str(out)})],
            "file_dep": infer_inputs(pipe, layout, runtime if runtime != "auto" else "reference"),
            "targets": [str(out / f) for f in ("eval_info.json", "video.mp4", "actions.json", "timings.json",
                                              "actions.png")],
            "uptodate": uptodate(kw),
            "clean": True,
            "verbosity": 2,
        }
