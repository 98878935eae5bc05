"""Where every artifact of a pipeline lives (one place, so tasks and runtimes agree)."""

from __future__ import annotations

from pathlib import Path


class Layout:
    def __init__(self, pipe):
        self.pipe = pipe
        self.root = pipe.artifacts

    # export
    @property
    def export_dir(self) -> Path:
        return self.root / "export"

    def source_onnx(self, model: str) -> Path:
        src = self.pipe.source
        if src["weights"] == "onnx":
            return self.pipe.resolve(src["path"]) / f"{model}.onnx"
        return self.export_dir / f"{model}.onnx"

    def export_side_files(self) -> list[Path]:
        return [self.export_dir / n for n in ("embed_tokens.npy", "normalization.json", "tokenizer.json",
                                             "export_info.json")]

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

    @property
    def embed_table_fp16(self) -> Path:
        return self.preprocessed_dir / "embed_tokens.fp16.npy"

    # context (ort-qnn)
    def context_dir(self, precision: str) -> Path:
        return self.root / "ort-qnn" / precision

    def context(self, model: str, precision: str) -> Path:
        return self.context_dir(precision) / f"{model}_ctx.onnx"

    def context_bin(self, model: str, precision: str) -> Path:
        return self.context_dir(precision) / f"{model}_ctx_qnn.bin"

    def context_info(self, model: str, precision: str) -> Path:
        return self.context_dir(precision) / f"{model}_ctx.json"

    # validate / report
    def validation(self, model: str, precision: str) -> Path:
        return self.root / "validation" / f"{model}-{precision}.json"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"
