"""LIBERO evaluation at scale on Ray (`doit eval`): every (suite, task, trial) episode on a pool of
Ray actors, each holding one Policy (persistent runners) for all its episodes; one result file per
episode, written atomically as it arrives, so a rerun runs only what is missing; lerobot-eval's
eval_info.json, a summary with Wilson intervals and a chart over all of them.

Faults: an episode that raises is retried once on another actor, then recorded with its error (never
dropped, never counted as a plain failure); an actor that dies mid-episode is replaced and the
episode re-run. Seeds come from (seed, suite, task, trial), never from worker order.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path

from ..layout import EVAL_FILES
from ..runtime.artifacts import PolicySource
from .libero_env import SUITE_TASKS

log = logging.getLogger("smolvla_build.eval")


@dataclasses.dataclass(frozen=True)
class Episodes:
    """Which episodes an evaluation runs, and how (pipeline.yaml's evaluation section)."""
    suites: tuple[str, ...]
    tasks: tuple[int, ...] | None       # None: every task of each suite
    trials: tuple[int, ...]
    max_steps: int | None
    seed: int
    videos: str                         # first | all | none
    workers: int | None                 # None: what the cores and the memory allow
    ray_address: str | None             # None: a local Ray instance
    progress_every_s: float

    def all(self) -> list[tuple[str, int, int]]:
        """(suite, task, trial) of every episode, in order."""
        out = []
        for suite in self.suites:
            tasks = range(SUITE_TASKS[suite]) if self.tasks is None else self.tasks
            out += [(suite, int(t), int(k)) for t in tasks for k in self.trials]
        return out


@dataclasses.dataclass(frozen=True)
class Run:
    """One evaluation run: a policy's episodes into a folder of results."""
    policy: PolicySource                # its runtime resolved (eval_task resolves auto before the run)
    out_root: Path
    files: tuple[Path, ...]             # the policy's files (each episode's result records their hash)
    shadow: bool = False                # the fp32 reference policy plans beside it (evaluate/divergence.py)


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    policy: PolicySource                # its runtime may be auto
    episodes: Episodes
    out_root: Path
    files: tuple[Path, ...]
    config_dir: Path                    # LIBERO's config folder (a subfolder per actor)
    meta: dict                          # what eval_info.json records of the build


def episode_seed(seed: int, suite: str, task: int, trial: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{suite}:{task}:{trial}".encode()).digest()[:4], "little")


def result_path(root: Path, suite: str, task: int, trial: int) -> Path:
    return Path(root) / suite / f"task{task}" / f"trial{trial}.json"


def progress_path(result: Path) -> Path:
    """Where the actor running an episode writes how far it got (removed when it ends)."""
    return Path(result).with_suffix(".running.json")


class ProgressFile:
    """`on_step` for simulate: the step reached and the seconds since the episode began, written
    (atomically) at most every `every` seconds, and at the start."""

    def __init__(self, path: str | Path, every: float):
        self.path, self.every = Path(path), every
        self.t0 = self.last = time.time()
        self.write(0, None)

    def write(self, done: int, max_steps: int | None) -> None:
        from ..fsutil import write_json
        write_json(self.path, {"step": done, "max_steps": max_steps, "seconds": round(time.time() - self.t0, 1)})
        self.last = time.time()

    def __call__(self, done: int, max_steps: int) -> None:
        if time.time() - self.last >= self.every:
            self.write(done, max_steps)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def report_progress(in_flight: dict, root: Path) -> list[str]:
    """One line per episode in flight whose actor has written its progress (an actor on a node
    without the shared artifacts folder writes where the driver cannot read: its episode is silent)."""
    lines = []
    for _, (suite, task, trial), _ in in_flight.values():
        try:
            p = json.loads(progress_path(result_path(root, suite, task, trial)).read_text())
        except (OSError, ValueError):
            continue
        of = f"/{p['max_steps']}" if p.get("max_steps") else ""
        lines.append(f"eval: {suite} task {task} trial {trial}: step {p['step']}{of} after {p['seconds']:.0f} s")
    return lines


def threads_per_worker(workers: int, cpus: float, largest_node_cpus: float) -> int:
    """onnxruntime threads per actor: the Ray instance's cores shared among the actors, at most one
    node's. Each actor's threads defaulting to every core oversubscribe them: 2 full-preset actors on
    2 cores ran 77 episodes per hour that way, 93 with 1 thread each (docs/evaluation.md, "Workers and
    threads")."""
    return max(1, min(int(cpus // max(1, workers)), int(largest_node_cpus)))


def default_workers(preset: str) -> int:
    """As many actors as the cores and the memory allow (an actor holds a policy and a simulator;
    with one thread per core each uses one core: docs/evaluation.md, "Workers and threads")."""
    from ..resources import at_a_time
    return at_a_time(1.5 if preset == "tiny" else 6.0)


def hashed_settings(run: Run, ep: Episodes) -> dict:
    """What an episode's result depends on besides the policy's files."""
    p = run.policy
    return {"runtime": p.runtime, "precision": p.wanted, "shadow": run.shadow, "max_steps": ep.max_steps,
            "n_action_steps": p.n_action_steps, "seed": ep.seed}


def policy_hash(files: list[str], settings: dict) -> str:
    """What an episode's result depends on: the policy's files (sha256) and the episode settings."""
    from smolvla_runtime.bundle import sha256
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for f in sorted(files):
        h.update(sha256(Path(f)).encode())
    return h.hexdigest()[:16]


class EpisodeWorker:
    """A Ray actor: the policy and LIBERO set up once, then episodes. `shadow`: the fp32 reference
    policy plans beside it (evaluate/divergence.py)."""

    def __init__(self, source: PolicySource, shadow: bool, config_dir: Path):
        from ..runtime.artifacts import load_policy
        self.threads = source.threads
        self.policy = load_policy(source)
        if shadow:
            from .shadow import ShadowedPolicy
            self.policy = ShadowedPolicy(self.policy, load_policy(source, "reference"))
        self.config_dir = Path(config_dir) / f"worker-{os.getpid()}"     # one per process
        from .episode import TaskEnvironments
        self.envs = TaskEnvironments(self.config_dir)        # a task's environment, kept for its next trials

    def run(self, suite: str, task: int, trial: int, seed: int, max_steps, video: str | None, progress: str,
            progress_every: float):
        import socket

        import ray

        from .episode import simulate, write_video
        self.policy.seed = seed                        # per episode, not per worker: reset() reseeds
        cpu0 = time.process_time()                     # every thread of this actor: policy and simulator
        steps = ProgressFile(progress, progress_every)
        try:
            r = simulate(self.policy, suite, task, trial, max_steps, self.config_dir, seed=seed,
                         frames=video is not None, progress=False, envs=self.envs, on_step=steps)
        finally:
            steps.remove()
        cpu_s = time.process_time() - cpu0
        if video:
            write_video(r["frames"], Path(video))
        return {"task": r["task"], "success": r["success"], "steps": r["steps"], "rewards": r["rewards"],
                "actions": r["actions"], "ee_positions": r["ee_positions"],
                **({"action_diffs": list(self.policy.diffs)} if hasattr(self.policy, "diffs") else {}),
                "sum_reward": float(sum(r["rewards"])), "max_reward": float(max(r["rewards"], default=0.0)),
                "seconds": r["seconds"], "policy_s": r["policy_s"], "simulator_s": r["simulator_s"],
                "env_build_s": r["env_build_s"], "cpu_s": cpu_s, "cores_used": cpu_s / max(r["seconds"], 1e-9),
                "threads": self.threads, "video": video, "node": ray.get_runtime_context().get_node_id(),
                "host": socket.gethostname(), "pid": os.getpid()}


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def run_eval(run: Run, plan: Episodes, config_dir: Path, meta: dict, summarize: bool = True) -> dict:
    """Run the missing episodes of `run` on Ray, then aggregate (unless not `summarize`: the episodes
    of another task's folder). Returns counts."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError
    from tqdm import tqdm

    from ..fsutil import write_json
    from ..runtime.artifacts import check_runtime
    runtime = run.policy.runtime
    check_runtime(run.policy, runtime)
    root = Path(run.out_root)
    fingerprint = policy_hash([str(f) for f in run.files], hashed_settings(run, plan))
    todo = []
    all_eps = plan.all()
    first_trial = {}
    for suite, task, trial in all_eps:
        first_trial.setdefault((suite, task), trial)
        p = result_path(root, suite, task, trial)
        if p.is_file():
            try:
                if json.loads(p.read_text()).get("policy_hash") == fingerprint:
                    continue
            except ValueError:
                pass
        todo.append((suite, task, trial))
    workers = plan.workers or default_workers(run.policy.preset)
    workers = max(1, min(workers, len(todo))) if todo else 0
    log.info("eval: %d episodes, %d already done with this policy, %d to run on %d Ray actor(s)",
             len(all_eps), len(all_eps) - len(todo), len(todo), workers)
    stats = {"run": 0, "errors": 0, "actor_deaths": 0, "retries": 0}
    if todo:
        address = plan.ray_address
        t_ray = time.time()
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")   # leave CUDA_VISIBLE_DEVICES alone
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                 **({} if address else {"num_cpus": max(workers, os.cpu_count() or 1)}))
        stats["ray_start_s"] = round(time.time() - t_ray, 2)
        threads = threads_per_worker(workers, ray.cluster_resources().get("CPU", 1),
                                     max(n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]))
        stats["threads_per_worker"] = threads
        log.info("eval: %d onnxruntime thread(s) per actor", threads)
        Worker = ray.remote(num_cpus=threads)(EpisodeWorker)      # Ray places actors by the cores they use
        source = dataclasses.replace(run.policy, threads=threads)
        try:
            actors = [Worker.remote(source, run.shadow, config_dir) for _ in range(workers)]
            pending = collections.deque((ep, None) for ep in todo)       # (episode, slot to avoid)
            failures, deaths = collections.Counter(), collections.Counter()
            free, in_flight, holds = list(range(workers)), {}, {}
            bar = tqdm(total=len(todo), desc="eval", unit="episode")
            successes = 0
            t0 = time.time()
            while pending or in_flight:
                while free and pending:
                    ep, avoid = pending.popleft()
                    # an actor that already holds this task's environment, else any other than `avoid`
                    candidates = [s for s in free if s != avoid] or free
                    slot = next((s for s in candidates if holds.get(s) == ep[:2]), candidates[0])
                    holds[slot] = ep[:2]
                    free.remove(slot)
                    suite, task, trial = ep
                    seed = episode_seed(plan.seed, suite, task, trial)
                    video = None
                    if plan.videos == "all" or (plan.videos == "first" and first_trial[(suite, task)] == trial):
                        video = str(result_path(root, suite, task, trial).with_suffix(".mp4"))
                    ref = actors[slot].run.remote(suite, task, trial, seed, plan.max_steps, video,
                                                  str(progress_path(result_path(root, suite, task, trial))),
                                                  plan.progress_every_s)
                    in_flight[ref] = (slot, ep, seed)
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=plan.progress_every_s)
                if not ready:                         # a slow episode (HTP emulation): say how far each got
                    for line in report_progress(in_flight, root):
                        log.info("%s", line)
                    continue
                ref = ready[0]
                slot, ep, seed = in_flight.pop(ref)
                suite, task, trial = ep
                record = {"suite": suite, "task_id": task, "trial": trial, "seed": seed, "policy_hash": fingerprint,
                          "runtime": runtime, **meta}
                try:
                    record.update(ray.get(ref))
                except RayActorError as e:            # the process died mid-episode: replace it, re-run
                    deaths[ep] += 1
                    stats["actor_deaths"] += 1
                    log.warning("eval: the actor running %s task %d trial %d died (%s): replaced, episode re-run",
                                suite, task, trial, type(e).__name__)
                    actors[slot] = Worker.remote(source, run.shadow, config_dir)
                    holds.pop(slot, None)                 # the new actor holds no environment yet
                    free.append(slot)
                    if deaths[ep] < 3:
                        pending.appendleft((ep, None))
                        continue
                    record.update(success=False, error=f"the actor died {deaths[ep]} times running this episode")
                except RayTaskError as e:             # the episode raised: once more on another actor
                    failures[ep] += 1
                    free.append(slot)
                    if failures[ep] < 2:
                        stats["retries"] += 1
                        log.warning("eval: %s task %d trial %d raised, retried on another actor: %s", suite, task,
                                    trial, str(e.cause if hasattr(e, "cause") else e).splitlines()[0])
                        pending.appendleft((ep, slot))
                        continue
                    record.update(success=False, error=f"{type(e.cause).__name__}: {e.cause}" if e.cause else str(e),
                                  traceback=str(e)[-4000:])
                else:
                    free.append(slot)
                write_json(result_path(root, suite, task, trial), record)
                progress_path(result_path(root, suite, task, trial)).unlink(missing_ok=True)   # a killed actor's
                stats["run"] += 1
                stats["errors"] += bool(record.get("error"))
                successes += bool(record.get("success"))
                hours = (time.time() - t0) / 3600
                bar.set_postfix(successes=successes, per_hour=f"{bar.n / hours:.0f}" if hours and bar.n else "-")
                bar.update(1)
            bar.close()
            stats["episodes_per_hour"] = round(stats["run"] / max((time.time() - t0) / 3600, 1e-9), 1)
        finally:
            ray.shutdown()
    if summarize:
        results = [json.loads(result_path(root, *ep).read_text()) for ep in all_eps if result_path(root, *ep).is_file()]
        aggregate(results, root, meta)
    return stats


def aggregate(results: list[dict], root: Path, meta: dict) -> dict:
    """eval_info.json (lerobot-eval's layout), summary.md (Wilson 95% intervals) and a chart per suite.
    Episodes with an error are listed and kept out of the success rates."""
    from ..fsutil import write_json, write_text
    ok = [r for r in results if not r.get("error")]
    per_task, by_task = [], collections.defaultdict(list)
    for r in ok:
        by_task[(r["suite"], r["task_id"])].append(r)
    for (suite, task), rs in sorted(by_task.items()):
        rs = sorted(rs, key=lambda r: r["trial"])
        videos = [r["video"] for r in rs if r.get("video")]
        per_task.append({"task_group": suite, "task_id": task, "metrics": {
            "sum_rewards": [r["sum_reward"] for r in rs], "max_rewards": [r["max_reward"] for r in rs],
            "successes": [bool(r["success"]) for r in rs], "video_paths": videos}})

    def agg(rs):
        n = len(rs)
        return {"avg_sum_reward": sum(r["sum_reward"] for r in rs) / n if n else 0.0,
                "avg_max_reward": sum(r["max_reward"] for r in rs) / n if n else 0.0,
                "pc_success": 100.0 * sum(bool(r["success"]) for r in rs) / n if n else 0.0, "n_episodes": n,
                "video_paths": [r["video"] for r in rs if r.get("video")]}
    suites = sorted({r["suite"] for r in ok})
    total_s = sum(r.get("seconds", 0.0) for r in ok)
    info = {"per_task": per_task, "per_group": {s: agg([r for r in ok if r["suite"] == s]) for s in suites},
            "overall": dict(agg(ok), eval_s=total_s, eval_ep_s=total_s / len(ok) if ok else 0.0),
            "errors": [{k: r.get(k) for k in ("suite", "task_id", "trial", "error")} for r in results if r.get("error")],
            "nodes": sorted({r["node"] for r in ok if r.get("node")}), **meta}
    write_json(root / EVAL_FILES["info"], info)
    lines = [f"# LIBERO evaluation: {info['overall']['n_episodes']} episodes", ""]
    if meta.get("meaningless_actions"):
        lines += ["**RANDOM WEIGHTS: the policy's actions are meaningless; success rates prove the pipeline only.**", ""]
    lines += ["| suite | task | successes / episodes | success rate | 95% Wilson interval |", "|---|---|---|---|---|"]
    for t in per_task:
        s, n = sum(t["metrics"]["successes"]), len(t["metrics"]["successes"])
        lo, hi = wilson(s, n)
        lines.append(f"| {t['task_group']} | {t['task_id']} | {s} / {n} | {100 * s / n:.1f}% | {100 * lo:.1f}-{100 * hi:.1f}% |")
    for suite, g in info["per_group"].items():
        s = round(g["pc_success"] * g["n_episodes"] / 100)
        lo, hi = wilson(s, g["n_episodes"])
        lines.append(f"| **{suite}** | all | {s} / {g['n_episodes']} | {g['pc_success']:.1f}% | {100 * lo:.1f}-{100 * hi:.1f}% |")
    if info["errors"]:
        lines += ["", f"{len(info['errors'])} episode(s) ended in an error (not counted above):"] + [
            f"- {e['suite']} task {e['task_id']} trial {e['trial']}: {e['error']}" for e in info["errors"]]
    write_text(root / EVAL_FILES["summary"], "\n".join(lines) + "\n")
    _charts(per_task, root, meta)
    return info


def _charts(per_task: list[dict], root: Path, meta: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..fsutil import atomic_path
    for suite in sorted({t["task_group"] for t in per_task}):
        rows = [t for t in per_task if t["task_group"] == suite]
        rates, errs = [], [[], []]
        for t in rows:
            s, n = sum(t["metrics"]["successes"]), len(t["metrics"]["successes"])
            lo, hi = wilson(s, n)
            rates.append(100 * s / n)
            errs[0].append(100 * (s / n - lo))
            errs[1].append(100 * (hi - s / n))
        fig, ax = plt.subplots(figsize=(max(4, len(rows) * 0.6), 3))
        ax.bar(range(len(rows)), rates, yerr=errs, capsize=3)
        ax.set_xticks(range(len(rows)), [str(t["task_id"]) for t in rows])
        ax.set_ylim(0, 100)
        ax.set_xlabel("task")
        ax.set_ylabel("success % (95% Wilson)")
        ax.set_title(suite + (" (RANDOM WEIGHTS)" if meta.get("meaningless_actions") else ""), fontsize=9)
        fig.tight_layout()
        with atomic_path(root / f"{suite}.png", suffix=".png") as tmp:
            fig.savefig(tmp, dpi=80)
        plt.close(fig)


def resolved(source: PolicySource) -> PolicySource:
    """`source` with `runtime: auto` resolved for this host (and the reason logged)."""
    from smolvla_runtime.host import resolve_runtime
    if source.runtime != "auto":
        return source
    return source.on(resolve_runtime(source.runtime, source.soc.htp_arch))


def eval_task(spec: EvalSpec):
    """The `eval` action: the missing episodes on Ray, then eval_info.json, summary.md and a chart."""
    from smolvla_runtime.model import RANDOM_WEIGHTS_WARNING
    if spec.meta["meaningless_actions"]:
        log.warning(RANDOM_WEIGHTS_WARNING)
    run = Run(resolved(spec.policy), spec.out_root, spec.files)
    stats = run_eval(run, spec.episodes, spec.config_dir, spec.meta)
    log.info("eval: %d episode(s) run (%d error(s), %d actor(s) replaced, %d retried)%s: %s",
             stats["run"], stats["errors"], stats["actor_deaths"], stats["retries"],
             f", ray start {stats['ray_start_s']:.2f} s" if "ray_start_s" in stats else "",
             Path(spec.out_root) / EVAL_FILES["summary"])
    return True
