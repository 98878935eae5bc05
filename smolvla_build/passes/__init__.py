"""ONNX graph passes that make torch-exported transformer graphs HTP-clean.

Each pass is a pure function `onnx.ModelProto -> onnx.ModelProto` (the input is not modified),
idempotent, and works on models with external data loaded. `preprocess` runs them in order and
`check_htp_clean` (checker.py) asserts the result. preprocess_task.py is the `preprocess` task.
Import each from its own module: this package's import loads nothing.
"""
