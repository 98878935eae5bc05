"""An incremental build equals a clean one (docs/incremental.md): under every setting of the schema,
precisions added, removed and reordered, a crash at any point, and two workers.

"Equal" is tests/fixtures/build_equality.py. The edits are drawn from the schema
(tests/fixtures/schema_edits.py). Each edit's effect on every task's up-to-date key (its spec's
digest, file deps and targets) is computed for all of them; the builds then check:
- the edits that change no key of the default build, all at once: `doit` runs nothing, and a clean
  build of the edited pipeline equals the clean build;
- the precision edits, and one edit of the others drawn per session (a group of the stage families
  they change, then an edit in it; $SMOLVLA_PROPERTY_SEED repeats a draw, $SMOLVLA_PROPERTY_EDITS=all
  runs every one): `doit` after the edit equals a clean build of the edited pipeline, and `doit`
  after undoing it equals the clean build it started from.
The shared tiny build is this module's to change (conftest.own_build), and comes back at the end.
"""

from __future__ import annotations

import functools
import os
import random
import signal
import subprocess
import time

import pytest
import yaml

from build_equality import outputs
from schema_edits import SET_ASIDE, precision_edits, setting_edits, settings

from conftest import doit, doit_command, traced_env, write_pipeline

SEED = int(os.environ.get("SMOLVLA_PROPERTY_SEED", random.SystemRandom().randrange(10**6)))
ALL_EDITS = os.environ.get("SMOLVLA_PROPERTY_EDITS") == "all"
DRAWN_PER_SESSION = 1


def default_task_keys(pipe_path) -> dict[str, tuple]:
    """{task: (kw digest, file deps, targets)} of the tasks a bare `doit` runs."""
    from smolvla_build.stages import load_tasks
    config, creators = load_tasks(pipe_path)
    keys = {}
    for creator in creators.values():
        for t in creator():
            if t["basename"] in config["default_tasks"]:
                name = f"{t['basename']}:{t['name']}" if "name" in t else t["basename"]
                keys[name] = (t["uptodate"][0]._calc_digest(), tuple(sorted(t.get("file_dep", []))),
                              tuple(sorted(t.get("targets", []))))
    return keys


@pytest.fixture(scope="module")
def edits(own_build):
    """Every setting's edit and the precision edits, each with the tasks whose key it changes
    (computed on the build's own pipeline file, which is put back after)."""
    raw = yaml.safe_load(own_build.pipe.read_text())
    from smolvla_build.config import load_pipeline
    drawn, _ = setting_edits(raw, load_pipeline(own_build.pipe).data)
    base = default_task_keys(own_build.pipe)
    def changed_keys(e):
        own_build.pipe.write_text(yaml.safe_dump(e(raw), sort_keys=False))
        keys = default_task_keys(own_build.pipe)
        return {t for t in set(base) | set(keys) if base.get(t) != keys.get(t)}

    try:
        return raw, [(e, changed_keys(e)) for e in drawn], [(e, changed_keys(e)) for e in precision_edits(raw)]
    finally:
        own_build.pipe.write_text(yaml.safe_dump(raw, sort_keys=False))


def clean_build(folder, raw: dict):
    """A clean build of `raw` in a new folder (two workers, which build what one does: the kill test)."""
    # the incremental runs of this module use two workers too: the session's shared build used one
    folder.mkdir()
    pipe = folder / "pipeline.yaml"
    pipe.write_text(yaml.safe_dump(raw, sort_keys=False))
    doit(pipe, "-n", "2")
    return folder / "artifacts"


def same_as_clean(artifacts, clean, access_trace, made, clean_built_in=None) -> list[str]:
    """How an incrementally built folder differs from a clean build of its pipeline. What the clean
    build does not make (a removed precision's files) may stay if a clean build of an earlier
    pipeline made it (`made`), and no task of the incremental run read or listed it (access_trace)."""
    from access_trace import accesses
    from build_equality import differences
    extra = set(outputs(artifacts)) - set(outputs(clean))
    touched = {path for _, kind, path in accesses(access_trace) if kind in ("read", "list")}
    found = [f"read though no clean build makes it: {p}" for p in sorted(extra) if str(artifacts / p) in touched]
    found += [f"left over though no earlier clean build made it: {p}" for p in sorted(extra - made)]
    return found + [d for d in differences(artifacts, clean, b_built_in=clean_built_in)
                    if not any(d == f"only in {artifacts}: {p}" for p in extra)]


def test_every_setting_is_drawn_or_set_aside_with_a_reason(edits):
    raw, drawn, _ = edits
    names = {e.name for e, _ in drawn}
    for name, _ in settings():
        pattern = name.split(".")
        covered = any(len(n.split(".")) == len(pattern) and all(p in ("*", q) for p, q in zip(pattern, n.split(".")))
                      for n in names)
        assert covered or name in SET_ASIDE, f"{name}: no edit drawn from its schema and none set aside"
    assert len(names) > 50


def test_edits_that_change_no_key_change_no_output(edits, own_build, tmp_path):
    raw, drawn, _ = edits
    inert = [e for e, changed in drawn if not changed]
    assert {"evaluation.seed", "evaluation.videos", "toolchain.host"} <= {e.name for e in inert}
    edited = functools.reduce(lambda r, e: e(r), inert, raw)
    own_build.pipe.write_text(yaml.safe_dump(edited, sort_keys=False))
    try:
        assert doit(own_build.pipe).ran == set()
        clean = clean_build(tmp_path / "clean", edited)
        assert own_build.differences_from_clean(clean) == [], [e.name for e in inert]
    finally:
        own_build.pipe.write_text(yaml.safe_dump(raw, sort_keys=False))


