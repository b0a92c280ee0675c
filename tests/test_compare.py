"""Tests for pytest_browserml.golden.compare with crafted numpy arrays (no browser, no plugin fixtures)."""

import numpy as np
import pytest

from pytest_browserml.golden.compare import (
    OutputComparison,
    Tolerance,
    compare,
    compare_outputs,
    cosine_similarity,
    lowest_slice_cosine,
    topk_agreement,
    ulp_distance,
)

DEFAULT = Tolerance(atol=1e-4, rtol=1e-3, source="built-in default for wasm float32")


def rng(seed=0):
    return np.random.default_rng(seed)


def data(shape=(4, 50), dtype=np.float32, seed=0):
    """Values away from zero, so relative statistics and fits are well defined."""
    values = rng(seed).uniform(0.5, 2.0, size=shape) * rng(seed + 1).choice([-1, 1], size=shape)
    return values.astype(dtype)


def nudge_ulps(values, steps):
    """Move each element by `steps` ULPs of its own dtype (positive: towards +inf)."""
    out = values.copy()
    for _ in range(abs(steps)):
        out = np.nextafter(out, np.array(np.inf if steps > 0 else -np.inf, dtype=values.dtype))
    return out


# --- float16 rounding and ULPs -------------------------------------------------


def test_float16_values_nudged_by_two_ulp_pass_ulp_budget():
    golden = data(dtype=np.float16)
    obtained = nudge_ulps(golden, 2)
    obtained[0, :10] = nudge_ulps(golden[0, :10], -1)

    result = compare("y", obtained, golden, Tolerance(ulp=4))

    assert result.passed
    assert result.mismatched == 0
    assert result.max_ulp == 2
    assert result.diagnosis == "within tolerance"  # only failures are diagnosed
    assert compare("y", obtained, golden, Tolerance(ulp=1)).diagnosis == "float16-rounding-sized drift (max 2 ULP in float16)"


def test_a_passing_output_is_within_tolerance_however_it_differs():
    expected = data()
    result = compare("y", expected + np.float32(3e-6), expected, Tolerance(atol=1e-4, rtol=1e-4))
    assert result.passed and result.diagnosis == "within tolerance"


def test_max_ulp_leaves_out_pairs_across_zero_where_ulps_mean_nothing():
    expected = np.array([1e-9, 2.0, 0.0], np.float32)
    obtained = np.array([-1e-9, np.nextafter(np.float32(2.0), np.float32(3.0)), 1e-30], np.float32)
    assert compare("y", obtained, expected, Tolerance(atol=1e-6)).max_ulp == 1


def test_drift_near_zero_within_float16_rounding_of_the_tensors_scale_is_float16_drift():
    """1e-4 against 3e-4 is 3,000 float16 ULPs of the value itself, but a fifth of one at the outputs' scale."""
    expected = np.array([1.0, -0.5, 1e-4, -2.0, 0.75], np.float32)
    obtained = expected.astype(np.float16).astype(np.float32)
    obtained[2] = 3e-4
    result = compare("y", obtained, expected, Tolerance(atol=1e-6))
    assert not result.passed
    assert result.diagnosis == "float16-rounding-sized drift (max 1 ULP in float16)"


def test_float16_ulp_budget_too_small_fails():
    golden = data(dtype=np.float16)
    result = compare("y", nudge_ulps(golden, 2), golden, Tolerance(ulp=1))
    assert not result.passed
    assert result.mismatched == golden.size


