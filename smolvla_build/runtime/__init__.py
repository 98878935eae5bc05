"""The runtime on a build's artifacts: the runners, stage and policy of smolvla_runtime (the device
bundle's runtime, one implementation), plus what needs the build: the layout-aware context runners
(contexts.py), the qnn-net-run runner (needs the QAIRT SDK) and `Policy.from_artifacts`.
"""

from smolvla_runtime.runners import OrtQnnRunner, ReferenceRunner, Runner
from smolvla_runtime.stage import StageRunner

from .runners import QnnNetRunRunner

__all__ = ["OrtQnnRunner", "QnnNetRunRunner", "ReferenceRunner", "Runner", "StageRunner"]
# Policy (runtime.policy) is imported explicitly: it needs `tokenizers`.