def _drawn(drawn, structural):
    """The edits whose builds run this session: the precision edits, and settings' edits drawn from
    the groups of stage families they change (DRAWN_PER_SESSION groups), or all of them."""
    keyed = [(e, c) for e, c in drawn if c]
    if ALL_EDITS:
        return structural + keyed
    groups: dict[frozenset, list] = {}
    for e, c in keyed:
        groups.setdefault(frozenset(t.split(":")[0] for t in c), []).append((e, c))
    rng = random.Random(SEED)
    chosen = rng.sample(sorted(groups, key=sorted), min(DRAWN_PER_SESSION, len(groups)))
    return structural + [rng.choice(groups[g]) for g in chosen]


def test_after_an_edit_and_after_undoing_it_the_build_equals_a_clean_one(edits, own_build, tmp_path):
    raw, drawn, structural = edits
    made = set(outputs(own_build.clean_artifacts))        # by the clean builds so far
    for i, (edit, changed) in enumerate(_drawn(drawn, structural)):
        what = f"{edit.name} (SMOLVLA_PROPERTY_SEED={SEED})"
        edited = edit(raw)
        own_build.pipe.write_text(yaml.safe_dump(edited, sort_keys=False))
        trace = tmp_path / f"trace{i}"
        trace.mkdir()
        res = doit(own_build.pipe, "-n", "2", env=traced_env(trace))
        assert changed & set(default_task_keys(own_build.pipe)) <= res.ran, what
        clean = clean_build(tmp_path / f"clean{i}", edited)
        made |= set(outputs(clean))
        assert same_as_clean(own_build.artifacts, clean, trace / "access.txt", made) == [], what
        own_build.pipe.write_text(yaml.safe_dump(raw, sort_keys=False))
        (trace / "access.txt").unlink(missing_ok=True)
        doit(own_build.pipe, "-n", "2", env=traced_env(trace))
        assert same_as_clean(own_build.artifacts, own_build.clean_artifacts, trace / "access.txt",
                             made, own_build.folder) == [], f"undoing {what}"


def _after(seconds: float):
    return lambda root, started: time.time() - started >= seconds


def _writing_models(root, started) -> bool:
    """The export has begun writing its models (into its hidden staging folder)."""
    return any((root / "export").glob(".staging-*/*.onnx"))


KILL_POINTS = [   # (task whose start is awaited, when after it to stop, what is then running, how)
    ("export", _writing_models, "the export, mid-write", "kill"),
    ("preprocess:llm_backbone", _after(0.8), "a graph pass", "kill"),
    ("context:vision_encoder-fp16", _after(0.15), "a context compile", "kill"),
    # Ctrl-C (SIGINT to doit alone, as `timeout -s INT` sends it) while its main thread is inside an
    # HTP-emulated onnxruntime call: the build stops there, in one line (smolvla_build/interrupt.py)
    ("measure:vision_encoder-fp16", _after(1.0), "validation", "ctrl-c"),
    ("report", _after(0.3), "the report", "kill"),
]


def _doit_until(pipe, task: str, ready, how: str = "kill"):
    """Run doit (`-n 2`; one process for "ctrl-c") and, once `task` has started and `ready(artifacts,
    start time)` holds, SIGKILL its whole process group ("kill") or send doit SIGINT ("ctrl-c").
    (whether it was stopped rather than ending first, its stdout after the task started, its stderr,
    its exit status)."""
    args = ("-n", "2") if how == "kill" else ()
    log = pipe.parent / f"doit-{how}.stderr"          # a file: a full stderr pipe would stall doit
    with open(log, "w") as err:
        proc = subprocess.Popen(doit_command(pipe, *args), stdout=subprocess.PIPE, stderr=err, text=True,
                                start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        for line in proc.stdout:
            if line.strip() == f".  {task}":
                started = time.time()
                while not ready(pipe.parent / "artifacts", started):
                    if proc.poll() is not None:
                        return False, "", log.read_text(), proc.returncode
                    time.sleep(0.005)
                if how == "kill":
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.send_signal(signal.SIGINT)
                after = proc.stdout.read()
                proc.wait()
                return True, after, log.read_text(), proc.returncode
        proc.wait()
        return False, "", log.read_text(), proc.returncode
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_build_killed_at_any_point_resumes_to_the_clean_build_and_two_workers_build_what_one_does(shared_build,
                                                                                                  tmp_path):
    """Two workers (`doit -n 2`), killed during each kind of stage in turn and resumed; the shared
    clean build it must end equal to ran one (`doit`)."""
    pipe = write_pipeline(tmp_path)
    root = tmp_path / "artifacts"
    from smolvla_build.interrupt import MESSAGE
    for task, ready, what, how in KILL_POINTS:
        stopped, after, err, status = _doit_until(pipe, task, ready, how)
        assert stopped, f"the build ended before {what} could be stopped"
        if how == "ctrl-c":         # at once: no later task started, the running one wrote nothing
            lines = [line for line in err.splitlines() if line.strip()]
            assert status == 130 and lines[-1] == MESSAGE and "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
            assert not after.strip() and not (root / "validation" / "vision_encoder-fp16.measured.json").exists()
        # whatever is there is whole: every output present means what the clean build's does
        assert shared_build.differences_from_clean(root) == \
            [f"only in {shared_build.clean_artifacts}: {p}" for p in outputs(shared_build.clean_artifacts)
             if not (root / p).exists()], f"after a kill during {what}"
    res = doit(pipe, "-n", "2")
    assert "report" in res.ran
    assert "-n" not in shared_build.first.proc.args                # the clean build ran one worker
    assert shared_build.differences_from_clean(root) == []
    assert doit(pipe).ran == set()