def test_float32_output_computed_in_float16_is_diagnosed_as_float16_rounding():
    expected = data()
    obtained = expected.astype(np.float16).astype(np.float32)

    loose = compare("y", obtained, expected, Tolerance(rtol=1e-3))
    strict = compare("y", obtained, expected, Tolerance(ulp=1))

    assert loose.passed
    assert not strict.passed
    assert strict.max_ulp > 1000
    assert strict.diagnosis.startswith("float16-rounding-sized drift")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_ulp_distance_signed_zero_nextafter_and_across_zero(dtype):
    zero = np.array(0.0, dtype=dtype)
    one = np.array(1.0, dtype=dtype)
    tiny_pos = np.nextafter(zero, one)
    tiny_neg = np.nextafter(zero, -one)

    assert ulp_distance(zero, -zero) == 0
    assert ulp_distance(one, np.nextafter(one, 2 * one)) == 1
    assert ulp_distance(-one, np.nextafter(-one, -2 * one)) == 1
    assert ulp_distance(tiny_neg, tiny_pos) == 2
    assert ulp_distance(tiny_pos, tiny_neg) == 2
    assert ulp_distance(zero, tiny_neg) == 1
    assert ulp_distance(one, one).dtype == np.int64


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_ulp_distance_counts_representable_steps(dtype):
    start = np.array([-1.5, -1e-3, 0.0, 0.25, 3.0], dtype=dtype)
    assert np.array_equal(ulp_distance(start, nudge_ulps(start, 7)), [7] * 5)
    assert np.array_equal(ulp_distance(nudge_ulps(start, -3), start), [3] * 5)


def test_ulp_distance_extremes_do_not_overflow():
    big32 = np.finfo(np.float32).max
    assert ulp_distance(np.float32(big32), np.float32(-big32)) == 2 * 0x7F7FFFFF
    big64 = np.finfo(np.float64).max
    assert ulp_distance(np.float64(big64), np.float64(-big64)) == np.iinfo(np.int64).max
    assert ulp_distance(np.float64(big64), np.float64(np.inf)) == 1
    assert ulp_distance(np.float32(np.nan), np.float32(1.0)) == np.iinfo(np.int64).max


def test_ulp_distance_requires_one_float_dtype():
    with pytest.raises(TypeError):
        ulp_distance(np.zeros(2, np.float32), np.zeros(2, np.float64))
    with pytest.raises(TypeError):
        ulp_distance(np.zeros(2, np.int32), np.zeros(2, np.int32))


# --- element-wise tolerance ---------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("atol, rtol", [(1e-3, 0.0), (0.0, 1e-2), (1e-3, 1e-2), (None, 1e-2), (1e-3, None)])
def test_atol_rtol_matches_np_isclose(seed, atol, rtol):
    generator = rng(seed)
    expected = generator.normal(size=500)
    expected[::7] = 0.0
    obtained = expected + generator.normal(scale=1e-3, size=500) * generator.uniform(0, 10, size=500)

    result = compare("y", obtained, expected, Tolerance(atol=atol, rtol=rtol))

    reference = np.isclose(obtained, expected, rtol=rtol or 0.0, atol=atol or 0.0)
    assert result.mismatched == np.count_nonzero(~reference)
    assert 0 < result.mismatched < 500
    out_indices = {w.index for w in result.worst}
    assert out_indices <= {(int(i),) for i in np.flatnonzero(~reference)}


def test_no_tolerance_means_exact_for_floats():
    expected = data()
    obtained = nudge_ulps(expected, 1)
    assert compare("y", expected.copy(), expected, Tolerance()).passed
    assert not compare("y", obtained, expected, Tolerance()).passed
    assert not compare("y", obtained, expected, Tolerance(atol=1.0, exact=True)).passed


def test_one_spike_fails_and_leads_the_worst_table():
    expected = data()
    obtained = nudge_ulps(expected, 3)
    obtained[2, 17] += 5.0

    result = compare("y", obtained, expected, DEFAULT)

    assert not result.passed
    assert result.mismatched == 1
    assert result.worst[0].index == (2, 17)
    assert result.worst[0].difference == pytest.approx(5.0, rel=1e-6)
    assert result.max_abs_error == pytest.approx(5.0, rel=1e-6)
    assert len(result.worst) == 10
    assert result.diagnosis.startswith("errors larger than float16 rounding: max abs error 5")
    assert result.diagnosis.endswith("at index (2, 17)")


