"""The architecture (issue #34; docs/architecture.md): one-way layers under a torch-free model core,
kept by import-linter's contracts in pyproject.toml, and up-to-date keys that cover only what a
task runs, counted without comments or docstrings (docs/incremental.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, write_pipeline

PACKAGES = ("smolvla_build", "smolvla_runtime")


@pytest.fixture(scope="module")
def graph():
    import grimp
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def test_the_import_contracts_hold():
    """pyproject.toml's contracts: the layers of each package (every module placed), the runtime
    under the build, no cycle between siblings, the runtime free of torch & co., no action able to
    read the pipeline file."""
    proc = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command())", "--no-cache", "--no-logo", "--config", str(ROOT / "pyproject.toml")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout and "6 kept" in proc.stdout, proc.stdout[-2000:]


def test_no_module_can_import_itself_through_others(graph):
    """No cycle at all in the module graph (lazy imports inside functions included): each strongly
    connected component is one module."""
    modules = sorted(m for m in graph.modules if m.split(".")[0] in PACKAGES)
    index, low, on_stack, stack, cycles, counter = {}, {}, set(), [], [], [0]

    def visit(v):                       # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.find_modules_directly_imported_by(v)):
            if w.split(".")[0] not in PACKAGES:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for m in modules:
        if m not in index:
            visit(m)
    assert cycles == []


def test_no_private_module_is_used_from_outside_its_package(graph):
    wrong = []
    for importer in graph.modules:
        if importer.split(".")[0] not in PACKAGES:
            continue
        for imported in graph.find_modules_directly_imported_by(importer):
            parts = imported.split(".")
            for i, part in enumerate(parts):
                if part.startswith("_") and not part.startswith("__"):
                    package = ".".join(parts[:i])
                    if not (importer + ".").startswith(package + "."):
                        wrong.append(f"{importer} -> {imported}")
    assert wrong == []


def _tasks(pipe):
    from smolvla_build.stages import load_tasks
    config, creators = load_tasks(pipe)
    return config, {f"{t['basename']}:{t['name']}" if "name" in t else t["basename"]: t
                    for c in creators.values() for t in c()}


def test_each_key_covers_only_what_its_action_runs(tmp_path):
    """The code part of a key is the import closure of the action's module: the episode code is in
    no build task's but calibrate's (it records episodes), torch's model in no task's but the
    export's, and no action's closure holds the pipeline loader or the task declarations."""
    from smolvla_build.stages.keys import import_closure
    quantized = {"w8a16": {"quantization": {"weights": 8, "activations": 16}},
                 "fp16": {"converter": {"float_bitwidth": 16}}}
    config, tasks = _tasks(write_pipeline(tmp_path, precisions=quantized))
    closures = {name: set(import_closure(t["actions"][0][0].fn.module)) for name, t in tasks.items()}
    for name, closure in closures.items():
        family = name.split(":")[0]
        assert not {m for m in closure if m.startswith(("smolvla_build.config", "smolvla_build.stages"))}, name
        if family not in ("calibrate", "infer", "eval", "divergence"):
            assert not {m for m in closure if m.startswith("smolvla_build.evaluate")}, name
        if family != "export":
            assert "smolvla_build.export.model" not in closure, name
    measure = closures["measure:action_head-fp16"]
    assert {"smolvla_build.validation.measure", "smolvla_runtime.model", "smolvla_build.toolchains.ort_qnn"} <= measure
    assert not {m for m in measure if m.startswith(("smolvla_build.proxies", "smolvla_build.packaging",
                                                    "smolvla_build.build_report", "smolvla_build.validation.verdict"))}
    assert len(closures["validate:action_head-fp16"]) < len(measure) < 40
    # the runtime package re-exports nothing, so importing one of its modules brings no other
    for name in ("validate:action_head-fp16", "export", "context:action_head-fp16", "quantize:action_head-w8a16"):
        assert "smolvla_runtime.policy" not in closures[name] and "smolvla_runtime.preprocessing" not in closures[name], name


def test_keys_hold_only_the_settings_their_action_reads(tmp_path):
    """Calibrate records episodes on the fp32 reference: the SoC and the HTP runtimes' settings are
    not in its key; quantize reads only its precision's quantization; the qairt chain's converter
    and context keys hold no compiler."""
    import copy

    import yaml
    quantized = {"w8a16": {"quantization": {"weights": 8, "activations": 16}},
                 "fp16": {"converter": {"float_bitwidth": 16}}}
    base = yaml.safe_load(write_pipeline(tmp_path, precisions=quantized).read_text())

    def keys(data, name):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data))
        return {n: t["uptodate"][0]._calc_digest() for n, t in _tasks(path)[1].items() if t["uptodate"] != [False]}
    before = keys(base, "base.yaml")
    edited = copy.deepcopy(base)
    edited["soc"] = dict(edited["soc"], name="Snapdragon X Plus")
    edited["evaluation"] = dict(edited["evaluation"], proxy_max_ratio=0.5,
                                qnn_net_run={"rpc_control_latency": 200}, ort_qnn={"htp_performance_mode": "high_performance"})
    edited["precisions"]["w8a16"]["context"] = {"vtcm_mb": 4}
    after = keys(edited, "edited.yaml")
    calibrate = [n for n in before if n.startswith("calibrate")]
    quantize = [n for n in before if n.startswith("quantize")]
    assert calibrate and quantize
    assert [n for n in calibrate + quantize if before[n] != after[n]] == []
    assert before["context:action_head-w8a16"] != after["context:action_head-w8a16"]     # what it does read


def test_the_qairt_chain_keys_each_task_on_the_tools_it_runs(tmp_path, monkeypatch):
    """Another lld-link (or clang) changes the keys of the tasks that compile or link, not the
    converter's or the context generator's."""
    import shutil
    if not (shutil.which("clang-16") and shutil.which("lld-link-16")):
        pytest.skip("clang-16 and lld-16 are installed by scripts/test.sh")
    from make_fake_sdk import fake_qairt_sdk

    from smolvla_build.toolchains.qairt import compilers
    sdk = fake_qairt_sdk(tmp_path / "sdk")
    pipe = write_pipeline(tmp_path, toolchain={"kind": "qairt", "sdk_version": "2.25.0", "sdk_root": str(sdk)})

    def keys():
        return {n: t["uptodate"][0]._calc_digest() for n, t in _tasks(pipe)[1].items()
                if n.split(":")[0] in ("convert", "compile", "link", "hostlib", "context")}
    before = keys()
    tools = compilers.host_tools()
    monkeypatch.setattr(compilers, "host_tools", lambda: dict(tools, lld_link=shutil.which("true")))
    after = keys()
    assert {n.split(":")[0] for n in before if before[n] != after[n]} == {"compile", "link", "hostlib"}


def test_a_comment_a_docstring_or_a_line_moved_changes_no_code_digest(tmp_path):
    from smolvla_build.stages.keys import _parse
    base = ('"""A module."""\nimport math\n\n\ndef f(x):\n    """Doc."""\n    return math.sqrt(x) + 1  # one\n\n\n'
            'class C:\n    """Doc."""\n    y = {"a", "b"}\n')
    variants = {
        "comment": base.replace("# one", "# two, longer"),
        "docstring": base.replace('"""Doc."""', '"""Another\n    doc."""').replace('"""A module."""', '"""B."""'),
        "moved": "\n\n" + base.replace("def f(x):", "# above\ndef f(x):"),
        "code": base.replace("+ 1", "+ 2"),
        "name": base.replace("class C", "class D"),
    }

    def digest(text, name="m"):
        f = tmp_path / f"{name}.py"
        f.write_text(text)
        return _parse("smolvla_build.m", f)
    want = digest(base)
    for what, text in variants.items():
        same = digest(text, what) == want
        assert same == (what in ("comment", "docstring", "moved")), what
    # the same source in another process (string hashing randomized) gives the same digest
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "from smolvla_build.stages.keys import _parse; print(_parse('smolvla_build.m', Path(sys.argv[2]))[1])")
    (tmp_path / "m.py").write_text(base)
    other = subprocess.run([sys.executable, "-c", code, str(ROOT), str(tmp_path / "m.py")], capture_output=True,
                           text=True, check=True, env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout.strip()
    assert other == want[1]
