"""smolvla-build: SmolVLA -> Qualcomm Hexagon NPU (HTP), as a doit task graph.

The layers, top to bottom (docs/architecture.md; pyproject.toml's import-linter contracts keep them
one-way): the front ends (stages/, cli.py), the pipeline file (config/), LIBERO evaluation
(evaluate/), the checks and products over a build (validation, proxies, the report, the bundle), the
runtime on a build's artifacts (runtime/), the tools (toolchains/, cpu_passes/, export/), the graph
passes (passes/), the foundations (layout, precisions, model files, ...), and under everything the
runtime package with the torch-free model core (smolvla_runtime.model).
"""

__version__ = "0.1.0"
