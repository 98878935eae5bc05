"""The qnn-net-run runner: the SDK's tool, one process per call (needs the QAIRT SDK; not in the
device bundle). The other runners are the runtime's (smolvla_runtime.runners)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from smolvla_runtime.htp import Soc
from smolvla_runtime.runners import Runner


class QnnNetRunRunner(Runner):
    """The card's way: one qnn-net-run process per call on a serialized context, inputs as headerless
    .raw files listed in input_list.txt (float32, or the native dtype for the tensors named in
    `--native_input_tensor_names graph:t1,t2`), outputs read back from <output_dir>/Result_0/<name>.raw
    (float32). The context's tensors carry the converter's sanitized names; the runner is fed and read
    with the graph's own names.

    On activation the HTP libraries for the SoC's htp_arch (QnnHtp, QnnSystem, the stub, the skel and
    its catalogue on Windows) are staged side by side in `work`/htp, which goes first on the loader's
    path, and qnn-net-run's own backend-extension config (perf profile, RPC latency) is written
    there (docs/qairt-sdk.md, "qnn-net-run")."""

    name = "qnn-net-run"

    def __init__(self, context_bin: str | Path, sdk, graph: str, inputs: list[tuple[str, str, list[int]]],
                 outputs: list[tuple[str, list[int]]], soc: Soc, net_run: dict, work: str | Path):
        super().__init__()
        self.context_bin = Path(context_bin)
        self.sdk = sdk
        self.graph = graph              # the QNN graph name inside the context
        self.inputs = inputs            # (graph name of the tensor, numpy dtype name, dims)
        self.outputs = outputs          # (graph name of the tensor, dims)
        self.soc = soc
        self.net_run = net_run          # evaluation.qnn_net_run
        self.work = Path(work)

    def _load(self):
        from ..fsutil import write_json
        from ..toolchains.qairt.htp import backend_config, netrun_backend_extensions, runtime_env, stage_htp_runtime
        from ..toolchains.qairt.qnn_io import space_free_folder
        from ..toolchains.qairt.sdk import missing_tool
        from ..toolchains import ToolchainError
        if self.sdk.find_tool("qnn-net-run") is None:
            raise ToolchainError(f"qairt: {missing_tool(self.sdk, 'qnn-net-run')}")
        self.folder = space_free_folder(self.work, "qnn-net-run", "smolvla-qnn-net-run-")
        if self.folder != self.work.resolve():     # a temporary folder: removed with the runner at the latest
            import shutil
            import weakref
            self._remove_folder = weakref.finalize(self, shutil.rmtree, self.folder, True)
        staged = stage_htp_runtime(self.sdk, self.soc.htp_arch, self.folder / "htp")
        self.backend = staged["backend"]
        self.env = runtime_env(self.sdk, self.folder / "htp")
        ext = self.folder / "htp_backend_ext.json"
        write_json(ext, netrun_backend_extensions(self.soc, self.net_run))
        self.config = self.folder / "htp_config.json"
        write_json(self.config, backend_config(staged["extensions"], ext))
        return self                     # nothing persistent: every call is a new process

    def deactivate(self):
        """A temporary folder (taken when `work` has a space) goes with the session; a runner that is
        never deactivated removes it when it is collected or the process exits (weakref.finalize)."""
        remove = getattr(self, "_remove_folder", None)
        if self.session is not None and remove is not None:
            remove()
        super().deactivate()

    @property
    def input_names(self) -> list[str]:
        return [n for n, _, _ in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [n for n, _ in self.outputs]

    def get_inputs(self):               # the session interface cast_feeds reads
        from types import SimpleNamespace
        return [SimpleNamespace(name=n, type=f"tensor({'float' if d == 'float32' else d})", shape=s)
                for n, d, s in self.inputs]

    def infer(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        import tempfile

        from ..templates import render, render_command
        from ..toolchains.qairt.qnn_io import native_names_arg, sanitize, write_raw_inputs
        from ..toolchains.qairt.run import run
        self.activate()
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="call-", dir=self.folder) as tmp:
            tmp = Path(tmp)
            line, native = write_raw_inputs(feeds, self.inputs, tmp)
            input_list = tmp / "input_list.txt"
            input_list.write_text(render("qairt/input_list.txt.j2", lines=[line]))
            cmd = render_command("qairt/qnn_net_run.j2", netrun=self.sdk.tool("qnn-net-run"), context=self.context_bin,
                                 backend=self.backend, config=self.config, input_list=input_list, outdir=tmp / "out",
                                 native_inputs=native_names_arg(self.graph, native) if native else "",
                                 log_level=self.net_run.get("log_level"), profiling_level=self.net_run.get("profiling_level"))
            run(cmd, env=self.env)
            result = {}
            for name, dims in self.outputs:
                if outputs and name not in outputs:
                    continue
                raw = tmp / "out" / "Result_0" / f"{sanitize(name)}.raw"
                result[name] = np.fromfile(raw, dtype=np.float32).reshape(dims)
        self.inference_times.append(time.perf_counter() - t0)
        return result