def test_one_spike_passes_with_enough_mismatch_fraction():
    expected = data()
    obtained = expected.copy()
    obtained[2, 17] += 5.0

    assert compare("y", obtained, expected, Tolerance(atol=1e-4, mismatch_fraction=0.005)).passed  # 1 of 200
    assert not compare("y", obtained, expected, Tolerance(atol=1e-4, mismatch_fraction=0.004)).passed


def test_worst_lists_mismatches_before_larger_in_tolerance_differences():
    expected = np.array([1000.0, 1.0, 2.0])
    obtained = np.array([1000.5, 1.01, 2.0])
    result = compare("y", obtained, expected, Tolerance(rtol=1e-3))
    assert [w.index for w in result.worst] == [(1,), (0,)]


@pytest.mark.parametrize("size", [30, 3000])  # few candidates are sorted, many are partitioned first
def test_worst_table_takes_the_largest_then_the_first_positions(size):
    expected = np.zeros((size // 3, 3), np.float32)
    obtained = np.full_like(expected, 0.5)
    obtained.reshape(-1)[[size - 1, 5]] = 0.75
    result = compare("y", obtained, expected, DEFAULT)
    flat = [5, size - 1, 0, 1, 2, 3, 4, 6, 7, 8]
    assert [w.index for w in result.worst] == [divmod(i, 3) for i in flat]
    assert [w.difference for w in result.worst] == [0.75, 0.75] + [0.5] * 8


def test_identical_up_to_the_sign_of_zero_is_zero_error():
    expected = np.array([[0.0, -0.0, 1.5], [-2.0, 0.0, 3.0]], np.float32)
    obtained = np.array([[-0.0, 0.0, 1.5], [-2.0, -0.0, 3.0]], np.float32)
    result = compare("y", obtained, expected, Tolerance())
    assert result.passed and result.diagnosis == "identical" and result.worst == ()
    assert (result.max_abs_error, result.max_ulp, result.mismatched) == (0.0, 0, 0)


# --- NaN and Inf --------------------------------------------------------------


def test_nan_in_both_passes_only_with_nan_equal():
    expected = np.array([1.0, np.nan, 3.0], dtype=np.float32)
    obtained = expected.copy()

    equal = compare("y", obtained, expected, Tolerance(atol=1e-6))
    strict = compare("y", obtained, expected, Tolerance(atol=1e-6, nan_equal=False))

    assert equal.passed and equal.diagnosis == "identical"
    assert not strict.passed
    assert strict.mismatched == 1
    assert strict.diagnosis == "NaN mismatch (1 element)"


def test_nan_where_expected_is_finite_fails_with_diagnosis():
    expected = data()
    obtained = expected.copy()
    obtained[0, 3] = np.nan
    obtained[1, 4] = np.nan

    result = compare("y", obtained, expected, Tolerance(atol=1.0, mismatch_fraction=0.001))

    assert not result.passed
    assert result.diagnosis == "NaN in obtained where expected is finite (2 elements)"
    assert [w.index for w in result.worst[:2]] == [(0, 3), (1, 4)]
    assert result.max_abs_error == 0.0  # statistics cover the finite pairs only


def test_inf_must_match_sign():
    expected = np.array([np.inf, -np.inf, 1.0], dtype=np.float32)
    assert compare("y", expected.copy(), expected, Tolerance(atol=1e-3)).passed

    flipped = np.array([-np.inf, -np.inf, 1.0], dtype=np.float32)
    result = compare("y", flipped, expected, Tolerance(atol=1e30))
    assert not result.passed
    assert result.diagnosis == "Inf mismatch (1 element)"

    finite = np.array([np.finfo(np.float32).max, -np.inf, 1.0], dtype=np.float32)
    assert not compare("y", finite, expected, Tolerance(ulp=10)).passed


# --- integers and bool --------------------------------------------------------


def test_integers_and_bools_are_exact_even_with_big_tolerance():
    loose = Tolerance(atol=100.0, rtol=1.0, ulp=1000, cosine=0.0)
    ints = np.arange(12, dtype=np.int64).reshape(3, 4)
    off_by_one = ints.copy()
    off_by_one[1, 2] += 1

    result = compare("ids", off_by_one, ints, loose)
    assert not result.passed
    assert result.mismatched == 1
    assert result.max_ulp is None and result.cosine is None
    assert result.worst[0].index == (1, 2)
    assert result.diagnosis == "values differ: max abs error 1 at index (1, 2)"

    mask = np.array([True, False, True])
    assert compare("mask", mask.copy(), mask, loose).passed
    assert not compare("mask", ~mask, mask, loose).passed
    assert compare("ids", off_by_one, ints, Tolerance(mismatch_fraction=0.1)).passed


# --- whole-tensor criteria ----------------------------------------------------


def test_topk_agreement_pass_and_fail():
    logits = np.tile(np.arange(10, dtype=np.float32), (4, 1))
    drifted = logits + rng().uniform(-0.1, 0.1, size=logits.shape).astype(np.float32)
    assert topk_agreement(drifted, logits, k=3) == 1.0
    passed = compare("logits", drifted, logits, Tolerance(atol=0.2, topk=3))
    assert passed.passed and passed.topk_agreement == 1.0

    swapped = logits.copy()
    swapped[1, [9, 5]] = swapped[1, [5, 9]]
    result = compare("logits", swapped, logits, Tolerance(topk=3, mismatch_fraction=1.0))
    assert not result.passed
    assert result.topk_agreement == 0.75
    assert "top-3 index sets" in result.format()


def test_topk_along_another_axis_and_order_within_set_ignored():
    expected = np.array([[0.0, 5.0], [1.0, 1.0], [9.0, 2.0]])
    obtained = np.array([[0.0, 5.0], [8.0, 1.0], [1.0, 2.0]])  # same top-2 rows per column
    assert topk_agreement(obtained, expected, k=2, axis=0) == 1.0
    assert topk_agreement(obtained, expected, k=1, axis=0) == 0.5


def test_topk_only_tolerance_ignores_finite_drift_but_not_nan():
    logits = rng().normal(size=(8, 100))
    drifted = logits * 1.05 + 0.01
    assert compare("logits", drifted, logits, Tolerance(topk=5)).passed
    drifted[0, 0] = np.nan
    assert not compare("logits", drifted, logits, Tolerance(topk=5)).passed


def test_topk_axis_out_of_range_is_a_problem():
    result = compare("y", np.zeros((2, 3)), np.zeros((2, 3)), Tolerance(topk=1, topk_axis=2))
    assert not result.passed
    assert result.problems == ("topk_axis 2 is out of range for shape (2, 3)",)


def test_cosine_pass_and_fail():
    expected = data(seed=3)
    noisy = expected + rng(4).normal(scale=1e-3, size=expected.shape).astype(np.float32)
    assert compare("emb", noisy, expected, Tolerance(cosine=0.9999)).passed

    unrelated = data(seed=5)
    result = compare("emb", unrelated, expected, Tolerance(cosine=0.9999))
    assert not result.passed
    assert result.cosine < 0.5
    assert "below the minimum 0.9999" in result.format()


def test_cosine_similarity_edge_cases():
    assert cosine_similarity(np.zeros(3), np.zeros(3)) == 1.0
    assert cosine_similarity(np.zeros(3), np.ones(3)) == 0.0
    assert cosine_similarity([1.0, 0.0], [-1.0, 0.0]) == -1.0
    assert cosine_similarity([1e300, 1e300], [2e300, 2e300]) == pytest.approx(1.0)


# --- hard problems ------------------------------------------------------------


def test_shape_mismatch_is_reported_not_broadcast():
    result = compare("y", np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32), DEFAULT)
    assert not result.passed
    assert result.problems == ("shape mismatch: obtained (2, 3), expected (3, 2)",)
    assert result.max_abs_error is None and result.cosine is None and result.max_ulp is None
    assert "problem: shape mismatch: obtained (2, 3), expected (3, 2)" in result.format()


def test_dtype_mismatch_is_reported_not_cast():
    expected = data()
    result = compare("y", expected.astype(np.float16), expected, Tolerance(atol=1.0))
    assert not result.passed
    assert result.problems == ("dtype mismatch: obtained float16, expected float32",)
    assert result.mean_abs_error is None


def test_unsupported_dtype_is_a_problem():
    numbers = np.array([1 + 2j, 3j])
    result = compare("z", numbers, numbers, Tolerance())
    assert not result.passed
    assert result.problems[0].startswith("unsupported dtype")


def test_strings_compare_exactly_whatever_their_numpy_form():
    assert compare("labels", np.array(["a", "b"]), np.array([b"a", b"b"], dtype=object), Tolerance(atol=1)).passed
    result = compare("labels", np.array(["a", "b", "c"], dtype=object), np.array(["a", "x", "c"]), Tolerance())
    assert not result.passed and result.mismatched == 1
    assert result.diagnosis == "1 of 3 strings differ, the first at index (1,)"
    assert result.worst[0].expected == "x"


def test_compare_outputs_missing_and_extra():
    expected = {"a": np.ones(3, np.float32), "b": np.zeros((2, 2), np.int64)}
    obtained = {"a": np.ones(3, np.float32), "c": np.ones(1, np.float32)}
    seen = []

    def tolerance_for(name, dtype):
        seen.append((name, np.dtype(dtype).name))
        return Tolerance(atol=1e-5, source=f"test for {name}")

    results = compare_outputs(obtained, expected, tolerance_for)

    assert [r.name for r in results] == ["a", "b", "c"]
    assert [r.passed for r in results] == [True, False, False]
    assert results[1].problems == ("missing from the obtained outputs",)
    assert results[1].shape == (2, 2) and results[1].dtype == "int64"
    assert "not in the expected outputs" in results[2].problems[0]
    assert seen == [("a", "float32"), ("b", "int64"), ("c", "float32")]
    assert results[0].tolerance.source == "test for a"


# --- degenerate shapes --------------------------------------------------------


def test_zero_size_tensors_pass_when_shape_and_dtype_match():
    empty = np.zeros((0, 5), np.float32)
    result = compare("y", empty, empty.copy(), Tolerance(cosine=0.99, topk=2))
    assert result.passed
    assert result.size == 0 and result.mismatched == 0 and result.mismatched_percent == 0.0
    assert result.max_abs_error is None
    assert not compare("y", np.zeros((5, 0), np.float32), empty, Tolerance()).passed


def test_scalar_tensors():
    expected = np.array(1.5, dtype=np.float32)
    passed = compare("s", np.array(1.5001, dtype=np.float32), expected, Tolerance(atol=1e-3, topk=1))
    assert passed.passed and passed.shape == ()

    failed = compare("s", np.array(2.5, dtype=np.float32), expected, Tolerance(atol=1e-3))
    assert not failed.passed
    assert failed.worst[0].index == ()
    assert failed.diagnosis == "errors larger than float16 rounding: max abs error 1 at index ()"
    assert "(0,)" not in failed.format()


# --- diagnosis ----------------------------------------------------------------


def test_all_zeros_diagnosis():
    expected = data()
    result = compare("y", np.zeros_like(expected), expected, DEFAULT)
    assert not result.passed
    assert result.diagnosis.startswith("obtained is all zeros (expected is not)")
    assert "shader-f16" in result.diagnosis


def test_permutation_diagnosis():
    expected = data()
    obtained = expected.T.copy().reshape(expected.shape)  # e.g. a layout (NCHW/NHWC) mix-up
    result = compare("y", obtained, expected, DEFAULT)
    assert not result.passed
    assert result.diagnosis == "a permutation of the expected values (same values, different order)"


def test_constant_offset_diagnosis():
    expected = data()
    result = compare("y", expected + np.float32(0.5), expected, DEFAULT)
    assert not result.passed
    assert result.diagnosis == "constant offset of 0.5"


def test_scaled_diagnosis():
    expected = data()
    result = compare("y", expected * np.float32(1.01), expected, DEFAULT)
    assert not result.passed
    assert result.diagnosis == "scaled by 1.01"


def test_scaled_diagnosis_in_float16():
    expected = data(dtype=np.float16)
    obtained = (expected.astype(np.float32) * 1.01).astype(np.float16)
    result = compare("y", obtained, expected, Tolerance(ulp=1))
    assert result.diagnosis.startswith("scaled by ")
    assert float(result.diagnosis.split()[-1]) == pytest.approx(1.01, abs=1e-4)


def test_scale_of_narrow_range_values_is_not_called_an_offset():
    expected = np.linspace(1.0, 1.1, 300).astype(np.float32)
    result = compare("y", expected * np.float32(1.01), expected, DEFAULT)
    assert result.diagnosis == "scaled by 1.01"


def test_random_errors_are_not_called_offset_or_scale():
    expected = data()
    obtained = expected + rng(9).normal(scale=0.05, size=expected.shape).astype(np.float32)
    result = compare("y", obtained, expected, DEFAULT)
    assert result.diagnosis.startswith("errors larger than float16 rounding: max abs error")


# --- describe and format ------------------------------------------------------


def test_describe_lists_only_set_fields_and_source():
    assert DEFAULT.describe() == "atol=0.0001, rtol=0.001 (built-in default for wasm float32)"
    assert Tolerance().describe() == "exact (built-in default)"
    full = Tolerance(ulp=4, topk=5, topk_axis=1, mismatch_fraction=0.01, nan_equal=False, source="marker on test_x")
    assert full.describe() == (
        "ulp=4, topk=5, topk_axis=1, mismatch_fraction=0.01, nan_equal=False (marker on test_x)"
    )


@pytest.mark.parametrize("bad", [dict(atol=-1.0), dict(ulp=-1), dict(topk=0), dict(mismatch_fraction=1.5)])
def test_tolerance_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        Tolerance(**bad)


def test_format_failure_text():
    expected = data(shape=(2, 300))
    obtained = expected.copy()
    obtained[1, :12] *= np.float32(1.3)
    result = compare("y", obtained, expected, DEFAULT)
    text = result.format()
    lines = text.splitlines()

    assert isinstance(result, OutputComparison)
    assert result.mismatched_percent == pytest.approx(2.0)
    assert lines[0] == (
        "output 'y': 12 of 600 elements (2.00%) out of tolerance; shape (2, 300), dtype float32"
    )
    assert lines[1] == "  tolerance: atol=0.0001, rtol=0.001 (built-in default for wasm float32)"
    assert "  failed: 2.00% of elements out of tolerance, 0.00% allowed" in lines
    stats = [line for line in lines if line.startswith("  max abs error ")]
    assert len(stats) == 1 and "max ULP" in stats[0] and "cosine" in stats[0]
    assert f"  diagnosis: {result.diagnosis}" in lines
    header_at = lines.index("  worst elements:") + 1
    header = lines[header_at]
    assert header.split() == ["index", "obtained", "expected", "difference"]
    rows = lines[header_at + 1 :]
    assert len(rows) == 10
    assert all(len(row) == len(header) for row in rows)  # right-aligned numeric columns
    assert rows[0].split()[0].startswith("(1,")


def test_format_of_pass_has_no_failure_lines():
    expected = data()
    text = compare("y", expected.copy(), expected, DEFAULT).format()
    assert "0 of 200 elements (0.00%)" in text
    assert "failed:" not in text and "worst elements" not in text
    assert "diagnosis: identical" in text


def test_tiny_share_is_not_rounded_to_zero_percent():
    expected = np.zeros(100_000, np.float32)
    obtained = expected.copy()
    obtained[5] = 1.0
    assert "(0.001%)" in compare("y", obtained, expected, Tolerance()).format()


# --- block-wise computation -----------------------------------------------------

from dataclasses import asdict  # noqa: E402

from pytest_browserml.golden import compare as compare_module


def as_fields(result: OutputComparison) -> dict:
    """Every figure of a comparison; sums (means, cosine) only to rounding, the rest exactly."""
    fields = asdict(result)
    fields["worst"] = repr(fields["worst"])  # NaN cells compare equal as text
    for name in ("mean_abs_error", "mean_rel_error", "cosine"):
        if fields[name] is not None:
            fields[name] = pytest.approx(fields[name], rel=1e-12, nan_ok=True)
    return fields


def special_values(dtype, seed):
    values = data(shape=(6, 7, 5), dtype=dtype, seed=seed)
    flat = values.reshape(-1)
    flat[[3, 40]] = np.nan
    flat[[7, 90]] = np.inf
    flat[11] = -np.inf
    flat[12] = 0.0
    return values


BLOCKWISE_CASES = {
    "float32 noise": lambda: (data() + rng(5).normal(scale=1e-3, size=(4, 50)).astype(np.float32), data(),
                              DEFAULT),
    "float16 ulp": lambda: (nudge_ulps(data(dtype=np.float16), 3), data(dtype=np.float16), Tolerance(ulp=2)),
    "float64 offset": lambda: (data(dtype=np.float64) + 0.25, data(dtype=np.float64), DEFAULT),
    "float32 scale": lambda: (data() * np.float32(1.02), data(), DEFAULT),
    "NaN and inf": lambda: (special_values(np.float32, 1), special_values(np.float32, 2), DEFAULT),
    "NaN not equal": lambda: (special_values(np.float64, 1), special_values(np.float64, 1),
                              Tolerance(atol=1e-3, nan_equal=False)),
    "cosine and topk only": lambda: (data(seed=3), data(seed=4), Tolerance(cosine=0.9, topk=3, topk_axis=0)),
    "int exact": lambda: (rng(1).integers(0, 9, (30, 7)).astype(np.int32),
                          rng(2).integers(0, 9, (30, 7)).astype(np.int32), DEFAULT),
    "bool": lambda: (rng(1).random(99) > 0.5, rng(2).random(99) > 0.5, Tolerance()),
    "all zeros": lambda: (np.zeros((5, 40), np.float32), data(shape=(5, 40)), DEFAULT),
    "non-contiguous operands": lambda: (np.asfortranarray(data(shape=(20, 30)) * np.float32(1.5)),
                                        data(shape=(40, 30))[::2], DEFAULT),
    "empty": lambda: (np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32), DEFAULT),
    "scalar": lambda: (np.array(2.0, np.float32), np.array(1.0, np.float32), DEFAULT),
}


