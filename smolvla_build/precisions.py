"""Precisions: which one a model runs, and where it falls back. The one place for these rules; the
config loader, the stages, the report, the bundle and the runtime on artifacts all ask here.

A precision is a pipeline.yaml entry under `precisions:` (a float one with `converter.float_bitwidth`,
an integer one with `quantization`), held as a `Precision`; the pipeline's are a `Precisions`, in the
order listed. `evaluation.precision` asks for one per model (`PrecisionRequest`); a model whose build
misses its gates falls back (`Precisions.fallback`), and what it finally runs follows the validation
reports' chain of fallbacks (`effective_precisions`).

Both are frozen dataclasses, so a task spec holds them as they are (the spec's serialization, its
up-to-date key, holds each precision's name and `settings`, the plain dict with every default filled
in; manifest.json records the settings).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping


@dataclasses.dataclass(frozen=True)
class Precision:
    name: str
    settings: dict          # converter, context and (integer precisions) quantization, defaults filled in

    @property
    def quantized(self) -> bool:
        return "quantization" in self.settings

    @property
    def float_bitwidth(self) -> int | None:
        """16 or 32 for a float precision, None for an integer one."""
        return None if self.quantized else self.settings["converter"]["float_bitwidth"]

    @property
    def quantization(self) -> dict | None:
        return self.settings.get("quantization")

    @property
    def computes_in(self) -> str:
        """What the HTP computes this precision in: an fp32 context with fp16_relaxed_precision computes
        in fp16, as an fp16 one does (docs/runtimes.md, "CPU proxies")."""
        if self.quantized:
            q = self.quantization
            return f"int{q['weights']} weights, int{q['activations']} activations"
        if self.float_bitwidth == 16:
            return "fp16"
        return "fp16 (fp32 graph, relaxed precision)" if self.settings["context"]["fp16_relaxed_precision"] else "fp32"

    @property
    def cpu_proxy(self) -> str:
        """What computes like this precision's HTP context on the CPU (docs/runtimes.md, "CPU
        proxies"): qdq (the QDQ model an integer precision compiles), fp16-rounded (fp16, and fp32
        with fp16_relaxed_precision, which the HTP computes in fp16 too) or fp32."""
        if self.quantized:
            return "qdq"
        if self.float_bitwidth == 16 or self.settings["context"]["fp16_relaxed_precision"]:
            return "fp16-rounded"
        return "fp32"

    @property
    def calibration_samples(self) -> int | None:
        """How many LIBERO samples per graph an integer precision is calibrated on."""
        return self.quantization["calibration"]["samples"] if self.quantized else None


@dataclasses.dataclass(frozen=True, eq=False)
class Precisions(Mapping):
    """The pipeline's precisions by name, in the order pipeline.yaml lists them (the order the
    fallback rules read)."""

    listed: tuple[Precision, ...]

    @classmethod
    def from_settings(cls, settings: Mapping[str, dict]) -> "Precisions":
        return cls(tuple(Precision(name, s) for name, s in settings.items()))

    def __getitem__(self, name: str) -> Precision:
        for p in self.listed:
            if p.name == name:
                return p
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (p.name for p in self.listed)

    def __len__(self) -> int:
        return len(self.listed)

    def settings(self) -> dict[str, dict]:
        """{name: settings}: what a manifest holds."""
        return {p.name: p.settings for p in self.listed}

    def quantized(self) -> list[str]:
        return [p.name for p in self.listed if p.quantized]

    def fallback(self, name: str) -> str | None:
        """The precision a model falls back to when `name` misses its gates: for fp16 the first fp32
        precision listed; for an integer precision the next precision listed after it, else (listed
        last) the first float precision listed; none for fp32."""
        names = list(self)
        if self[name].quantized:
            i = names.index(name)
            floats = [k for k in names if not self[k].quantized]
            return names[i + 1] if i + 1 < len(names) else (floats[0] if floats else None)
        if self[name].float_bitwidth != 16:
            return None
        fp32 = [k for k in names if self[k].float_bitwidth == 32]
        return fp32[0] if fp32 else None

    def fallback_targets(self) -> set[str]:
        """The precisions some other precision falls back to."""
        return {self.fallback(p) for p in self} - {None}


@dataclasses.dataclass(frozen=True)
class PrecisionRequest:
    """What evaluation.precision (or bundle.precision) asks for: one precision name for every model,
    or {model: name} with an optional `default`."""

    value: str | dict

    def per_model(self, models) -> dict[str, str | None]:
        if isinstance(self.value, str):
            return {m: self.value for m in models}
        return {m: self.value.get(m, self.value.get("default")) for m in models}

    @property
    def label(self) -> str:
        """A file-name-safe name (`w8a16`, or `fp16+w8a16` for a mapping)."""
        return self.value if isinstance(self.value, str) else "+".join(sorted(set(self.value.values())))


def effective_precisions(validations: dict, wanted) -> dict:
    """Per model: the precision the runtime uses for what evaluation.precision asks (`wanted`: a name
    or {model: name}), following fallbacks (w8a16 -> fp16 -> fp32 when each misses its gates)."""
    out = {}
    for model, per_precision in validations.items():
        asked = wanted if isinstance(wanted, str) else wanted[model]
        p, why, seen = asked, [], set()
        while per_precision.get(p, {}).get("status") == "fallback" and p not in seen:
            seen.add(p)
            why += [f"{p}: {r}" for r in per_precision[p]["reasons"]]
            p = per_precision[p]["fallback_to"]
        out[model] = {"precision": p, "requested": asked}
        if p != asked:
            out[model].update(fell_back_from=asked, why=why)
    return out
