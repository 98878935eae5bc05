"""The runtime on a build's artifacts: smolvla_runtime's policy, stages and runners (one
implementation, the device bundle's), fed from an artifacts folder instead of a bundle.

  artifacts.py    PolicySource (what a policy reads from a build, as a frozen value) and load_policy
  contexts.py     the runner of a built HTP context of either toolchain (a qairt context's tensor names)
  qnn_net_run.py  the SDK's qnn-net-run as a runner (needs the QAIRT SDK; not in the device bundle)
"""
