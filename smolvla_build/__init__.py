"""smolvla-build: SmolVLA -> Qualcomm Hexagon NPU (HTP), as a doit task graph.

Layout (one job per subpackage):
  config/      pipeline.yaml schema, loading and validation
  export/      PyTorch SmolVLA from a LeRobot checkpoint -> three stage ONNX models
  passes/      ONNX graph passes that make the stage models HTP-clean, and the checker
  toolchains/  ort-qnn (onnxruntime-qnn HTP backend) and the fingerprint of each tool
  runtime/     runners: reference (onnxruntime CPU) and ort-qnn (HTP context binaries)
  stages/      doit task generators, one module per task family
  declaration.py the three stages: names, I/O shapes, what runs on the CPU
"""

__version__ = "0.1.0"

from smolvla_runtime import MODELS  # noqa: E402,F401 - the stages in call order, beside the runtime (declaration.py: the rest)
