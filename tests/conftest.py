"""Shared fixtures: the test models (built with onnx.helper, never downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_browserml.browser import provision
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


def pytest_collection_modifyitems(config, items):
    """Every test that starts a browser is slow: `-m "not slow"` is the quick subset. JSEP (webgpu:jsep, in the
    project's EPs) runs only the tests whose browser_ep marker names it: SwiftShader is slow."""
    on_jsep_unasked = [item for item in items if _ep(item) == "webgpu:jsep" and "webgpu:jsep" not in
                       item.get_closest_marker("browser_ep", pytest.mark.browser_ep()).args]
    if on_jsep_unasked:
        config.hook.pytest_deselected(items=on_jsep_unasked)
        items[:] = [item for item in items if item not in on_jsep_unasked]
    for item in items:
        if "browserml" in getattr(item, "fixturenames", ()) or "pytester" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def _ep(item) -> str | None:
    callspec = getattr(item, "callspec", None)
    ep = callspec.params.get("browserml") if callspec else None
    return getattr(ep, "id", None)