@pytest.mark.parametrize("case", BLOCKWISE_CASES)
@pytest.mark.parametrize("block", [1, 7, 64])
def test_blockwise_result_equals_whole_array_result(case, block, monkeypatch):
    obtained, expected, tolerance = BLOCKWISE_CASES[case]()
    whole = compare("y", obtained, expected, tolerance)  # each tensor fits in one default block
    monkeypatch.setattr(compare_module, "_BLOCK_ELEMENTS", block)
    blockwise = compare("y", obtained, expected, tolerance)
    assert as_fields(whole) == as_fields(blockwise)


def test_cosine_and_topk_blockwise_equal_whole_array(monkeypatch):
    a, b = data(shape=(30, 11), seed=1), data(shape=(30, 11), seed=2)
    cosine, agreement = cosine_similarity(a, b), topk_agreement(a, b, 3, axis=0)
    monkeypatch.setattr(compare_module, "_BLOCK_ELEMENTS", 16)
    assert cosine_similarity(a, b) == pytest.approx(cosine, rel=1e-12)
    assert topk_agreement(a, b, 3, axis=0) == agreement
    assert np.isnan(cosine_similarity(np.array([1.0, np.nan]), np.ones(2)))


def test_worst_table_ties_go_to_the_first_positions(monkeypatch):
    expected = np.zeros(50, np.float32)
    obtained = np.full(50, 0.5, np.float32)  # every difference ties
    monkeypatch.setattr(compare_module, "_BLOCK_ELEMENTS", 4)
    result = compare("y", obtained, expected, DEFAULT)
    assert [w.index for w in result.worst] == [(i,) for i in range(10)]


