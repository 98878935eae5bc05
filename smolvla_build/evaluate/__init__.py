"""Evaluation of the built policy in the LIBERO simulator (headless, MuJoCo + EGL)."""
