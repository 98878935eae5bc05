"""One LIBERO evaluation episode of the built policy, LeRobot's protocol (`simulate`), and the files
`doit infer:taskN` writes for it (`run_episode`); `doit eval` runs `simulate` on Ray (evaluate/scale.py)."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from ..layout import EPISODE_FILES
from ..runtime.artifacts import PolicySource

log = logging.getLogger("smolvla_build.episode")
FPS = 20  # LIBERO control frequency
CAMERAS = ("agentview_image", "robot0_eye_in_hand_image")      # the policy's images; the video is the first


@dataclasses.dataclass(frozen=True)
class InferSpec:
    policy: PolicySource            # its runtime may be auto: resolved (and logged) when the episode runs
    suite: str
    task_id: int
    trial: int
    max_steps: int | None           # None: the suite's LeRobot limit
    seed: int
    out_dir: Path                   # video.mp4, actions.json, timings.json, actions.png, eval_info.json
    config_dir: Path                # LIBERO's config folder
    meta: dict                      # what eval_info.json records of the build (preset, weights, ...)


class Cameras:
    """Render a camera only for the steps whose observation is read (the policy reads both every
    `n_action_steps`; the video, when kept, the agentview every step; docs/evaluation.md). Each
    camera observable keeps its sampling schedule, so a frame that is read is rendered at the very
    sub-step an always-rendering episode renders it; on the other steps its sensor returns a blank
    frame instead of rendering. Rendering reads the simulation and changes none of it: the episode is
    the same step for step (tests/test_runtime.py). Made after each reset (a hard reset rebuilds the
    observables)."""

    def __init__(self, env):
        import functools

        import numpy as np
        self.on = dict.fromkeys(CAMERAS, True)
        observables = env.env._observables          # LIBERO's ControlEnv wraps the robosuite environment
        for name in CAMERAS:
            observable = observables[name]
            render = observable._sensor
            blank = np.zeros(observable._data_shape, dtype=np.uint8)

            @functools.wraps(render)                        # keeps the modality robosuite's decorator set
            def sensor(obs_cache, render=render, blank=blank, name=name):
                return render(obs_cache) if self.on[name] else blank

            observable._sensor = sensor

    def want(self, policy_reads: bool, video: bool) -> None:
        self.on.update(zip(CAMERAS, (policy_reads or video, policy_reads)))


class TaskEnvironments:
    """The LIBERO environment of the task being run, kept for that task's next episodes (each episode
    resets it and sets its trial's init state, LeRobot's protocol; a hard reset reloads the model, so
    the episode does not depend on the one before: tests/test_runtime.py). Another task closes it."""

    def __init__(self, config_dir: Path):
        self.config_dir, self.task, self.made = config_dir, None, None

    def get(self, suite: str, task_id: int):
        from .libero_env import make_env
        if self.task != (suite, task_id):
            self.close()
            self.made, self.task = make_env(suite, task_id, self.config_dir), (suite, task_id)
        return self.made

    def close(self) -> None:
        if self.made is not None:
            self.made[0].close()
        self.task, self.made = None, None


def simulate(policy, suite: str, task_id: int, trial: int, max_steps: int | None, config_dir: Path, seed: int = 0,
             frames: bool = True, progress: bool = True, envs: TaskEnvironments | None = None,
             on_step=None) -> dict:
    """One episode, LeRobot's protocol: reset, the suite's init state for the trial, 10 no-op steps,
    then the policy until success or the step limit. Returns what happened (and the frames). `envs`:
    reuse the task's environment across episodes (else one is made and closed here). `on_step(done,
    max_steps)` after each policy step."""
    import numpy as np
    from smolvla_runtime.preprocessing import libero_state
    from tqdm import tqdm

    from .libero_env import NOOP, NUM_STEPS_WAIT, SUITE_MAX_STEPS
    max_steps = max_steps or SUITE_MAX_STEPS[suite]
    t0 = time.time()
    own = envs is None
    envs = envs or TaskEnvironments(config_dir)
    env, language, init_states = envs.get(suite, task_id)
    t_env = time.time()
    shots, actions, rewards, policy_s, ee = [], [], [], [], []
    success = False
    try:
        env.seed(seed)
        env.reset()
        obs = env.set_init_state(init_states[trial % len(init_states)])
        cameras = Cameras(env)
        policy.reset()
        for wait in range(NUM_STEPS_WAIT):
            last = wait == NUM_STEPS_WAIT - 1             # its observation is the policy's first
            cameras.want(policy_reads=last, video=frames and last)
            obs, _, _, _ = env.step(NOOP)
        if frames:
            shots.append(obs["agentview_image"][::-1, ::-1].copy())
        bar = tqdm(range(max_steps), desc=f"{suite} task{task_id}", unit="step", disable=not progress)
        for step in bar:
            reads = policy.needs_observation
            images = [obs["agentview_image"], obs["robot0_eye_in_hand_image"]] if reads else None
            ts = time.perf_counter()
            action = policy.select_action(images, libero_state(obs) if reads else None, language)
            policy_s.append(time.perf_counter() - ts)
            cameras.want(policy_reads=policy.needs_observation, video=frames)
            obs, reward, done, _ = env.step(np.asarray(action, dtype=np.float64).tolist())
            actions.append(np.asarray(action, dtype=np.float64).tolist())
            rewards.append(float(reward))
            ee.append(np.asarray(obs["robot0_eef_pos"], dtype=np.float64).tolist())
            if frames:
                shots.append(obs["agentview_image"][::-1, ::-1].copy())
            if on_step is not None:
                on_step(step + 1, max_steps)
            if done or env.check_success():
                success = True
                break
    except BaseException:
        envs.close()             # a failed episode may leave its environment broken: the next starts afresh
        raise
    finally:
        if own:
            envs.close()
    elapsed = time.time() - t0
    return {"task": language, "success": success, "steps": len(actions), "actions": actions, "rewards": rewards,
            "ee_positions": ee,
            "frames": shots, "seconds": elapsed, "policy_s": float(np.sum(policy_s)), "env_build_s": t_env - t0,
            "simulator_s": elapsed - (t_env - t0) - float(np.sum(policy_s))}


def run_episode(policy, suite: str, task_id: int, trial: int, max_steps: int | None, out_dir: Path,
                config_dir: Path, seed: int = 0, meaningless: bool = False, progress: bool = True,
                meta: dict | None = None) -> dict:
    """`doit infer:taskN`: one episode with everything recorded (video.mp4, actions.json,
    timings.json, actions.png and an eval_info.json with lerobot-eval's fields)."""
    from ..fsutil import write_json
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    r = simulate(policy, suite, task_id, trial, max_steps, config_dir, seed, frames=True, progress=progress)
    files = {k: out_dir / n for k, n in EPISODE_FILES.items()}
    write_video(r["frames"], files["video"])
    _plot_actions(r["actions"], files["plot"], f"{suite} task {task_id}: {r['task']}")
    write_json(files["actions"], {"task": r["task"], "actions": r["actions"], "rewards": r["rewards"]})
    write_json(files["timings"], _timing_summary(policy.timings))
    info = eval_info(suite, task_id, r["success"], r["rewards"], [str(files["video"])], r["seconds"], meaningless,
                     meta or {})
    write_json(files["info"], info)
    log.info("%s task %d trial %d: %s after %d steps, %.1f s", suite, task_id, trial,
             "SUCCESS" if r["success"] else "no success", r["steps"], r["seconds"])
    return info


def eval_info(suite, task_id, success, rewards, videos, elapsed, meaningless, meta) -> dict:
    """lerobot-eval's eval_info.json layout (one episode)."""
    import numpy as np
    sum_r, max_r = float(np.sum(rewards)) if rewards else 0.0, float(np.max(rewards)) if rewards else 0.0
    pc = 100.0 * float(success)
    agg = {"avg_sum_reward": sum_r, "avg_max_reward": max_r, "pc_success": pc, "n_episodes": 1, "video_paths": videos}
    return {
        "per_task": [{"task_group": suite, "task_id": task_id,
                      "metrics": {"sum_rewards": [sum_r], "max_rewards": [max_r], "successes": [bool(success)],
                                  "video_paths": videos}}],
        "per_group": {suite: dict(agg)},
        "overall": dict(agg, eval_s=elapsed, eval_ep_s=elapsed),
        "meaningless_actions": meaningless,
        "note": ("RANDOM WEIGHTS: the policy's actions are meaningless; this episode only proves the pipeline runs "
                 "end to end" if meaningless else ""),
        **meta,
    }


def _timing_summary(timings: list[dict]) -> dict:
    import numpy as np
    if not timings:
        return {"control_steps": 0, "per_step": []}
    keys = ("vision_s", "llm_s", "action_head_s", "total_s")
    return {"control_steps": len(timings),
            "median": {k: float(np.median([t[k] for t in timings])) for k in keys},
            "per_step": timings}


def write_video(frames, path: Path) -> None:
    import imageio.v2 as imageio
    import numpy as np

    from ..fsutil import atomic_path
    with atomic_path(path, suffix=".mp4") as tmp:
        with imageio.get_writer(str(tmp), fps=FPS, codec="libx264", format="FFMPEG", macro_block_size=1) as w:
            for f in frames:
                w.append_data(np.ascontiguousarray(f))


def _plot_actions(actions, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..fsutil import atomic_path
    a = np.asarray(actions, dtype=np.float64).reshape(-1, 7) if actions else np.zeros((0, 7))
    names = ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"]
    fig, axes = plt.subplots(7, 1, figsize=(8, 10), sharex=True)
    for i, ax in enumerate(axes):
        ax.plot(a[:, i], lw=1)
        ax.set_ylabel(names[i])
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("env step")
    import textwrap
    fig.suptitle("\n".join(textwrap.wrap(title, 90)), fontsize=9)      # the whole task sentence, wrapped
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80, bbox_inches="tight")
    plt.close(fig)


def infer_task(spec: InferSpec):
    """The `infer:task<N>` action: one episode of the built policy."""
    from doit.exceptions import TaskFailed
    from smolvla_runtime.model import RANDOM_WEIGHTS_WARNING

    from ..runtime.artifacts import load_policy
    from .libero_env import LiberoError
    if spec.meta.get("meaningless_actions"):
        log.warning(RANDOM_WEIGHTS_WARNING)
    try:
        policy = load_policy(spec.policy)
        run_episode(policy, spec.suite, spec.task_id, spec.trial, spec.max_steps, spec.out_dir, spec.config_dir,
                    seed=spec.seed, meaningless=bool(spec.meta.get("meaningless_actions")),
                    meta=dict(spec.meta, runtime=policy.runtime))
    except LiberoError as exc:
        return TaskFailed(str(exc))
    log.info("infer: %s (video.mp4, actions.json, actions.png, timings.json, eval_info.json)", spec.out_dir)
    return True
