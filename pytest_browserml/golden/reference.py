"""Native onnxruntime on the CPU, in process: where the default goldens come from.

No browser is involved, so a reference golden says what the model computes,
not what one EP happened to return; every EP is then held to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np


def outputs(model: Path, inputs: Mapping[str, np.ndarray], *, cache: bool = True) -> dict[str, np.ndarray]:
    """The model's outputs; cache=False for a model run once (its session is not kept)."""
    stat = model.stat()
    session = (_session if cache else _session.__wrapped__)(model, stat.st_mtime_ns, stat.st_size)
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(inputs))))


def describe() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__} CPUExecutionProvider"


@lru_cache(maxsize=16)
def _session(model: Path, _mtime_ns: int, _size: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
