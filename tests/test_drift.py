"""The drift demo: weights scaled by 1.01 fail against the goldens of the original, on every EP.

The goldens in goldens/test_drift/ are committed: they are the reference outputs (native
onnxruntime on the CPU) of modelzoo.conv with the fixed input below.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pytest_browserml.golden.check import GoldenMismatch
from tests import modelzoo

IMAGE = np.random.default_rng(3).standard_normal((1, 3, 16, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def conv_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("drift")
    return modelzoo.conv(folder / "conv.onnx"), modelzoo.conv(folder / "conv_scaled.onnx", scale=1.01)


def test_the_original_model_passes(browserml, conv_models):
    original, _ = conv_models
    browserml.assert_golden(browserml.run(original, {"x": IMAGE}, warmup=0, iterations=1), name="conv")


def test_weights_scaled_by_1_01_fail(browserml, conv_models):
    _, scaled = conv_models
    result = browserml.run(scaled, {"x": IMAGE}, warmup=0, iterations=1)
    with pytest.raises(GoldenMismatch) as mismatch:
        browserml.assert_golden(result, name="conv")
    text = str(mismatch.value)
    assert f"differ from the golden goldens/test_drift/conv.npz on {browserml.ep}" in text
    assert "diagnosis: scaled by 1.01" in text
    assert "note: the golden was made from a different model file" in text
    assert "which this model may not overwrite. Give this test its own golden (another name=)" in text
    folder = Path(__file__).resolve().parents[1] / "goldens" / "test_drift"
    tag = browserml.ep.replace(":", "_")
    obtained = [folder / f"conv[{tag}].obtained.npz", folder / f"conv[{tag}].obtained.json"]
    assert all(path.is_file() for path in obtained)  # for review; this demo cleans up after itself
    for path in obtained:
        path.unlink()
