"""CPU-only graph passes for the reference runtime's copy of each preprocessed model.

Where `passes` makes graphs HTP-clean (standard ops the converter and the HTP take), these do the
opposite for the CPU: they fuse standard-op patterns into onnxruntime's com.microsoft kernels.
Each is a pure function `onnx.ModelProto -> onnx.ModelProto`; `cpu_copy` applies them and proves
the fused model against the unfused one before the reference runtime may use it. A separate
package, so editing them rebuilds only the `reference` tasks, never the HTP chain. reference_task.py
is the `reference` task; this package's import loads nothing.
"""
