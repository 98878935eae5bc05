"""smolvla_runtime: run a built SmolVLA policy (a device bundle made by `doit bundle`, or a build's
artifacts through smolvla_build) with numpy, onnxruntime(-qnn) and tokenizers only: no torch,
transformers, doit, onnx or LIBERO.

    from smolvla_runtime.policy import Policy
    policy = Policy.load("bundle/fp16")          # hashes, versions and SoC checked first
    action = policy.select_action([image, wrist_image], state, "open the drawer")

`python -m smolvla_runtime BUNDLE_DIR` runs one synthetic observation and prints the chunk and timings.
What a SmolVLA is (its presets, stages, rollout) is written once, in smolvla_runtime.model.
"""

# No package-level re-exports: importing the package imports nothing else, so a build task's key,
# which follows imports (docs/incremental.md), covers only the runtime modules it runs.
__version__ = "0.1.0"
