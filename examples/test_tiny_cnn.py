"""The bundled example suite: a small image classifier on every EP, held to its goldens.

Run it as `pytest examples --browser-ep wasm --browser-ep webgpu --browser-ep webnn`;
approve new outputs with `--update-goldens` and review the .json diff before committing.
"""

import numpy as np
import pytest

from pytest_browserml import ModelRunError

# ImageNet's normalisation, as most image models expect it.
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def street(browserml, dtype="float32"):
    return browserml.image_input("data/street.png", size=(64, 64), mean=MEAN, std=STD, dtype=dtype)


@pytest.mark.tolerance(outputs={"probabilities": {"rtol": 1e-3, "topk": 3}})
@pytest.mark.budget(first_run="30 s", webgpu={"first_run": "60 s"})
def test_classifier(browserml):
    """Every EP gives the outputs of native onnxruntime on the CPU, and the same top-3 classes."""
    result = browserml.run("models/tiny_cnn.onnx", {"image": street(browserml)}, warmup=1, iterations=5)
    browserml.assert_golden(result)
    assert result.placement.fallback_count == 0


def test_classifier_stays_the_same_on_this_device(browserml):
    """A per-EP golden: any change on one device (browser, driver or ORT-web upgrade) shows up."""
    result = browserml.run("models/tiny_cnn.onnx", {"image": street(browserml)}, warmup=0, iterations=1)
    browserml.assert_golden(result, per_ep=True)


def test_classifier_float16(browserml):
    """float16 runs on wasm, webnn and a GPU's WebGPU within the built-in float16 tolerances (calibrated on a
    real GPU, see README); on a WebGPU adapter without shader-f16 it must fail loudly."""
    image = street(browserml, dtype="float16")
    adapter = browserml.adapter
    if adapter and not adapter.shader_f16:
        with pytest.raises(ModelRunError, match="f16"):
            browserml.run("models/tiny_cnn_fp16.onnx", {"image": image}, warmup=0, iterations=1)
        pytest.xfail(f"float16 cannot run on this WebGPU adapter ({adapter.describe()})")
    result = browserml.run("models/tiny_cnn_fp16.onnx", {"image": image}, warmup=0, iterations=1)
    browserml.assert_golden(result)
    assert result.outputs["probabilities"].dtype == np.float16
