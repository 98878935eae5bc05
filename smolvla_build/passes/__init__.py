"""ONNX graph passes that make torch-exported transformer graphs HTP-clean.

Each pass is a pure function `onnx.ModelProto -> onnx.ModelProto` (the input is not modified),
idempotent, and works on models with external data loaded. `preprocess` runs them in order and
`check_htp_clean` asserts the result.
"""

from .activations import silu_through_tanh, tanh_gelu_half_first
from .bool_logic import eliminate_bool_logic
from .checker import check_htp_clean, census
from .cumsum import cumsum_to_matmul
from .embedding import EMBED_OUTPUT, embedding_on_cpu, embedding_table
from .fold import fold_constant_subgraphs
from .gemm import gemm_to_matmul
from .masks import bound_mask_constants
from .pipeline import PreprocessError, preprocess
from .rmsnorm import rmsnorm_over_max
from .sinusoid import sinusoid_cpu_model, sinusoid_on_cpu

__all__ = ["eliminate_bool_logic", "check_htp_clean", "census", "cumsum_to_matmul", "EMBED_OUTPUT",
           "embedding_on_cpu", "embedding_table", "fold_constant_subgraphs", "bound_mask_constants", "gemm_to_matmul",
           "preprocess", "PreprocessError", "rmsnorm_over_max", "silu_through_tanh", "sinusoid_on_cpu", "sinusoid_cpu_model",
           "tanh_gelu_half_first"]
