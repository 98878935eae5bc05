"""Where every artifact of a pipeline lives: one module below the tasks (stages/), the checks and
the runtime on artifacts, so all agree on every path and none reaches into another.

A `Layout` is a frozen value (the artifacts folder, the toolchain whose contexts it points at, and
an ONNX source's folder), so a task spec carries it as it is. The built HTP context of a model x
precision depends on the toolchain: ort-qnn writes `ort-qnn/<precision>/<model>_ctx.onnx`
(+ `_qnn.bin`), qairt writes the SDK chain's files under `qairt/<precision>/<model>/`
(`QairtPaths`). `Layout.context*` answer for the layout's toolchain, so validation, the report and
the runtime read the right files for either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from smolvla_runtime.model import MODELS, STAGES


class QairtPaths:
    """The qairt chain's files for one model x precision. Every tool runs in its own staging folder
    (`staging(task)`), emptied before the run; outputs are moved into place only when complete."""

    def __init__(self, root: Path, model: str, precision: str):
        self.dir = root / "qairt" / precision / model
        self.model, self.precision = model, precision
        self.cpp = self.dir / f"{model}.cpp"
        self.bin = self.dir / f"{model}.bin"
        self.net_json = self.dir / f"{model}_net.json"
        self.obj = self.dir / "obj"
        self.manifest = self.obj / "objects.json"
        self.dll = self.dir / f"lib{model}_htp.dll"
        self.hostlib = self.dir / "host" / "x86_64-linux-clang" / f"lib{model}.so"
        self.backend_ext = self.dir / "htp_backend_ext.json"
        self.htp_config = self.dir / "htp_config.json"
        self.serialized = self.dir / f"lib{model}_htp_{precision}.serialized.bin"
        self.binary_info = self.dir / f"lib{model}_htp_{precision}.serialized.json"   # qnn-context-binary-utility
        self.ctx_onnx = self.dir / f"{model}_qairt_ctx.onnx"
        self.context_info = self.dir / f"{model}_context.json"                       # sizes, times (report)

    def staging(self, task: str) -> Path:
        return self.dir / ".staging" / task


# the files the LIBERO tasks write, named once for their writers (smolvla_build/evaluate/) and the
# task declarations
EPISODE_FILES = {"info": "eval_info.json", "video": "video.mp4", "actions": "actions.json",
                 "timings": "timings.json", "plot": "actions.png"}
EVAL_FILES = {"info": "eval_info.json", "summary": "summary.md"}
DIVERGENCE_FILES = {"data": "divergence.json", "summary": "summary.md", "chart": "divergence.png"}


@dataclasses.dataclass(frozen=True)
class Layout:
    root: Path                        # the artifacts folder (pipeline.yaml `artifacts:`, resolved)
    toolchain: str                    # whose contexts: ort-qnn | qairt
    onnx_source: Path | None = None   # source.weights onnx: the folder holding the three stage models

    @property
    def made_ledger(self) -> Path:
        """What each task made, a JSON line per success (smolvla_build/leftovers.py: `prune`)."""
        return self.root / ".doit.made.jsonl"

    # export
    @property
    def export_dir(self) -> Path:
        return self.root / "export"

    def source_onnx(self, model: str) -> Path:
        if self.onnx_source is not None:
            return self.onnx_source / f"{model}.onnx"
        return self.export_dir / f"{model}.onnx"

    @property
    def export_info(self) -> Path:
        return self.export_dir / "export_info.json"

    @property
    def tokenizer(self) -> Path:
        return self.export_dir / "tokenizer.json"

    @property
    def tokenizer_config(self) -> Path:
        return self.export_dir / "tokenizer_config.json"

    @property
    def normalization(self) -> Path:
        return self.export_dir / "normalization.json"

    def export_side_files(self) -> list[Path]:
        # the token-embedding table is not one: preprocess takes it out of the LLM graph (layout.embed_table)
        return [self.normalization, self.tokenizer, self.tokenizer_config, self.export_info]

    # preprocess
    @property
    def preprocessed_dir(self) -> Path:
        return self.root / "preprocessed"

    def preprocessed(self, model: str) -> Path:
        return self.preprocessed_dir / f"{model}.onnx"

    def preprocess_report(self, model: str) -> Path:
        return self.preprocessed_dir / f"{model}.report.json"

    def io_sidecar(self, model: str) -> Path:
        return self.preprocessed_dir / f"{model}.io.json"

    def cpu_model(self, model: str) -> Path:
        """The CPU part cut out of a stage graph (sinusoids of small inputs: RoPE tables, timestep embedding)."""
        return self.preprocessed_dir / f"{model}.cpu.onnx"

    @property
    def embed_table(self) -> Path:
        return self.preprocessed_dir / "embed_tokens.npy"

    def stage_cpu_files(self, model: str) -> list[Path]:
        """What a stage's runner reads beside its graph: the sidecar and the parts moved to the CPU."""
        stage = STAGES[model]
        return ([self.io_sidecar(model)] + ([self.embed_table] if stage.embedding_on_cpu else [])
                + ([self.cpu_model(model)] if stage.sinusoids_on_cpu else []))

    # the reference runtime's CPU copies (fused onnxruntime ops where checked; else the preprocessed model)
    @property
    def reference_dir(self) -> Path:
        return self.root / "reference"

    def reference_model(self, model: str) -> Path:
        return self.reference_dir / f"{model}.onnx"

    def reference_info(self, model: str) -> Path:
        return self.reference_dir / f"{model}.json"

    # calibration sets (integer precisions), one per (suite, sample count)
    def calibration_dir(self, suite: str, samples: int) -> Path:
        return self.root / "calibration" / f"{suite}-n{samples}"

    def calibration_set(self, suite: str, samples: int, model: str) -> Path:
        return self.calibration_dir(suite, samples) / f"{model}.npz"

    def calibration_info(self, suite: str, samples: int) -> Path:
        return self.calibration_dir(suite, samples) / "calibration.json"

    # ort-qnn: the QDQ model an integer precision compiles (onnxruntime's QNN quantizer)
    def quantized(self, model: str, precision: str) -> Path:
        return self.root / "quantized" / precision / f"{model}.qdq.onnx"

    def quantized_info(self, model: str, precision: str) -> Path:
        return self.root / "quantized" / precision / f"{model}.qdq.json"

    # ort-qnn contexts
    def ort_qnn_dir(self, precision: str) -> Path:
        return self.root / "ort-qnn" / precision

    def ort_qnn_context(self, model: str, precision: str) -> Path:
        return self.ort_qnn_dir(precision) / f"{model}_ctx.onnx"

    def ort_qnn_context_bin(self, model: str, precision: str) -> Path:
        return self.ort_qnn_dir(precision) / f"{model}_ctx_qnn.bin"

    def ort_qnn_context_info(self, model: str, precision: str) -> Path:
        return self.ort_qnn_dir(precision) / f"{model}_ctx.json"

    # qairt contexts
    def qairt(self, model: str, precision: str) -> QairtPaths:
        return QairtPaths(self.root, model, precision)

    @property
    def tools_bin(self) -> Path:
        """Shims the qairt chain puts first on a tool's PATH (the lib generator's clang++)."""
        return self.root / ".tools" / "bin"

    def qnn_net_run_dir(self, model: str, precision: str) -> Path:
        """qnn-net-run's working folder: the staged HTP libraries, its configs and each call's files."""
        return self.root / ".qnn-net-run" / f"{model}-{precision}"

    # the built context of the layout's toolchain (validate, report, runtime)
    def context(self, model: str, precision: str) -> Path:
        """The EPContext ONNX model onnxruntime-qnn loads."""
        if self.toolchain == "qairt":
            return self.qairt(model, precision).ctx_onnx
        return self.ort_qnn_context(model, precision)

    def context_files(self, model: str, precision: str) -> list[Path]:
        """Everything a context's runner reads (a qairt context's names are mapped back to the
        preprocessed graph's, runtime/contexts.py)."""
        if self.toolchain == "qairt":
            q = self.qairt(model, precision)
            return [q.ctx_onnx, q.serialized, q.binary_info, q.net_json, self.preprocessed(model)]
        return [self.ort_qnn_context(model, precision), self.ort_qnn_context_bin(model, precision)]

    def context_info(self, model: str, precision: str) -> Path:
        """Size, build time and peak memory of a context build (the report reads it)."""
        if self.toolchain == "qairt":
            return self.qairt(model, precision).context_info
        return self.ort_qnn_context_info(model, precision)

    def runtime_files(self, runtime: str, precisions: Iterable) -> list[Path]:
        """The built files a policy reads on `runtime` (reference, ort-qnn, qnn-net-run, proxy) for
        the pipeline's `precisions` (smolvla_build.precisions.Precision): an episode's, an
        evaluation's or a calibration's dependencies."""
        precisions = list(precisions)
        files = [self.tokenizer, self.normalization]
        for m in MODELS:
            files += [self.reference_model(m), self.reference_info(m), self.io_sidecar(m)]
            if runtime in ("ort-qnn", "qnn-net-run"):
                files += [f for p in precisions for f in self.context_files(m, p.name)]
            if runtime == "proxy":
                files += [f for p in precisions for f in self.proxy_files(m, p)]
        return files + [self.embed_table] + [self.cpu_model(m) for m in MODELS if STAGES[m].sinusoids_on_cpu]

    def bundle_files(self, model: str, precision: str) -> dict:
        """What a device bundle of `model` at `precision` copies (source path -> name in the bundle)
        and reads for its manifest; strings, as the bundle task's spec holds them. A reference model
        over 2 GB brings its `.data` if it exists when the bundle is made (smolvla_build/packaging.py)."""
        q = self.qairt(model, precision)
        ctx = self.context(model, precision)
        binary = q.serialized if self.toolchain == "qairt" else self.ort_qnn_context_bin(model, precision)
        ref, sidecar = self.reference_model(model), self.io_sidecar(model)
        copies = {ctx: ctx.name, binary: binary.name, ref: ref.name}
        copies.update({f: f.name for f in self.stage_cpu_files(model)})
        return {"copies": {str(k): v for k, v in copies.items()}, "context": ctx.name, "reference": ref.name,
                "reference_path": str(ref),
                "sidecar": sidecar.name, "validation": str(self.validation(model, precision)),
                "arrays": str(self.validation_arrays(model, precision)),
                "preprocessed": str(self.preprocessed(model)),
                "qairt": {"binary_info": str(q.binary_info), "net_json": str(q.net_json)}
                if self.toolchain == "qairt" else None}

    # measure / validate / report
    def measurement(self, model: str, precision: str) -> Path:
        """What validation measured: the HTP context against the fp32 reference, no verdict."""
        return self.root / "validation" / f"{model}-{precision}.measured.json"

    def validation(self, model: str, precision: str) -> Path:
        """The measurement judged against the precision's gates: pass, fallback, warn or fail."""
        return self.root / "validation" / f"{model}-{precision}.json"

    def validation_arrays(self, model: str, precision: str) -> Path:
        """Validation's inputs (`in/<name>`) and its judged outputs (`reference`, `htp`)."""
        return self.root / "validation" / f"{model}-{precision}.npz"

    # CPU proxies of the HTP precisions (smolvla_build/proxies.py)
    def proxy_model_file(self, model: str, precision: str) -> Path:
        """The fp16-rounded graph (float precisions that compute in fp16 on the HTP)."""
        return self.root / "proxy" / precision / f"{model}.onnx"

    def proxy_fidelity(self, model: str, precision: str) -> Path:
        return self.root / "proxy" / precision / f"{model}.fidelity.json"

    def proxy_source(self, model: str, precision) -> Path:
        """The graph a proxy of `precision` (a Precision) is made from: an integer precision's QDQ
        model, else the HTP graph."""
        if precision.cpu_proxy == "qdq":
            return self.quantized(model, precision.name)
        return self.preprocessed(model)

    def proxy_runs(self, model: str, precision) -> Path:
        """The model the proxy runtime runs: the fp16-rounded graph, else the source itself."""
        if precision.cpu_proxy == "fp16-rounded":
            return self.proxy_model_file(model, precision.name)
        return self.proxy_source(model, precision)

    def proxy_files(self, model: str, precision) -> list[Path]:
        """Everything the proxy runtime reads for a model in a precision."""
        return [self.proxy_runs(model, precision), self.proxy_fidelity(model, precision.name)]

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_chart(self) -> Path:
        return self.root / "report_size_vs_error.png"

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"

    # episodes and evaluation
    @property
    def libero_config(self) -> Path:
        """LIBERO's config folder (smolvla_build.evaluate.libero_env.configure); an eval actor takes
        a subfolder of its own."""
        return self.root / "libero-config"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    def episode_dir(self, suite: str, task: int) -> Path:
        """What `doit infer:task<N>` writes."""
        return self.eval_dir / suite / f"task{task}"

    def episode_files(self, suite: str, task: int) -> list[Path]:
        return [self.episode_dir(suite, task) / n for n in EPISODE_FILES.values()]

    @property
    def eval_files(self) -> list[Path]:
        return [self.eval_dir / n for n in EVAL_FILES.values()]

    @property
    def divergence_dir(self) -> Path:
        return self.eval_dir / "divergence"

    @property
    def divergence_files(self) -> list[Path]:
        return [self.divergence_dir / n for n in DIVERGENCE_FILES.values()]

    # the device bundle
    def bundle_dir(self, label: str) -> Path:
        return self.root / "bundle" / label

    def bundle_zip(self, label: str) -> Path:
        return self.root / "bundle" / f"smolvla-{label}.zip"
