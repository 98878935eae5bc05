"""The task graph: stale-only rebuilds, scenario by scenario, on the tiny preset through doit's CLI.

The scenarios share one build (module scope) and run in file order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import onnx
import pytest
import yaml

from smolvla_runtime.model import MODELS

from conftest import ROOT, chain, doit, write_pipeline

PRECISIONS = ("fp16", "fp32")
ALL_TASKS = ({"export", "report"} | {f"{s}:{m}" for s in ("preprocess", "reference") for m in MODELS}
             | {f"{s}:{m}-{p}" for s in ("context", "measure", "validate") for m in MODELS for p in PRECISIONS})


@pytest.fixture(scope="module")
def build(own_build):
    """The shared tiny build (traced: tests/fixtures/build_trace), this module's to change."""
    return own_build.folder, own_build.pipe, own_build.first


def declared_distributions(*extras: str) -> set[str]:
    from declared_env import declared_requirements, distribution_name
    return {distribution_name(r) for r in declared_requirements(*extras)}


def imported_distributions(module_files, top_level_only: bool = False) -> dict[str, set[str]]:
    """{distribution: {project file}} of every import statement (lazy ones too, unless
    `top_level_only`) in `module_files` that is neither the standard library nor the project."""
    import ast
    import re
    from importlib.metadata import packages_distributions
    dists = packages_distributions()
    out: dict[str, set[str]] = {}
    for f in module_files:
        tree = ast.parse(f.read_text())
        for node in (tree.body if top_level_only else ast.walk(tree)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("smolvla_build", "smolvla_runtime"):
                    continue
                for d in dists.get(top, [top]):
                    out.setdefault(re.sub(r"[-_.]+", "-", d).lower(), set()).add(f.relative_to(ROOT).as_posix())
    return out


def test_every_task_is_keyed_on_all_the_project_code_its_action_runs(build):
    """The code part of a task's key is derived from its action's imports, not listed by hand: every
    project module the tiny build loaded (traced in the doit process) is in the import closure of
    the task generation or of an action that ran, and measure's closure holds what it runs."""
    from smolvla_build.stages.keys import import_closure
    folder, pipe, _ = build
    loaded = set((folder / "imports.txt").read_text().split())
    from smolvla_build.stages import load_tasks
    _, creators = load_tasks(pipe)
    modules = {t["actions"][0][0].fn.module for c in creators.values() for t in c()
               if hasattr(t["actions"][0][0].fn, "module")}
    covered = set(import_closure("smolvla_build.stages"))
    for m in modules:
        covered |= set(import_closure(m))
    assert loaded <= covered, sorted(loaded - covered)
    assert {"smolvla_build.toolchains.ort_qnn", "smolvla_build.onnx_graph",
            "smolvla_runtime.runners"} <= set(import_closure("smolvla_build.validation.measure"))


def test_the_tiny_build_passes_with_only_the_declared_dependencies_installed(build, declared_env):
    """The shared build ran in a venv made only of `pip install -e .[export]` (issue #23): the
    packages a build may import, and nothing else (no LIBERO, Ray or pytest)."""
    _, _, first = build
    assert first.returncode == 0 and ALL_TASKS <= first.ran
    assert first.proc.args[0] == str(declared_env)
    probe = subprocess.run([str(declared_env), "-c", "import importlib.util as u, sys; print(sys.prefix); "
                            "print([m for m in ('libero', 'ray', 'pytest', 'robosuite') if u.find_spec(m)])"],
                           capture_output=True, text=True, check=True)
    prefix, present = probe.stdout.split("\n")[:2]
    assert prefix == str(declared_env.parent.parent) and present == "[]"


def test_the_build_imports_only_declared_dependencies(build):
    """What the tiny build runs imports only the standard library, the project and what
    pyproject.toml declares for the build (core + export): no LIBERO, no undeclared package
    (scripts/build.sh installs `.[export]`). Every import statement counts, lazy ones too, in the
    code of the actions that ran; in the other modules the build loaded (traced in the doit process:
    the task declarations read the spec types of `doit infer` and `doit eval` too), those at module
    level."""
    from smolvla_build.stages import load_tasks
    from smolvla_build.stages.keys import import_closure, module_file
    folder, pipe, first = build
    loaded = set((folder / "imports.txt").read_text().split())
    assert {"smolvla_build.build_report", "smolvla_build.passes.pipeline"} <= loaded
    _, creators = load_tasks(pipe)
    ran = {m for c in creators.values() for t in c()
           if (f"{t['basename']}:{t['name']}" if "name" in t else t["basename"]) in first.ran
           for m in import_closure(t["actions"][0][0].fn.module)}
    assert "smolvla_build.validation.measure" in ran          # what the actions can import: more than they did
    found = imported_distributions([module_file(m) for m in ran])
    for d, f in imported_distributions([module_file(m) for m in loaded - ran], top_level_only=True).items():
        found.setdefault(d, set()).update(f)
    undeclared = {d: sorted(f) for d, f in found.items() if d not in declared_distributions("export")}
    assert undeclared == {}


def test_each_task_reads_only_its_declared_inputs_and_writes_its_targets_atomically(build):
    """What the tasks of the tiny build touched (Python's audit events, traced per task:
    tests/fixtures/build_trace) against what they declare. In the artifacts folder a task reads only
    its file deps and its own targets, lists only its own folders, writes a target only by renaming
    a finished temp file onto it (atomic_path, atomic_dir), and touches hidden scratch files freely;
    a model's external weights (`<model>.onnx.data`) go with the model. No task reads the pipeline
    file: what it reads of the settings comes in its spec, which is its key."""
    from smolvla_build.stages import load_tasks
    folder, pipe, _ = build
    root = folder / "artifacts"
    _, creators = load_tasks(pipe)
    declared = {}
    for c in creators.values():
        for t in c():
            declared[f"{t['basename']}:{t['name']}" if "name" in t else t["basename"]] = t
    seen, wrong = set(), []
    from access_trace import accesses
    for task, kind, path in accesses(folder / "access.txt"):
        seen.add(task)
        if path == str(pipe):
            wrong.append(f"{task} {kind}s the pipeline file")
        if not path.startswith(str(root) + os.sep):
            continue
        rel = os.path.relpath(path, root)
        if any(part.startswith(".") for part in rel.split(os.sep)):
            continue                                  # scratch: atomic_path / atomic_dir temp files
        path = path[: -len(".data")] if path.endswith(".onnx.data") else path
        deps, targets = set(declared[task].get("file_dep", [])), set(declared[task].get("targets", []))
        ok = {"read": path in deps | targets, "rename": path in targets, "remove": path in targets,
              "write": False, "list": any(t.startswith(path + os.sep) for t in targets)}[kind]
        if not ok:
            wrong.append(f"{task} {kind}: {rel}")
    assert seen >= {"export", "report", "preprocess:llm_backbone", "validate:action_head-fp16"}
    assert wrong == []


def _perturb(path):
    """A real content change of a source model: shift one weight of the graph (not the token
    embedding table, which leaves the graph for the CPU)."""
    m = onnx.load(str(path))
    init = max((t for t in m.graph.initializer if "embed_tokens" not in t.name), key=lambda t: len(t.raw_data))
    arr = onnx.numpy_helper.to_array(init).copy()
    arr.flat[0] += 0.125
    init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    onnx.save(m, str(path))


def test_full_build_then_nothing_to_do(build):
    folder, pipe, first = build
    assert first.ran == ALL_TASKS
    second = doit(pipe)
    assert second.ran == set()
    assert second.uptodate == ALL_TASKS
    for m in MODELS:
        for p in PRECISIONS:
            assert (folder / "artifacts" / "ort-qnn" / p / f"{m}_ctx_qnn.bin").stat().st_size > 0


def test_comments_docstrings_and_the_evaluation_code_rerun_nothing(build):
    """Issue #34: a comment or a docstring edited anywhere reruns nothing, and neither does new code
    in the episode code, which no task of a bare `doit` runs (calibrate would: it records episodes)."""
    _, pipe, _ = build
    edits = {
        ROOT / "smolvla_build" / "evaluate" / "episode.py": lambda s: s + "\n\ndef _probe():\n    return 1\n",
        ROOT / "smolvla_build" / "validation" / "measure.py":
            lambda s: s.replace('"""What validation measures', '"""What validation, edited, measures', 1) + "# edited\n",
        ROOT / "smolvla_runtime" / "model.py": lambda s: s.replace("# the stages, in call order", "# the stages, in order"),
    }
    saved = {f: f.read_text() for f in edits}
    try:
        for f, edit in edits.items():
            assert edit(saved[f]) != saved[f]
            f.write_text(edit(saved[f]))
        assert doit(pipe).ran == set()
    finally:
        for f, text in saved.items():
            f.write_text(text)
    assert doit(pipe).ran == set()


def test_list_all_shows_every_model_x_precision(build):
    _, pipe, _ = build
    listed = doit(pipe, "list", "--all").stdout
    for m in MODELS:
        assert f"preprocess:{m}" in listed
        for p in PRECISIONS:
            assert f"context:{m}-{p}" in listed and f"validate:{m}-{p}" in listed


@pytest.mark.parametrize("model", ["vision_encoder", "action_head", "llm_backbone"])
def test_changed_source_onnx_reruns_that_chain_only(build, model):
    folder, pipe, _ = build
    _perturb(folder / "artifacts" / "export" / f"{model}.onnx")
    assert doit(pipe).ran == chain(model)
    assert doit(pipe).ran == set()


def test_precision_option_change_reruns_that_precision_only(build):
    folder, pipe, _ = build
    data = yaml.safe_load(pipe.read_text())
    data["precisions"]["fp16"]["context"]["vtcm_mb"] = 4
    pipe.write_text(yaml.safe_dump(data))
    assert doit(pipe).ran == {f"{s}:{m}-fp16" for s in ("context", "measure", "validate") for m in MODELS} | {"report"}
    assert doit(pipe).ran == set()


def test_added_precision_adds_tasks_and_leaves_others(build):
    folder, pipe, _ = build
    data = yaml.safe_load(pipe.read_text())
    data["precisions"]["fp16_o2"] = {"converter": {"float_bitwidth": 16},
                                     "context": {"fp16_relaxed_precision": True, "optimization_level": 2}}
    pipe.write_text(yaml.safe_dump(data))
    listed = doit(pipe, "list", "--all").stdout
    assert all(f"context:{m}-fp16_o2" in listed for m in MODELS)
    # nothing of the other precisions reruns, not even their verdicts (fp16_o2 falls back to no one new)
    assert doit(pipe).ran == {f"{s}:{m}-fp16_o2" for s in ("context", "measure", "validate") for m in MODELS} | {"report"}
    assert (folder / "artifacts" / "ort-qnn" / "fp16_o2" / "action_head_ctx_qnn.bin").is_file()


def test_clean_removes_what_a_task_made(build):
    folder, pipe, _ = build
    ctx = folder / "artifacts" / "ort-qnn" / "fp32" / "vision_encoder_ctx.onnx"
    assert ctx.is_file()
    doit(pipe, "clean", "context:vision_encoder-fp32")
    assert not ctx.exists() and not ctx.with_name("vision_encoder_ctx_qnn.bin").exists()
    assert "context:vision_encoder-fp32" in doit(pipe).ran
    assert ctx.is_file()


def test_tool_upgrade_changes_only_the_key_of_what_it_made(tmp_path, monkeypatch):
    """A new onnxruntime-qnn (or QNN) version must rebuild the contexts and what reads them,
    not the export or the preprocessing."""
    from smolvla_build.stages import load_tasks
    from smolvla_build.toolchains import fingerprint

    pipe = write_pipeline(tmp_path)

    def digests():
        _, creators = load_tasks(pipe)
        out = {}
        for creator in creators.values():
            for t in creator():
                name = t["basename"] + (f":{t['name']}" if "name" in t else "")
                if hasattr(t["uptodate"][0], "_calc_digest"):      # eval always runs (its check is per episode)
                    out[name] = t["uptodate"][0]._calc_digest()
        return out

    before = digests()
    real = fingerprint.package_version
    monkeypatch.setattr(fingerprint, "package_version",
                        lambda name: "9.9.9" if name == "onnxruntime-qnn" else real(name))
    after = digests()
    changed = {k for k in before if before[k] != after[k]}
    # and the device bundle, whose manifest and requirements.txt pin that version; the verdicts only
    # read the measurements
    assert changed == {f"{s}:{m}-{p}" for s in ("context", "measure") for m in MODELS for p in PRECISIONS} | {"bundle"}


def test_atomic_path_survives_a_kill(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old complete content")
    code = (
        "import sys, time\n"
        "from smolvla_build.fsutil import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    tmp.write_bytes(b'half')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.read_bytes() == b"old complete content"


def test_default_pipeline_lists_full_chain():
    listed = doit(ROOT / "pipeline.yaml", "list", "--all").stdout
    assert "export" in listed
    for m in MODELS:
        assert f"context:{m}-fp16" in listed and f"validate:{m}-fp16" in listed
    names = [line.split()[0] for line in listed.splitlines() if line.strip()]
    assert not [n for n in names if n.endswith("-fp32")]    # the fp32 fallback is commented out


def test_task_generation_imports_no_heavy_library(tmp_path):
    """Stages declare, libraries do: generating every task of the tiny pipeline imports none of the
    libraries the actions need (the no-op `doit` stays fast), and no stage imports another."""
    import ast
    pipe = write_pipeline(tmp_path)
    code = ("import sys; from smolvla_build.stages import load_tasks; _, c = load_tasks(sys.argv[1]); "
            "[list(f()) for f in c.values()]; "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'onnx_graphsurgeon', 'transformers', 'ray', "
            "'matplotlib', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(pipe)], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    stages = ROOT / "smolvla_build" / "stages"
    families = {p.stem for p in stages.glob("*.py")} - {"__init__", "keys"}
    for f in stages.glob("*.py"):
        if f.stem == "__init__":
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                assert (node.module or "") not in families, f"{f.name} imports stages.{node.module}"


def test_a_second_doit_on_the_same_artifacts_refuses_at_once_and_a_killed_one_leaves_no_lock(build):
    folder, pipe, _ = build
    root = folder / "artifacts"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from smolvla_build.lock import hold; "
                               "hold(sys.argv[1], []); print('held', flush=True); time.sleep(300)", str(root)],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.time()
        res = doit(pipe, check=False)
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert res.returncode == 2 and time.time() - t0 < 30 and res.ran == set()
        assert lines == [f"error: another doit (pid {holder.pid}) is building in {root}: wait for it to finish or stop "
                         f"it (the lock is {root / '.doit.lock'}; it goes with that process)"]
        assert doit(pipe, "list").returncode == 0                # reading the graph needs no lock
    finally:
        holder.kill()                                            # SIGKILL: no chance to clean up
        holder.wait()
    assert "another doit" not in doit(pipe).stderr               # no stale lock: it builds (check=True)
