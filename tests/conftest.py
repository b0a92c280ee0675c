"""Shared fixtures: the test models (built with onnx.helper, never downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_browserml import provision
from tests import modelzoo

pytest_plugins = ["pytester"]

# pytester gives each run a new HOME: keep every run on the one cache of downloads.
os.environ.setdefault("BROWSERML_CACHE", str(provision.cache_dir()))


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    from onnx import TensorProto

    return {
        "add": modelzoo.add(folder / "add.onnx"),
        "conv": modelzoo.conv(folder / "conv.onnx"),
        "conv_no_dilations": modelzoo.conv(folder / "conv_no_dilations.onnx", dilations=False, relu=False),
        "matmul": modelzoo.matmul(folder / "matmul.onnx"),
        "matmul_fp16": modelzoo.matmul(folder / "matmul_fp16.onnx", TensorProto.FLOAT16),
        "embedding": modelzoo.embedding(folder / "embedding.onnx"),
        "multi_output": modelzoo.multi_output(folder / "multi_output.onnx"),
        "det": modelzoo.with_unsupported_webgpu_op(folder / "det.onnx"),
        "external": modelzoo.external_data(folder / "external" / "external.onnx"),
    }


def pytest_collection_modifyitems(items):
    """Every test that starts a browser is slow: `-m "not slow"` is the quick subset."""
    for item in items:
        if "browserml" in getattr(item, "fixturenames", ()) or "pytester" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
