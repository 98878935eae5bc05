"""`doit eval`: LIBERO episodes on Ray actors (tiny preset, a few env steps per episode): one result
per episode, resumable, a killed actor's episode re-run, lerobot-eval's aggregate."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from conftest import doit

pytest.importorskip("ray", reason="ray comes with the eval extra (scripts/test.sh installs it)")
pytest.importorskip("libero", reason="LIBERO is installed by scripts/install_libero.sh (scripts/test.sh runs it)")


@pytest.fixture(scope="module")
def evaluated(own_build):
    folder, pipe = own_build.folder, own_build.pipe
    cfg = yaml.safe_load(pipe.read_text())
    cfg["evaluation"].update(tasks=[0, 1], trials=2, workers=2, max_steps=3, progress_every_s=0.5)
    pipe.write_text(yaml.safe_dump(cfg))
    doit(pipe)
    first = doit(pipe, "eval")
    return folder, pipe, first


def results(folder):
    root = folder / "artifacts" / "eval" / "libero_spatial"
    return {(int(p.parent.name[4:]), int(p.stem[5:])): json.loads(p.read_text()) for p in root.glob("task*/trial*.json")}


def test_four_episodes_on_two_actors_and_lerobot_evals_aggregate(evaluated):
    folder, _, first = evaluated
    assert "4 to run on 2 Ray actor(s)" in first.stderr
    got = results(folder)
    assert set(got) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert all(r["steps"] == 3 and not r.get("error") and r["policy_hash"] for r in got.values())
    assert len({r["pid"] for r in got.values()}) == 2                  # both actors ran episodes
    assert len({r["seed"] for r in got.values()}) == 4                 # per-episode seeds
    threads = max(1, max(2, os.cpu_count() or 1) // 2)             # the local instance's cores, shared by 2
    assert f"{threads} onnxruntime thread(s) per actor" in first.stderr
    assert all(r["threads"] == threads and r["cpu_s"] > 0 and r["cores_used"] > 0 for r in got.values())
    info = json.loads((folder / "artifacts" / "eval" / "eval_info.json").read_text())
    assert {"per_task", "per_group", "overall"} <= set(info) and info["overall"]["n_episodes"] == 4
    assert {"pc_success", "n_episodes", "eval_s", "eval_ep_s", "video_paths", "avg_sum_reward"} <= set(info["overall"])
    assert [len(t["metrics"]["successes"]) for t in info["per_task"]] == [2, 2]
    assert info["meaningless_actions"] is True
    assert len(info["overall"]["video_paths"]) == 2                     # videos: first (one per task)
    assert "RANDOM WEIGHTS" in (folder / "artifacts" / "eval" / "summary.md").read_text()
    assert (folder / "artifacts" / "eval" / "libero_spatial.png").stat().st_size > 0
    # episodes still running are reported by the step their actor reached (every progress_every_s);
    # the files that carry it are gone once each episode's result is written
    import re
    assert re.search(r"eval: libero_spatial task [01] trial [01]: step [0-3](/3)? after \d+ s", first.stderr), first.stderr
    assert not list((folder / "artifacts" / "eval").rglob("*.running.json"))


def test_actors_share_the_cores_within_one_node():
    from smolvla_build.evaluate.scale import threads_per_worker
    assert threads_per_worker(2, cpus=2, largest_node_cpus=2) == 1
    assert threads_per_worker(1, cpus=2, largest_node_cpus=2) == 2
    assert threads_per_worker(3, cpus=3, largest_node_cpus=2) == 1      # more actors than cores: one each
    assert threads_per_worker(2, cpus=16, largest_node_cpus=4) == 4     # an actor runs on one node


def test_tasks_and_actors_at_a_time_follow_the_cores_and_the_memory(monkeypatch):
    """One rule for scripts/build.sh's tasks at a time (6 GB each, at most 2) and doit eval's actors."""
    from smolvla_build import resources
    from smolvla_build.evaluate.scale import default_workers
    monkeypatch.setattr(resources.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(resources, "available_memory_gb", lambda default=8.0: 13.0)
    assert resources.at_a_time(6.0, limit=2) == 2 and default_workers("smolvla-libero") == 2
    monkeypatch.setattr(resources, "available_memory_gb", lambda default=8.0: 11.0)
    assert resources.at_a_time(6.0, limit=2) == 1 and default_workers("smolvla-libero") == 1
    assert default_workers("tiny") == 2                                 # 1.5 GB actors: the cores
    monkeypatch.setattr(resources.os, "cpu_count", lambda: 16)
    assert default_workers("tiny") == 7 and resources.at_a_time(6.0, limit=2) == 1 and resources.at_a_time(100.0) == 1


def test_a_rerun_runs_nothing_twice(evaluated):
    folder, pipe, _ = evaluated
    before = results(folder)
    res = doit(pipe, "eval")
    assert "0 to run" in res.stderr and "Started a local Ray instance" not in res.stderr
    assert results(folder) == before


def test_a_killed_actors_episode_is_rerun_and_is_deterministic(evaluated):
    folder, pipe, _ = evaluated
    before = results(folder)[(1, 1)]
    (folder / "artifacts" / "eval" / "libero_spatial" / "task1" / "trial1.json").unlink()
    # the actor running it is SIGKILLed at step 1, from outside the project's code (tests/fixtures/kill_actor)
    fixture = str(Path(__file__).parent / "fixtures" / "kill_actor")
    env = dict(os.environ, SMOLVLA_TEST_KILL=f"libero_spatial:1:1:1:{folder / 'killed.marker'}",
               PYTHONPATH=os.pathsep.join([fixture] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    res = doit(pipe, "eval", env=env)
    assert (folder / "killed.marker").exists()
    assert "1 to run" in res.stderr and "died" in res.stderr and "1 actor(s) replaced" in res.stderr
    after = results(folder)[(1, 1)]
    assert not after.get("error") and after["steps"] == 3
    # same (suite, task, trial, seed): the same actions whichever actor ran it
    assert after["seed"] == before["seed"] and after["actions"] == before["actions"]
    info = json.loads((folder / "artifacts" / "eval" / "eval_info.json").read_text())
    assert info["overall"]["n_episodes"] == 4


def test_a_two_node_loopback_cluster_spreads_the_episodes(evaluated, tmp_path):
    """`ray start --head` and a second node on 127.0.0.1, one CPU each: the two actors land on both
    nodes and each result says which node ran it. The cluster is stopped at the end, and only it:
    each `ray start --block` leads a process group of its own, which is killed (`ray stop` would
    stop every Ray instance on the machine), and its session files, the address file that `ray.init()`
    looks for included, are in a temporary folder of its own, not /tmp/ray."""
    import shutil
    import signal
    import socket
    import subprocess
    import sys
    import tempfile
    import time
    folder, pipe, _ = evaluated
    ray_cli = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    env = dict(os.environ, RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="0")
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats", "--block"]
    sessions = tempfile.mkdtemp(prefix="ray-")         # short: Ray's socket paths must fit 107 characters
    alive = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
             "print(sum(n['Alive'] for n in ray.nodes()))")
    nodes = []
    try:
        for args in (["--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", sessions],
                     ["--address", address]):
            nodes.append(subprocess.Popen([ray_cli, "start", *args, *common], env=env, start_new_session=True,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            deadline = time.time() + 180
            while True:               # this node has joined: as many alive nodes as started
                out = subprocess.run([sys.executable, "-c", alive, address], capture_output=True, text=True, env=env,
                                     timeout=120).stdout.strip()
                if out == str(len(nodes)):
                    break
                assert time.time() < deadline and all(n.poll() is None for n in nodes), f"ray start: {out!r}"
                time.sleep(1)
        cfg = yaml.safe_load(pipe.read_text())
        cfg["evaluation"]["ray"] = {"address": address}
        cluster = pipe.with_name("cluster.yaml")
        cluster.write_text(yaml.safe_dump(cfg))
        for p in (folder / "artifacts" / "eval" / "libero_spatial").glob("task*/trial*.json"):
            p.unlink()
        res = doit(cluster, "eval", env=env)
        assert "4 to run on 2 Ray actor(s)" in res.stderr and "Started a local Ray instance" not in res.stderr
    finally:
        for n in reversed(nodes):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(n.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    n.wait(timeout=30)
                    break
                except subprocess.TimeoutExpired:
                    continue
        shutil.rmtree(sessions, ignore_errors=True)
    got = results(folder)
    assert len(got) == 4 and len({r["node"] for r in got.values()}) == 2
    info = json.loads((folder / "artifacts" / "eval" / "eval_info.json").read_text())
    assert len(info["nodes"]) == 2


def test_divergence_reports_each_precision_against_the_fp32_policy(evaluated):
    """`doit divergence` on 2 tiny episodes: the fp16 proxy acts beside the fp32 shadow, the fp32
    reference runs the same seeds; summary.md, divergence.json and the chart. proxy_max_ratio is
    raised: the tiny fp16 proxy's measured distance to the HTP is near the HTP's own to fp32
    (test_proxies.py), over the default's 20%."""
    folder, pipe, _ = evaluated
    cfg = yaml.safe_load(pipe.read_text())
    cfg["evaluation"].update(runtime="proxy", divergence=["fp16"], tasks=[0], trials=2)
    pipe.write_text(yaml.safe_dump(cfg))
    refused = doit(pipe, "divergence", check=False)                  # the default proxy_max_ratio, 0.2
    assert refused.returncode != 0 and "over evaluation.proxy_max_ratio 0.2" in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr
    cfg["evaluation"]["proxy_max_ratio"] = 5.0
    pipe.write_text(yaml.safe_dump(cfg))
    res = doit(pipe, "divergence")
    # the baseline's two episodes are the ones `doit eval` ran on the reference runtime: reused
    assert "eval: 2 episodes, 2 already done with this policy, 0 to run" in res.stderr
    root = folder / "artifacts" / "eval" / "divergence"
    d = json.loads((root / "divergence.json").read_text())
    fp16 = d["precisions"]["fp16"]
    assert fp16["episodes"] == 2 and d["baseline"]["episodes"] == 2 and fp16["runtime"] == "proxy"
    assert fp16["control_steps"] == 6 and fp16["action_diff"]["n"] == 6                     # 2 episodes x 3 steps
    assert 0 < fp16["action_diff"]["median"] <= fp16["action_diff"]["p95"] <= fp16["action_diff"]["max"] < 0.05
    assert fp16["ee_max_m"]["n"] == 2 and fp16["ee_max_m"]["max"] >= 0
    assert set(d["proxy_ratio"]["fp16"]) == {"vision_encoder", "llm_backbone", "action_head"}
    summary = (root / "summary.md").read_text()
    assert "RANDOM WEIGHTS" in summary and "| fp16 | proxy | 2 |" in summary
    assert (root / "divergence.png").stat().st_size > 0
    # eval's own summary is left as `doit eval` wrote it (its 4 episodes), not the baseline's 2
    assert json.loads((folder / "artifacts" / "eval" / "eval_info.json").read_text())["overall"]["n_episodes"] == 4
    trial = json.loads((root / "fp16" / "libero_spatial" / "task0" / "trial0.json").read_text())
    assert len(trial["action_diffs"]) == len(trial["ee_positions"]) == trial["steps"] == 3