@pytest.mark.parametrize("block", [1000, 97])
def test_permutation_of_a_tensor_larger_than_a_block(block, monkeypatch):
    monkeypatch.setattr(compare_module, "_BLOCK_ELEMENTS", block)
    expected = data(shape=(40, 50))
    transposed = expected.T.copy().reshape(expected.shape)
    drifted = nudge_ulps(transposed, 2)
    noisy = expected + rng(9).normal(scale=0.05, size=expected.shape).astype(np.float32)
    permutation = "a permutation of the expected values (same values, different order)"
    assert compare("y", transposed, expected, DEFAULT).diagnosis == permutation
    assert compare("y", drifted, expected, Tolerance(ulp=2)).diagnosis == permutation
    assert compare("y", noisy, expected, DEFAULT).diagnosis.startswith("errors larger than float16 rounding")
    assert compare("y", drifted, expected, Tolerance(ulp=1)).diagnosis != permutation


# --- cosine per slice ------------------------------------------------------------


def test_cosine_axis_judges_each_token_by_the_lowest_cosine():
    expected = np.random.default_rng(3).standard_normal((1, 16, 384)).astype(np.float32)
    obtained = expected.copy()
    obtained[0, 12] = np.random.default_rng(4).standard_normal(384)  # one token's vector is garbage
    whole = compare("h", obtained, expected, Tolerance(cosine=0.9))
    per_token = compare("h", obtained, expected, Tolerance(cosine=0.9, cosine_axis=-1))
    assert whole.passed and whole.cosine > 0.9
    assert not per_token.passed and per_token.cosine < 0.2
    assert per_token.failures[0].startswith("cosine similarity ")
    assert "(the lowest of the slices along axis -1) is below the minimum 0.9" in per_token.failures[0]
    assert per_token.tolerance.describe().startswith("cosine=0.9, cosine_axis=-1")


