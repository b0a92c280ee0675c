"""Builds the example suite's model and image (deterministic; run again to reproduce them).

tiny_cnn: a small image classifier, NCHW float32 [1, 3, 64, 64] -> 10 class probabilities
(Conv-Relu x2, global average pool, Gemm, Softmax), with seeded random weights.
tiny_cnn_fp16: the same network in float16.
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image, ImageDraw

HERE = Path(__file__).parent


def tiny_cnn(dtype=np.float32) -> onnx.ModelProto:
    rng = np.random.default_rng(2026)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    weights = {
        "w1": rng.standard_normal((8, 3, 3, 3)) * 0.3, "b1": rng.standard_normal(8) * 0.1,
        "w2": rng.standard_normal((16, 8, 3, 3)) * 0.2, "b2": rng.standard_normal(16) * 0.1,
        "wf": rng.standard_normal((10, 16)) * 0.5, "bf": rng.standard_normal(10) * 0.1,
    }
    conv = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2], "dilations": [1, 1]}
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], name="conv1", **conv),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", **conv),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["features"], name="flatten"),
        helper.make_node("Gemm", ["features", "wf", "bf"], ["logits"], name="classifier", transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_cnn",
        [helper.make_tensor_value_info("image", elem, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("probabilities", elem, [1, 10]),
         helper.make_tensor_value_info("features", elem, [1, 16])],
        initializer=[numpy_helper.from_array(value.astype(dtype), name) for name, value in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def street_image() -> Image.Image:
    """A 96x80 drawing: sky, road, a red car and a tree."""
    image = Image.new("RGB", (96, 80), (135, 190, 235))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 50, 96, 80), fill=(70, 70, 75))
    draw.rectangle((10, 38, 46, 56), fill=(200, 30, 30))
    draw.ellipse((14, 52, 24, 62), fill=(20, 20, 20))
    draw.ellipse((32, 52, 42, 62), fill=(20, 20, 20))
    draw.rectangle((70, 25, 74, 50), fill=(100, 70, 40))
    draw.ellipse((60, 8, 84, 32), fill=(40, 140, 60))
    return image


if __name__ == "__main__":
    onnx.save(tiny_cnn(np.float32), HERE / "models" / "tiny_cnn.onnx")
    onnx.save(tiny_cnn(np.float16), HERE / "models" / "tiny_cnn_fp16.onnx")
    street_image().save(HERE / "data" / "street.png")
    print("wrote models/tiny_cnn.onnx, models/tiny_cnn_fp16.onnx, data/street.png")
