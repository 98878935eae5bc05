"""Cast feeds to the dtypes a runner's graph declares (bool masks became int32 in preprocess)."""

from __future__ import annotations

import numpy as np

ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
              "tensor(int32)": np.int32, "tensor(bool)": np.bool_, "tensor(double)": np.float64}


def cast_feeds(runner, feeds: dict) -> dict:
    sess = runner.activate().session
    out = {}
    for i in sess.get_inputs():
        if i.name not in feeds:
            raise KeyError(f"no value for graph input {i.name!r} (have {sorted(feeds)})")
        out[i.name] = np.asarray(feeds[i.name]).astype(ORT_DTYPES.get(i.type, np.float32))
    return out
