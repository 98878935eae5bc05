"""Load pipeline.yaml, validate it against the schema and fill in defaults.

Every problem becomes one `ConfigError` whose text names the file, the field path and what was
expected, so the doit front end can print one line instead of a traceback.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from smolvla_runtime.htp import HtpPerformance, Soc
from smolvla_runtime.model import Preset, get_preset

from ..evaluate.scale import Episodes
from ..layout import Layout
from ..precisions import PrecisionRequest, Precisions
from ..runtime.artifacts import PolicySource
from .schema import (DEFAULTS, PIPELINE_SCHEMA, PRECISION_DEFAULTS, QUANTIZATION_COMBINATIONS, QUANTIZATION_DEFAULTS,
                     QUANTIZED_GATES)


class ConfigError(Exception):
    """A pipeline file that cannot be used; str() is the one-line message for the user."""


def _field(path) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else str(p) for p in path]
    return ".".join(parts).replace(".[", "[") or "(top level)"


def _describe(error: jsonschema.ValidationError) -> tuple[list, str]:
    """Turn a jsonschema error into (field path, 'expected ...' text)."""
    path = list(error.absolute_path)
    got = error.instance
    v = error.validator
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(got) - set(allowed)) if isinstance(got, dict) else []
        key = extra[0] if extra else "?"
        return path + [key], f"unknown key {key!r}; expected one of {allowed}"
    if v == "propertyNames" or (v == "pattern" and "propertyNames" in error.absolute_schema_path):
        return path, f"{error.instance!r} is not a valid identifier (letters, digits, _; not starting with a digit)"
    if v == "type":
        want = error.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return path, f"expected {want}, got {type(got).__name__} {got!r}"
    if v == "enum":
        return path, f"expected one of {error.validator_value}, got {got!r}"
    if v == "required":
        return path, error.message.replace("is a required property", "is required")
    if v == "pattern":
        return path, f"{got!r} does not match the expected form {error.validator_value}"
    return path, f"{error.message}"


def _merge(defaults: dict, given: dict) -> dict:
    out = copy.deepcopy(defaults)
    for k, v in given.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """The validated pipeline: its sections as plain dicts with every default filled in; what the
    tasks receive typed (the precisions, the SoC, the preset, the layout, a policy's source)."""

    path: Path
    data: dict[str, Any]

    @property
    def root(self) -> Path:
        """Folder that relative paths in the file are resolved against."""
        return self.path.parent

    @property
    def artifacts(self) -> Path:
        return (self.root / self.data["artifacts"]).resolve()

    @property
    def source(self) -> dict:
        return self.data["source"]

    @property
    def models(self) -> list[str]:
        return list(self.data["models"])

    @functools.cached_property
    def precisions(self) -> Precisions:
        return Precisions.from_settings(self.data["precisions"])

    @property
    def soc(self) -> Soc:
        return Soc.from_dict(self.data["soc"])

    @property
    def htp_performance(self) -> HtpPerformance:
        """How the onnxruntime-qnn sessions run the contexts (evaluation.ort_qnn)."""
        o = self.section("evaluation")["ort_qnn"]
        return HtpPerformance(mode=o["htp_performance_mode"], rpc_control_latency_us=o["rpc_control_latency"],
                              context_priority=o["qnn_context_priority"])

    @property
    def preset(self) -> Preset:
        return get_preset(self.source["preset"])

    @property
    def toolchain(self) -> dict:
        return self.data["toolchain"]

    def section(self, name: str) -> dict:
        return self.data[name]

    def requested_precisions(self) -> dict[str, str]:
        """Per model, the precision evaluation.precision asks for (a name, or a per-model mapping
        with an optional `default`)."""
        return PrecisionRequest(self.section("evaluation")["precision"]).per_model(self.models)

    def gates(self, precision: str) -> dict:
        """cosine_min / max_abs / max_relative of a precision: validation.gates.<precision>, else
        QUANTIZED_GATES for an integer precision, else validation's own."""
        v = self.section("validation")
        base = dict(QUANTIZED_GATES) if self.precisions[precision].quantized else \
            {"cosine_min": v["cosine_min"], "max_abs": v["max_abs"], "max_relative": v["max_relative"]}
        return {**base, **v["gates"].get(precision, {})}

    def calibration_suite(self) -> str:
        return self.section("calibration")["suite"] or self.section("evaluation")["suite"]

    def resolve(self, p: str) -> Path:
        return (self.root / p).resolve()

    def layout(self, toolchain: str | None = None) -> Layout:
        """Where this pipeline's artifacts live, for `toolchain` (default: toolchain.kind, `auto`
        resolved on this host)."""
        if toolchain is None:
            from ..toolchains import select_toolchain
            toolchain = select_toolchain(self)
        src = self.source
        return Layout(self.artifacts, toolchain, self.resolve(src["path"]) if src["weights"] == "onnx" else None)

    def policy_source(self, layout: Layout, runtime: str | None = None, precision: str | None = None,
                      n_action_steps: int | None = None, seed: int | None = None, threads: int = 0,
                      sdk=None) -> PolicySource:
        """What a policy of this pipeline reads from `layout`: on `runtime` (default evaluation.runtime),
        `precision` for every model (default: evaluation.precision's), evaluation's n_action_steps
        and seed unless given; `threads`: onnxruntime's on the CPU (0: one per core); `sdk`: the QAIRT
        SDK, for runtime qnn-net-run."""
        ev = self.section("evaluation")
        runtime = runtime or ev["runtime"]
        wanted = PrecisionRequest(precision).per_model(self.models) if precision else self.requested_precisions()
        return PolicySource(layout=layout, runtime=runtime, preset=self.source["preset"],
                            soc=self.soc, precisions=self.precisions, wanted=wanted,
                            n_action_steps=ev["n_action_steps"] if n_action_steps is None else n_action_steps,
                            seed=ev["seed"] if seed is None else seed, threads=threads,
                            proxy_max_ratio=ev["proxy_max_ratio"], htp_performance=self.htp_performance,
                            qnn_net_run=ev["qnn_net_run"], sdk=sdk).on(runtime)

    def episodes(self) -> Episodes:
        """The episodes `doit eval` runs (evaluation: suites x tasks x trials)."""
        ev = self.section("evaluation")
        return Episodes(suites=tuple(ev["suites"] or [ev["suite"]]),
                        tasks=None if ev["tasks"] == "all" else tuple(ev["tasks"]),
                        trials=tuple(range(ev["trials"]) if isinstance(ev["trials"], int) else ev["trials"]),
                        max_steps=ev["max_steps"], seed=ev["seed"], videos=ev["videos"], workers=ev["workers"],
                        ray_address=(ev.get("ray") or {}).get("address"), progress_every_s=ev["progress_every_s"])


def load_pipeline(path: str | Path) -> Pipeline:
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise ConfigError(f"{name}: file not found (expected a pipeline YAML file; select one with `doit pipeline=FILE`)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{name}:{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: (top level): expected a mapping of settings, got {type(raw).__name__}")

    validator = jsonschema.Draft202012Validator(PIPELINE_SCHEMA)
    errors = sorted(validator.iter_errors(raw), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    if errors:
        fld, what = _describe(jsonschema.exceptions.best_match(errors) if len(errors) > 1 else errors[0])
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(f"{name}: {_field(fld)}: {what}{more}")

    data = _merge(DEFAULTS, raw)
    data["precisions"] = {k: _precision_with_defaults(name, k, v) for k, v in raw["precisions"].items()}
    pipe = Pipeline(path=path.resolve(), data=data)
    _check_semantics(name, pipe)
    return pipe


def _precision_with_defaults(name: str, key: str, given: dict) -> dict:
    """A precision is float (converter.float_bitwidth) or integer (quantization), never both."""
    floating = "float_bitwidth" in (given.get("converter") or {})
    if floating == ("quantization" in given):
        why = "both given" if floating else "neither given"
        raise ConfigError(f"{name}: precisions.{key}: {why}; expected either converter.float_bitwidth (16 | 32, a float "
                          "precision) or quantization: {weights: 8|16, activations: 8|16} (an integer one)")
    out = _merge(PRECISION_DEFAULTS, given)
    if not floating:
        q = out["quantization"] = _merge(QUANTIZATION_DEFAULTS, given["quantization"])
        if (q["weights"], q["activations"]) not in QUANTIZATION_COMBINATIONS:
            allowed = ", ".join(f"W{w}A{a}" for w, a in sorted(QUANTIZATION_COMBINATIONS))
            raise ConfigError(f"{name}: precisions.{key}.quantization: weights {q['weights']} with activations "
                              f"{q['activations']} is not a combination the HTP runs; expected one of {allowed}")
    return out


def _check_semantics(name: str, pipe: Pipeline) -> None:
    """Rules a schema cannot say: files that must exist, fields that go together."""
    src = pipe.source
    need = {"checkpoint": "path", "onnx": "path", "hub": "repo_id"}.get(src["weights"])
    if need and need not in src:
        raise ConfigError(f"{name}: source.{need}: required when source.weights is {src['weights']!r}")
    if src["weights"] in ("checkpoint", "onnx"):
        p = pipe.resolve(src["path"])
        if not p.exists():
            raise ConfigError(f"{name}: source.path: {p} does not exist (expected a "
                              f"{'LeRobot checkpoint folder' if src['weights'] == 'checkpoint' else 'folder of the three stage ONNX models'})")
    if src.get("tokenizer") and not pipe.resolve(src["tokenizer"]).exists():
        raise ConfigError(f"{name}: source.tokenizer: {pipe.resolve(src['tokenizer'])} does not exist (expected a folder "
                          "holding tokenizer.json, or the file)")
    ev = pipe.section("evaluation")
    # (field, value) of every setting that names a precision
    bundled = (pipe.data.get("bundle") or {}).get("precision")
    named = [("bundle.precision", bundled)] if bundled is not None else []
    named += [("evaluation.precision", ev["precision"])] if isinstance(ev["precision"], str) else \
        [(f"evaluation.precision.{key}", p) for key, p in ev["precision"].items()]
    named += [("evaluation.divergence", p) for p in ev["divergence"]]
    named += [(f"validation.gates.{p}", p) for p in pipe.section("validation")["gates"]]
    for field, p in named:
        if p not in pipe.precisions:
            raise ConfigError(f"{name}: {field}: {p!r} is not one of the declared precisions {sorted(pipe.precisions)}")
    missing = [m for m, p in pipe.requested_precisions().items() if p is None]
    if missing:
        raise ConfigError(f"{name}: evaluation.precision: no precision for {', '.join(missing)}; expected a key per model "
                          "or a `default`")
    root = pipe.toolchain.get("sdk_root")
    if root is not None and not pipe.resolve(root).is_dir():
        raise ConfigError(f"{name}: toolchain.sdk_root: {pipe.resolve(root)} is not a directory (expected the QAIRT SDK root)")
