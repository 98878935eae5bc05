"""PyTorch SmolVLA (LeRobot key names) -> the three stage ONNX models. Needs the `export` extra."""
