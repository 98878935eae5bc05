"""smolvla-build: SmolVLA -> Qualcomm Hexagon NPU (HTP), as a doit task graph.

Layout (one job per subpackage):
  config/      pipeline.yaml schema, loading and validation
  export/      PyTorch SmolVLA from a LeRobot checkpoint -> three stage ONNX models
  passes/      ONNX graph passes that make the stage models HTP-clean, and the checker
  toolchains/  ort-qnn (onnxruntime-qnn HTP backend) and the fingerprint of each tool
  runtime/     runners: reference (onnxruntime CPU) and ort-qnn (HTP context binaries)
  stages/      doit task generators, one module per task family
"""

__version__ = "0.1.0"

from smolvla_runtime import MODELS  # noqa: E402,F401 - the stages, declared once beside the runtime
# the parts of a stage that run on the CPU beside its HTP graph (preprocess moves them there):
EMBEDDING_ON_CPU = {"llm_backbone"}                   # the token-embedding lookup
SINUSOID_ON_CPU = {"llm_backbone", "action_head"}     # RoPE tables (both), the timestep embedding (action head)
