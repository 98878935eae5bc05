"""Precisions: which one a model runs, and where it falls back. The one place for these rules; the
config loader, the report, the bundle and the runtime policy all ask here.

A precision is a pipeline.yaml entry under `precisions:` (a float one with `converter.float_bitwidth`,
an integer one with `quantization`). `evaluation.precision` asks for one per model; a model whose
build misses its gates falls back (`fallback_of`), and what it finally runs follows the validation
reports' chain of fallbacks (`effective_precisions`).
"""

from __future__ import annotations


def is_quantized(precision: dict) -> bool:
    return "quantization" in precision


def requested_precisions(value, models) -> dict[str, str]:
    """evaluation.precision (a name, or {model: name} with an optional `default`) per model."""
    if isinstance(value, str):
        return {m: value for m in models}
    return {m: value.get(m, value.get("default")) for m in models}


def precision_label(value) -> str:
    """A file-name-safe name for evaluation.precision (`w8a16`, or `fp16+w8a16` for a mapping)."""
    return value if isinstance(value, str) else "+".join(sorted(set(value.values())))


def fallback_of(precisions: dict[str, dict], name: str) -> str | None:
    """The precision a model falls back to when `name` misses its gates: for fp16 the first fp32
    precision listed; for an integer precision the next precision listed after it, else (listed
    last) the first float precision listed."""
    names = list(precisions)
    if is_quantized(precisions[name]):
        i = names.index(name)
        floats = [k for k in names if not is_quantized(precisions[k])]
        return names[i + 1] if i + 1 < len(names) else (floats[0] if floats else None)
    if precisions[name]["converter"]["float_bitwidth"] != 16:
        return None
    fp32 = [k for k in names if not is_quantized(precisions[k]) and precisions[k]["converter"]["float_bitwidth"] == 32]
    return fp32[0] if fp32 else None


def fallback_targets(precisions: dict[str, dict]) -> set[str]:
    """The precisions some other precision falls back to."""
    return {fallback_of(precisions, p) for p in precisions} - {None}


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
