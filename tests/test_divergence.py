"""The divergence finder on plain arrays and hand-made graphs: no browser, no model files."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_browserml.golden.compare import Tolerance
from pytest_browserml.golden.divergence import (
    DRIFT,
    NAN_INF,
    NOT_COMPARED,
    OUT,
    OVERFLOW,
    WITHIN,
    WRONG,
    ZEROS,
    GraphNode,
    find_divergences,
)

TOLERANCE = Tolerance(atol=1e-4, rtol=1e-4)


def chain(*names: str, op: str = "Add") -> list[GraphNode]:
    """x -> names[0] -> names[1] -> ...: node i reads the previous value and writes names[i]."""
    values = ("x", *names)
    return [GraphNode(i, f"n_{name}", op, (values[i], "w"), (name,)) for i, name in enumerate(names)]


def localise(nodes, obtained, expected, tolerance=TOLERANCE):
    return find_divergences(nodes, obtained, expected, lambda name, dtype: tolerance, method="test")


def values(**arrays):
    return {name: np.asarray(array) for name, array in arrays.items()}


def test_the_node_where_values_leave_tolerance_is_named_not_the_ones_after_it():
    base = np.linspace(1, 2, 8, dtype=np.float32)
    expected = values(a=base, b=base * 2, c=base * 3, d=base * 4)
    obtained = values(a=base, b=base * 2, c=base * 3 + 0.5, d=base * 4 + 0.5)
    found = localise(chain("a", "b", "c", "d"), obtained, expected)
    assert [(d.node.name, d.value, d.kind) for d in found.divergences] == [("n_c", "c", WRONG)]
    assert [f.status for f in found.figures] == [WITHIN, WITHIN, OUT, OUT]
    assert found.figures[2].max_abs_error == pytest.approx(0.5)
    assert found.compared == 4
    text = found.format()
    assert "node 3 of 4, Add 'n_c', output 'c': wrong values: max abs error 0.5" in text
    assert "from inputs within tolerance: it computes something else than onnxruntime" in text


def test_an_inf_past_float16s_range_is_an_overflow_even_when_the_output_is_finite_again():
    expected = values(a=np.array([60000, 1], np.float16), b=np.array([1.0, 0.5], np.float32))
    obtained = values(a=np.array([np.inf, 1], np.float16), b=np.array([1.0, 0.5], np.float32))
    found = localise(chain("a", "b"), obtained, expected)
    (divergence,) = found.divergences
    assert (divergence.node.name, divergence.kind) == ("n_a", OVERFLOW)
    assert divergence.detail == ("1 Inf on the EP past float16's range (largest 65504), "
                                 "where onnxruntime has values up to 60000")
    assert found.figures[1].status == WITHIN  # the break vanished downstream, as in a saturating op


def test_an_overflow_on_the_reference_side_is_named_too():
    expected = values(a=np.array([np.inf, 2], np.float16))
    obtained = values(a=np.array([64992, 2], np.float16))
    (divergence,) = localise(chain("a"), obtained, expected).divergences
    assert divergence.kind == OVERFLOW and "Inf on onnxruntime past float16's range (largest 65504), where the EP has values up to 64992" in divergence.detail


def test_nan_born_at_a_node_and_a_small_inf_are_nan_inf_not_overflow():
    expected = values(a=np.array([1.0, 2.0], np.float32), b=np.array([3.0, 4.0], np.float32))
    obtained = values(a=np.array([np.nan, 2.0], np.float32), b=np.array([np.inf, 4.0], np.float32))
    found = localise(chain("a", "b"), obtained, expected)
    assert [(d.value, d.kind) for d in found.divergences] == [("a", NAN_INF)]
    assert "1 NaN on the EP" in found.divergences[0].detail
    inf_only = localise(chain("b"), values(b=obtained["b"]), values(b=expected["b"]))
    assert inf_only.divergences[0].kind == NAN_INF and "1 Inf on the EP where onnxruntime is finite" \
        in inf_only.divergences[0].detail


def test_all_zeros_is_named_as_such():
    expected = values(a=np.ones(4, np.float32))
    obtained = values(a=np.zeros(4, np.float32))
    (divergence,) = localise(chain("a"), obtained, expected).divergences
    assert divergence.kind == ZEROS and "all 4 elements are zero" in divergence.detail


def test_rounding_that_grows_along_a_chain_is_drift_from_where_it_started():
    base = np.linspace(1, 2, 16, dtype=np.float32)
    step = np.float32(1e-5)
    expected = values(a=base, b=base, c=base, d=base)
    # a is exact, b and c carry in-tolerance error, d leaves the (tight) tolerance by rounding-sized amounts
    obtained = values(a=base, b=base + step, c=base + 3 * step, d=base + 20 * step)
    found = localise(chain("a", "b", "c", "d"), obtained, expected, Tolerance(atol=1e-4, rtol=0))
    (divergence,) = found.divergences
    assert (divergence.node.name, divergence.kind) == ("n_d", DRIFT)
    assert "grew along 2 nodes from Add 'n_b'" in divergence.detail


def test_rounding_sized_error_from_identical_inputs_says_the_tolerance_is_tight():
    base = np.linspace(1, 2, 16, dtype=np.float32)
    found = localise(chain("a"), values(a=np.nextafter(base, np.float32(3))), values(a=base),
                     Tolerance(atol=0, rtol=0))
    assert found.divergences[0].kind == DRIFT and "born here from identical inputs" in found.divergences[0].detail


def test_independent_branches_each_get_their_first_divergence():
    nodes = [GraphNode(0, "left", "Mul", ("x",), ("l",)), GraphNode(1, "right", "Exp", ("x",), ("r",)),
             GraphNode(2, "join", "Add", ("l", "r"), ("y",))]
    expected = values(l=np.ones(3, np.float32), r=np.ones(3, np.float32), y=np.full(3, 2, np.float32))
    obtained = values(l=np.full(3, 5, np.float32), r=np.full(3, 7, np.float32), y=np.full(3, 12, np.float32))
    found = localise(nodes, obtained, expected)
    assert [d.node.name for d in found.divergences] == ["left", "right"]  # not "join": its inputs are out


def test_a_value_that_was_not_exposed_passes_on_what_it_depends_on():
    base = np.ones(4, np.float32)
    nodes = chain("a", "b", "c")
    # b was not exposed; a is already out, so c (out too) is downstream of the break, not its origin
    found = localise(nodes, values(a=base + 1, c=base + 1), values(a=base, c=base))
    assert [d.node.name for d in found.divergences] == ["n_a"]
    assert [f.status for f in found.figures] == [OUT, OUT, OUT]
    # with a within, b unseen and c out, c is the first divergence that can be seen
    found = localise(nodes, values(a=base, c=base + 1), values(a=base, c=base))
    assert [d.node.name for d in found.divergences] == ["n_c"]
    assert found.figures[1].status == NOT_COMPARED and found.figures[1].max_abs_error is None


def test_shape_or_dtype_mismatches_are_wrong_values_with_the_problem():
    found = localise(chain("a"), values(a=np.ones(3, np.float32)), values(a=np.ones(4, np.float32)))
    assert found.divergences[0].kind == WRONG and "shape mismatch" in found.divergences[0].detail


def test_integers_compare_exactly_and_the_json_has_every_node():
    found = localise(chain("a", "b"), values(a=np.array([1, 2], np.int64), b=np.array([3, 5], np.int64)),
                     values(a=np.array([1, 2], np.int64), b=np.array([3, 4], np.int64)))
    document = found.to_json()
    assert [node["name"] for node in document["nodes"]] == ["n_a", "n_b"]
    assert document["divergences"][0]["name"] == "n_b" and document["divergences"][0]["op_type"] == "Add"
    assert document["nodes"][1]["status"] == OUT and document["compared"] == 2


def test_nothing_out_of_tolerance_says_none_found():
    base = np.ones(2, np.float32)
    text = find_divergences(chain("a"), values(a=base), values(a=base), lambda name, dtype: TOLERANCE, method="test",
                            notes=("a note",)).format()
    assert text.startswith("first divergence: none found") and "note: a note" in text


def test_a_whole_tensor_rule_that_fails_is_named_when_no_element_is_out():
    expected = values(a=np.linspace(-1, 1, 8, dtype=np.float32))
    obtained = values(a=np.linspace(1, -1, 8, dtype=np.float32))
    (divergence,) = localise(chain("a"), obtained, expected, Tolerance(cosine=0.995)).divergences
    assert divergence.kind == WRONG and "cosine similarity -1 is below the minimum 0.995" in divergence.detail
    assert "0 of 8 elements" not in divergence.detail


def test_error_amplified_from_inputs_within_a_loose_rule_is_carried_not_precision_sized():
    base = np.linspace(1, 2, 8, dtype=np.float32)
    tolerance = Tolerance(atol=0.05, rtol=0)
    found = localise(chain("a", "b"), values(a=base + 0.04, b=base + 0.3), values(a=base, b=base), tolerance)
    (divergence,) = found.divergences
    assert divergence.kind == DRIFT and divergence.detail.startswith("error carried from its inputs (max abs error 0.3")
    assert "grew along 1 node from Add 'n_a'" in divergence.detail