def test_lowest_slice_cosine_of_zero_slices_and_a_bad_axis():
    zeros = np.zeros((2, 3), np.float32)
    assert lowest_slice_cosine(zeros, zeros) == 1.0
    assert lowest_slice_cosine(np.ones((2, 3), np.float32), zeros) == 0.0
    result = compare("h", zeros, zeros, Tolerance(cosine=0.9, cosine_axis=2))
    assert not result.passed and result.problems == ("cosine_axis 2 is out of range for shape (2, 3)",)


def test_mask_input_compares_only_the_positions_an_attention_mask_keeps():
    expected = np.random.default_rng(5).standard_normal((1, 4, 8)).astype(np.float32)
    obtained = expected.copy()
    obtained[0, 2:] = 99.0  # padding tokens: whatever the model computes there is not used
    inputs = {"attention_mask": np.array([[1, 1, 0, 0]], np.int64)}
    tolerance = Tolerance(cosine=0.999, cosine_axis=-1, mask_input="attention_mask")
    hidden, pooled = compare_outputs({"h": obtained, "pooled": expected[:, 0]}, {"h": expected, "pooled": expected[:, 0]},
                                     lambda name, dtype: tolerance, inputs)
    assert hidden.passed and hidden.shape == (2, 8) and hidden.cosine == pytest.approx(1.0)
    assert pooled.passed and pooled.shape == (1, 8)  # [batch, hidden]: not [batch, sequence], compared whole
    assert not compare("h", obtained, expected, Tolerance(cosine=0.999, cosine_axis=-1)).passed
    (missing,) = compare_outputs({"h": obtained}, {"h": expected}, lambda name, dtype: tolerance, {})
    assert missing.problems == ("mask_input 'attention_mask' is not an input of this run (inputs: none)",)
