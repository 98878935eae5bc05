"""Numeric comparison of a candidate output against the fp32 reference, and the gates a stage must
pass: one place for the metrics and the rules that serve the build's validation (its verdict), the
proxies, the report, a device's `python -m smolvla_runtime check` and the tests. numpy only."""

from __future__ import annotations

import numpy as np

FP16_MAX = 65504.0
CLAMP_LIMITS = (512.0, FP16_MAX)  # the card saw outputs clamped at +-512 on some configurations


def cosine(ref: np.ndarray, got: np.ndarray) -> float:
    a = ref.astype(np.float64).ravel()
    b = got.astype(np.float64).ravel()
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("nan")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(a @ b / (na * nb))


def psnr(ref: np.ndarray, got: np.ndarray) -> float:
    ref = ref.astype(np.float64)
    mse = float(np.mean((ref - got.astype(np.float64)) ** 2))
    peak = float(np.abs(ref).max(initial=0.0))
    if mse == 0:
        return float("inf")
    if peak == 0:
        return float("-inf")
    return float(10 * np.log10(peak**2 / mse))


def saturation(ref: np.ndarray, got: np.ndarray) -> dict:
    """Values of `got` stuck at an fp16 clamp limit where the reference is beyond it, plus inf/NaN."""
    g = np.abs(got.astype(np.float64))
    r = np.abs(ref.astype(np.float64))
    out = {f"clamped_at_{int(lim)}": int(np.sum((np.abs(g - lim) <= lim * 1e-3) & (r > lim * 1.001)))
           for lim in CLAMP_LIMITS}
    out["inf"] = int(np.sum(np.isinf(got)))
    out["nan"] = int(np.sum(np.isnan(got)))
    out["beyond_fp16_in_reference"] = int(np.sum(r > FP16_MAX))
    return out


def compare(ref: np.ndarray, got: np.ndarray) -> dict:
    ref = np.asarray(ref)
    got = np.asarray(got)
    diff = np.abs(ref.astype(np.float64) - got.astype(np.float64))
    finite = np.isfinite(diff)
    max_abs = float(diff[finite].max(initial=0.0)) if finite.all() else float("inf")
    scale = float(np.abs(ref).max(initial=0.0)) or 1e-12
    return {"cosine": cosine(ref, got), "max_abs": max_abs, "max_rel": max_abs / scale,
            "psnr_db": psnr(ref, got), "saturation": saturation(ref, got), "ref_max_abs": scale}


def saturated(metrics: dict) -> bool:
    """An output stuck at an fp16 clamp limit, inf or NaN, or a reference beyond fp16."""
    s = metrics["saturation"]
    return any(s[k] for k in s if k != "beyond_fp16_in_reference") or s["beyond_fp16_in_reference"] > 0


def judge(metrics: dict, flagged: list, model: str, gates: dict) -> list[str]:
    """Reasons a stage's output is not acceptable against the fp32 reference (empty = pass): the
    gates (cosine_min; max_abs on a rolled-out stage's final chunk; max_relative), fp16 saturation,
    and `flagged`, the reference's intermediates beyond fp16."""
    from .model import STAGES
    reasons = []
    if not metrics["cosine"] >= gates["cosine_min"]:
        reasons.append(f"cosine {metrics['cosine']:.6f} < {gates['cosine_min']}")
    if STAGES[model].rolled_out and not metrics["max_abs"] < gates["max_abs"]:
        reasons.append(f"max abs {metrics['max_abs']:.3g} >= {gates['max_abs']} on the final action chunk")
    if gates.get("max_relative") is not None and not metrics["max_rel"] <= gates["max_relative"]:
        reasons.append(f"max abs / max |reference| {metrics['max_rel']:.3g} > {gates['max_relative']}")
    if saturated(metrics):
        reasons.append(f"fp16 saturation in the output: {metrics['saturation']}")
    if flagged:
        reasons.append(f"{len(flagged)} reference activation(s) beyond the fp16 range, e.g. "
                       f"{flagged[0]['tensor']} reaches {flagged[0]['max_abs']:.4g}")
    return reasons
