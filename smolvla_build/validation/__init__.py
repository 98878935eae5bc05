"""Validation of an HTP build against the fp32 reference, in two tasks per model x precision:

  measure.py   `measure`: the HTP context and the fp32 reference on the same seeded inputs (HTP
               emulation on x86: the slow part), and the reference's intermediate ranges. What it
               measures depends on the stage, the precision's own settings and the SoC, never on the
               gates or on which other precisions exist.
  verdict.py   `validate`: the measurement against the precision's gates, and the decision (pass,
               fallback, warn, fail) under validation.on_saturation: a cheap step that reruns alone
               when a gate, the policy or the fallback order changes.
"""
