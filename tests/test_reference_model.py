"""assert_golden(result, reference="models/x.onnx") as users meet it: pytester runs on an example project."""

from __future__ import annotations

import json

import pytest

from pytest_browserml.browser import provision
from tests import modelzoo

TEST_FILE = """
import numpy as np
import pytest

X = {"x": np.linspace(-1, 1, 3 * 16 * 16, dtype=np.float32).reshape(1, 3, 16, 16)}

def test_same_model(browserml):
    browserml.assert_golden(browserml.run("models/conv.onnx", X, warmup=0, iterations=1), reference="models/conv.onnx")

def test_scaled_copy(browserml):
    result = browserml.run("models/conv_scaled.onnx", X, warmup=0, iterations=1)
    browserml.assert_golden(result, reference="models/conv.onnx")

def test_reference_and_per_ep(browserml):
    result = browserml.run("models/conv.onnx", X, warmup=0, iterations=1)
    browserml.assert_golden(result, reference="models/conv.onnx", per_ep=True)
"""


@pytest.fixture
def project(pytester):
    modelzoo.conv(pytester.path / "models" / "conv.onnx")
    modelzoo.conv(pytester.path / "models" / "conv_scaled.onnx", scale=1.01)
    pytester.makepyfile(test_model=TEST_FILE)
    return pytester


def test_a_model_is_held_to_another_models_native_outputs_with_nothing_stored(project):
    result = project.runpytest_subprocess("-p", "no:randomly", "--update-goldens")  # nothing to update
    result.assert_outcomes(passed=1, failed=2)
    text = result.stdout.str()
    assert ("1 of 1 outputs differ from the native onnxruntime outputs of models/conv.onnx on wasm" in text)
    assert "diagnosis: scaled by 1.01" in text
    assert "if this change is intended" not in text  # the reference is made anew on each run: nothing to update
    assert ("ValueError: assert_golden: pass reference= or per_ep=True, not both (reference= compares with "
            "another model's native outputs, per_ep=True with this EP's own earlier ones)") in text
    stored = [path for path in (project.path / "goldens").rglob("*.npz") if not path.name.endswith(".obtained.npz")]
    assert stored == []
    (sidecar,) = (project.path / "goldens").rglob("test_scaled_copy*.obtained.json")
    made_by = json.loads(sidecar.read_text())["made_by"]
    assert made_by["reference_model"] == {"path": "models/conv.onnx",
                                          "sha256": provision.file_sha256(project.path / "models" / "conv.onnx")}
