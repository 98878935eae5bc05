"""Benchmarks of smolvla-build (full-size preset, random weights). Entry point: `python -m bench`."""
