"""Pictures of the HTML report for outputs of every shape (pure: arrays in, HTML out)."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_browserml.report.html import output_pictures


def pair(shape, seed=0):
    expected = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    obtained = expected.copy()
    obtained.reshape(-1)[3] += 0.5
    return expected, obtained


@pytest.mark.parametrize("shape", [(1, 16, 384), (16, 384), (1, 3, 32, 32), (2, 3, 4, 5, 6)],
                         ids=["sequence-x-hidden", "2-D", "NCHW", "5-D"])
def test_every_output_of_two_or_more_dims_gets_expected_obtained_and_difference_pictures(shape):
    html = "".join(output_pictures("y", *pair(shape)))
    assert html.count("<img class='picture'") == 3
    for label in ("expected", "obtained", "|difference|"):
        assert f"<figcaption>{label}</figcaption>" in html


@pytest.mark.parametrize("shape", [(384,), (1, 384), (1, 1, 6625)], ids=["1-D", "row", "batch-of-one-vector"])
def test_vectors_get_a_line_plot_of_expected_obtained_and_difference(shape):
    html = "".join(output_pictures("y", *pair(shape)))
    assert "<svg class='line-plot'" in html and html.count("<polyline") == 3
    assert ">values<" in html and ">obtained - expected<" in html
    assert "<img" not in html


def test_the_histogram_has_axes_with_their_ranges():
    html = "".join(output_pictures("y", *pair((16, 384))))
    histogram = html[html.index("<svg class='histogram'"):html.index("</svg>")]
    assert histogram.count("class='axis'") == 2
    assert ">elements (log scale) per |obtained - expected|<" in histogram
    assert ">0.5<" in histogram  # the largest error ends the x axis


def test_a_scalar_has_no_pictures():
    assert output_pictures("y", np.float32(1.0).reshape(()), np.float32(2.0).reshape(())) == []
