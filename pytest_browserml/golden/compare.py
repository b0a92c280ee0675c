"""Compare model outputs with golden tensors and explain the difference.

A browser execution provider (wasm, WebGPU, WebNN) never reproduces a golden
tensor bit for bit: GPUs reorder reductions, fuse operations and may compute in
float16.  A bare "arrays not close" assertion cannot tell that harmless drift
from a real break (a wrong weight, a transposed output, an uninitialised GPU
buffer).  This module decides pass/fail under an explicit :class:`Tolerance`
and produces the statistics, worst elements and a one-line diagnosis that make
a failure readable.  It is pure numpy so it can be tested, and reused by the
CLI, without pytest or a browser.

Outputs can be hundreds of megabytes, so every statistic is accumulated over
blocks of a fixed number of elements: besides the two tensors, a comparison
holds only a few block-sized float64 temporaries.  A tensor that fits in one
block gets exactly the numbers a whole-array computation would give; larger
ones differ only in the rounding of sums (means, cosine).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

import numpy as np

__all__ = [
    "Tolerance",
    "WorstElement",
    "OutputComparison",
    "compare",
    "compare_outputs",
    "ulp_distance",
    "cosine_similarity",
    "lowest_slice_cosine",
    "topk_agreement",
    "flat_blocks",
]

_WORST_LIMIT = 10
# Up to this many candidates for the worst table, sorting them all is cheaper than partitioning first.
_SORT_ALL_UP_TO = 1024
# Elements per block: a float64 temporary of a block is 512 KiB.
_BLOCK_ELEMENTS = 1 << 16
# Values sampled from each side for the permutation check of tensors larger than one block.
_PERMUTATION_SAMPLE = 1024
_STRING_KINDS = "OUS"
_FLOAT16_DRIFT_ULP = 8
# A fitted offset or scale counts as "constant" when what it leaves unexplained
# is below 1 % of the effect plus the rounding noise of the dtype.
_FIT_RELATIVE_SPREAD = 0.01
_INT64_MAX = np.iinfo(np.int64).max
_ULP_INT_TYPES = {
    np.dtype(np.float16): np.int16,
    np.dtype(np.float32): np.int32,
    np.dtype(np.float64): np.int64,
}
# np.iinfo per call is slow; the most negative value of each bits type, as int64.
_ULP_INT_MIN = {dtype: np.int64(np.iinfo(int_type).min) for dtype, int_type in _ULP_INT_TYPES.items()}


@dataclass(frozen=True)
class Tolerance:
    """How close an obtained output must be to its golden tensor.

    Element-wise, a float element passes if it meets any criterion that is set
    (the atol/rtol pair with ``np.isclose`` semantics, or ``ulp``).  With no
    criterion at all, or ``exact=True``, floats must be equal.  A tolerance
    that sets only whole-tensor criteria (``cosine``/``topk``) judges finite
    drift by those alone; NaN/Inf rules still apply element-wise.  Integer and
    bool outputs are always compared exactly.
    """

    atol: float | None = None
    rtol: float | None = None
    ulp: int | None = None
    cosine: float | None = None
    cosine_axis: int | None = None  # judge each slice along this axis (a token's vector), by the lowest cosine
    # compare only where this input is nonzero (padding from an attention mask), in outputs whose leading
    # dims are the input's shape
    mask_input: str | None = None
    topk: int | None = None
    topk_axis: int = -1
    mismatch_fraction: float = 0.0
    nan_equal: bool = True
    exact: bool = False
    source: str = "built-in default"

    def __post_init__(self) -> None:
        """Reject settings that would silently make every comparison pass or fail."""
        for setting in ("atol", "rtol", "ulp"):
            value = getattr(self, setting)
            if value is not None and value < 0:
                raise ValueError(f"{setting} must be >= 0, got {value}")
        if self.topk is not None and self.topk < 1:
            raise ValueError(f"topk must be >= 1, got {self.topk}")
        if not 0.0 <= self.mismatch_fraction <= 1.0:
            raise ValueError(f"mismatch_fraction must be in [0, 1], got {self.mismatch_fraction}")

    def describe(self) -> str:
        """Only the fields that are set, plus where the tolerance came from."""
        parts = []
        if self.exact:
            parts.append("exact")
        for setting in ("atol", "rtol", "ulp", "cosine", "topk"):
            value = getattr(self, setting)
            if value is not None:
                parts.append(f"{setting}={value:g}")
        if self.cosine is not None and self.cosine_axis is not None:
            parts.append(f"cosine_axis={self.cosine_axis}")
        if self.topk is not None and self.topk_axis != -1:
            parts.append(f"topk_axis={self.topk_axis}")
        if self.mask_input is not None:
            parts.append(f"mask_input={self.mask_input}")
        if self.mismatch_fraction:
            parts.append(f"mismatch_fraction={self.mismatch_fraction:g}")
        if not self.nan_equal:
            parts.append("nan_equal=False")
        text = ", ".join(parts) or "exact"
        return f"{text} ({self.source})" if self.source else text


@dataclass(frozen=True)
class WorstElement:
    """One row of the worst-elements table, as plain Python values for reporting."""

    index: tuple[int, ...]
    obtained: float | int | bool
    expected: float | int | bool
    difference: float  # obtained - expected


@dataclass(frozen=True)
class OutputComparison:
    """Verdict, statistics and diagnosis for one output; stats are None when not compared."""

    name: str
    passed: bool
    tolerance: Tolerance
    shape: tuple[int, ...]
    dtype: str
    size: int
    mismatched: int
    max_abs_error: float | None
    mean_abs_error: float | None
    max_rel_error: float | None
    mean_rel_error: float | None
    max_ulp: int | None
    cosine: float | None
    topk_agreement: float | None
    worst: tuple[WorstElement, ...]
    problems: tuple[str, ...]
    diagnosis: str

    @property
    def mismatched_percent(self) -> float:
        return 100.0 * self.mismatched / self.size if self.size else 0.0

    @property
    def failures(self) -> tuple[str, ...]:
        """Which pass criteria were violated, in words (empty when passed)."""
        tol = self.tolerance
        if self.problems:
            return self.problems
        reasons = []
        if self.size and self.mismatched / self.size > tol.mismatch_fraction:
            reasons.append(
                f"{_percent(self.mismatched_percent)} of elements out of tolerance, "
                f"{_percent(100.0 * tol.mismatch_fraction)} allowed"
            )
        if tol.cosine is not None and self.cosine is not None and self.cosine < tol.cosine:
            lowest = f" (the lowest of the slices along axis {tol.cosine_axis})" if tol.cosine_axis is not None else ""
            reasons.append(f"cosine similarity {self.cosine:.9g}{lowest} is below the minimum {tol.cosine:.9g}")
        if tol.topk is not None and self.topk_agreement is not None and self.topk_agreement < 1.0:
            reasons.append(
                f"top-{tol.topk} index sets along axis {tol.topk_axis} agree in only "
                f"{_percent(100.0 * self.topk_agreement)} of slices"
            )
        return tuple(reasons)

    def format(self) -> str:
        """Multi-line report in the style of pytest-regressions failures."""
        if self.problems:
            lines = [f"output {self.name!r}: not compared; expected shape {self.shape}, dtype {self.dtype}"]
            lines += [f"  problem: {problem}" for problem in self.problems]
            lines.append(f"  tolerance: {self.tolerance.describe()}")
            return "\n".join(lines)
        lines = [
            f"output {self.name!r}: {self.mismatched} of {self.size} elements "
            f"({_percent(self.mismatched_percent)}) out of tolerance; shape {self.shape}, dtype {self.dtype}",
            f"  tolerance: {self.tolerance.describe()}",
        ]
        if not self.passed:
            lines += [f"  failed: {reason}" for reason in self.failures]
        stats = self._stats_line()
        if stats:
            lines.append(f"  {stats}")
        lines.append(f"  diagnosis: {self.diagnosis}")
        if self.worst:
            lines.append("  worst elements:")
            lines += [f"      {row}" for row in _table(self.worst)]
        return "\n".join(lines)

    def _stats_line(self) -> str:
        groups = []
        if self.max_abs_error is not None:
            groups.append(f"max abs error {self.max_abs_error:.6g}, mean abs error {self.mean_abs_error:.6g}")
        if self.max_rel_error is not None:
            groups.append(f"max rel error {self.max_rel_error:.6g}, mean rel error {self.mean_rel_error:.6g}")
        if self.max_ulp is not None:
            groups.append(f"max ULP {self.max_ulp}")
        if self.cosine is not None:
            groups.append(f"cosine {self.cosine:.6g}")
        if self.topk_agreement is not None:
            groups.append(f"top-{self.tolerance.topk} agreement {self.topk_agreement:.6g}")
        return "; ".join(groups)


def compare(name: str, obtained: np.ndarray, expected: np.ndarray, tolerance: Tolerance) -> OutputComparison:
    """Compare one output with its golden tensor; never casts either side."""
    o = np.asarray(obtained)
    e = np.asarray(expected)
    if o.dtype.kind in _STRING_KINDS and e.dtype.kind in _STRING_KINDS:
        return _compare_strings(name, o, e, tolerance)
    problems = _problems(o, e, tolerance)
    if problems:
        return _not_compared(name, tolerance, e.shape, e.dtype, problems)
    # Statistics of extreme values overflow float64 to inf, which is what the report should say:
    # no RuntimeWarning (an error under -W error) for them.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        return _compared(name, o, e, tolerance)


def _compared(name: str, o: np.ndarray, e: np.ndarray, tolerance: Tolerance) -> OutputComparison:
    is_float = e.dtype.kind == "f"
    blocks = _Blocks(o, e)
    totals = _Totals()
    for block in blocks:
        totals.add(block, tolerance)

    cosine = agreement = None
    if is_float and e.size:
        if tolerance.cosine_axis is not None:
            cosine = lowest_slice_cosine(o, e, tolerance.cosine_axis)
        else:
            cosine = _cosine(lambda: ((block.ov, block.ev) for block in blocks))
        if tolerance.topk is not None:
            agreement = topk_agreement(o, e, tolerance.topk, tolerance.topk_axis)

    mismatched = totals.mismatched
    passed = (not e.size) or (
        mismatched / e.size <= tolerance.mismatch_fraction
        and (tolerance.cosine is None or cosine is None or cosine >= tolerance.cosine)
        and (agreement is None or agreement == 1.0)
    )
    return OutputComparison(
        name=name,
        passed=bool(passed),
        tolerance=tolerance,
        shape=e.shape,
        dtype=e.dtype.name,
        size=int(e.size),
        mismatched=mismatched,
        max_abs_error=totals.abs_max,
        mean_abs_error=float(totals.abs_sum / totals.finite) if totals.finite else None,
        max_rel_error=totals.rel_max,
        mean_rel_error=float(totals.rel_sum / totals.rel_count) if totals.rel_count else None,
        max_ulp=totals.max_ulp,
        cosine=cosine,
        topk_agreement=agreement,
        worst=_worst_elements(o, e, totals.worst.positions()),
        problems=(),
        # Only a failure needs explaining: a pass that differs is "within tolerance", whatever its size.
        diagnosis=_diagnose(blocks, totals, tolerance) if not passed or not totals.unequal else "within tolerance",
    )


def flat_blocks(*arrays: np.ndarray) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Blocks of equally sized arrays in C order: (flat index of the block's start, one 1-D block per array).

    A block of a C-contiguous array is a view; of any other array, a copy of that
    block only, never of the whole array.
    """
    size = arrays[0].size
    flats = [_flat(array) for array in arrays]
    for start in range(0, size, _BLOCK_ELEMENTS):
        stop = min(start + _BLOCK_ELEMENTS, size)
        yield start, [flat[start:stop] for flat in flats]


class _derived:
    """A block attribute computed on first use and then stored on the block.

    functools.cached_property does the same, but on Python < 3.12 its lock costs
    more than the numpy call it saves.
    """

    def __init__(self, compute: Callable[[_Block], np.ndarray]) -> None:
        self.compute = compute
        self.name = compute.__name__

    def __get__(self, block: _Block, owner: type | None = None) -> np.ndarray:
        value = block.__dict__[self.name] = self.compute(block)
        return value


class _Block:
    """One block of each tensor and what the comparison derives from it, each computed once.

    Statistics, closeness, cosine and diagnosis all need the float64 values, the
    difference or the finite pairs of the same block; computing them once saves
    most of the numpy calls that dominate the cost of comparing small tensors.
    Every pass needs the finite pairs; the rest is computed on first use.
    """

    def __init__(self, start: int, o: np.ndarray, e: np.ndarray) -> None:
        self.start, self.o, self.e = start, o, e
        self.is_float = e.dtype.kind == "f"
        self.o64 = o.astype(np.float64)
        self.e64 = e.astype(np.float64)
        # With no NaN/Inf (never any for integers and bools), the NaN/Inf rules have nothing to do.
        self.all_finite = not self.is_float or np.count_nonzero(self.finite) == self.finite.size
        self.ov = self.finite_only(self.o64)  # the finite pairs in float64
        self.ev = self.finite_only(self.e64)

    def finite_only(self, values: np.ndarray) -> np.ndarray:
        """The elements of values where both sides are finite (values itself if that is all of them)."""
        return values if self.all_finite else values[self.finite]

    @_derived
    def finite(self) -> np.ndarray:
        """Where both sides are finite."""
        return np.isfinite(self.o64) & np.isfinite(self.e64)

    @_derived
    def diff(self) -> np.ndarray:
        return self.o64 - self.e64

    @_derived
    def magnitude(self) -> np.ndarray:
        """|obtained - expected|, in float64 (inf where that overflows)."""
        return np.abs(self.diff)

    @_derived
    def abs_error(self) -> np.ndarray:
        """|obtained - expected| of the finite pairs."""
        return self.finite_only(self.magnitude)

    @_derived
    def abs_e64(self) -> np.ndarray:
        return np.abs(self.e64)

    @_derived
    def ulp(self) -> np.ndarray:
        """ULP distances; meaningless where a side is NaN, which every user masks out."""
        return _ulp_distance(self.o, self.e)


class _Blocks:
    """The blocks of two equally shaped tensors, for several passes over them.

    A tensor of at most one block keeps its block, so what one pass derives from
    it serves the later ones too; a larger tensor is cut anew on each pass, so
    only one block's temporaries are alive at a time.
    """

    def __init__(self, o: np.ndarray, e: np.ndarray) -> None:
        self.o, self.e = o, e
        self._kept = list(self._cut()) if e.size <= _BLOCK_ELEMENTS else None

    def __iter__(self) -> Iterator[_Block]:
        return iter(self._kept) if self._kept is not None else self._cut()

    def _cut(self) -> Iterator[_Block]:
        return (_Block(start, o_block, e_block) for start, (o_block, e_block) in flat_blocks(self.o, self.e))


@dataclass
class _Largest:
    """The largest magnitudes seen so far (at most the worst-table size), largest first, ties by position."""

    positions: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    magnitudes: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))

    def add(self, positions: np.ndarray, magnitudes: np.ndarray) -> None:
        """Fold in candidates given in ascending position."""
        if not positions.size:  # the kept ones are already in order
            return
        if positions.size > _SORT_ALL_UP_TO:
            threshold = np.partition(magnitudes, -_WORST_LIMIT)[-_WORST_LIMIT]
            above = np.flatnonzero(magnitudes > threshold)
            tied = np.flatnonzero(magnitudes == threshold)[: _WORST_LIMIT - above.size]
            keep = np.sort(np.concatenate((above, tied)))
            positions, magnitudes = positions[keep], magnitudes[keep]
        if self.positions.size:
            positions = np.concatenate((self.positions, positions))
            magnitudes = np.concatenate((self.magnitudes, magnitudes))
        order = np.lexsort((positions, -magnitudes))[:_WORST_LIMIT]
        self.positions, self.magnitudes = positions[order], magnitudes[order]


@dataclass
class _WorstSelection:
    """The worst-elements table, chosen block by block.

    NaN/Inf mismatches come first (by position), then other mismatches, then
    in-tolerance differences (both by magnitude).
    """

    non_finite: list[int] = field(default_factory=list)
    mismatches: _Largest = field(default_factory=_Largest)
    differences: _Largest = field(default_factory=_Largest)

    def add(self, start: int, magnitude: np.ndarray, out: np.ndarray, any_out: bool) -> None:
        """Fold in a block given |differences| and where it is out of tolerance (any_out: anywhere at all)."""
        finite = np.isfinite(magnitude)  # not the finite pairs: a difference of finite values can overflow
        if any_out:
            room = _WORST_LIMIT - len(self.non_finite)
            if room > 0:
                self.non_finite += ((out & ~finite).nonzero()[0][:room] + start).tolist()
            mismatches = (out & finite).nonzero()[0]
            self.mismatches.add(mismatches + start, magnitude[mismatches])
            finite &= ~out
        differences = (finite & (magnitude > 0)).nonzero()[0]  # 1-D: the same as np.flatnonzero, cheaper
        self.differences.add(differences + start, magnitude[differences])

    def positions(self) -> list[int]:
        chosen = list(self.non_finite)
        for ranked in (self.mismatches, self.differences):
            chosen += ranked.positions[: _WORST_LIMIT - len(chosen)].tolist()
        return chosen


@dataclass
class _Totals:
    """What one pass over both tensors accumulates for the verdict, the statistics and the diagnosis.

    Sums start from the first block's own sum, so one block gives exactly the
    whole-array figures.
    """

    mismatched: int = 0
    close: int = 0
    unequal: int = 0  # elements that np.array_equal would call different
    obtained_nonzero: bool = False
    expected_nonzero: bool = False
    nan_where_finite: int = 0
    inf_mismatches: int = 0
    nan_mismatches: int = 0
    finite: int = 0
    abs_sum: float = 0.0
    abs_max: float | None = None
    rel_count: int = 0
    rel_sum: float = 0.0
    rel_max: float | None = None
    max_ulp: int | None = None
    worst: _WorstSelection = field(default_factory=_WorstSelection)

    def add(self, block: _Block, tolerance: Tolerance) -> None:
        o, e, is_float = block.o, block.e, block.is_float
        close = _close(block, tolerance)
        within = close | block.finite if is_float and _whole_tensor_only(tolerance) else close
        out = int(within.size - np.count_nonzero(within))
        self.mismatched += out
        self.close += int(np.count_nonzero(close))

        abs_diff = block.abs_error
        abs_expected = block.finite_only(block.abs_e64)
        nonzero = abs_expected > 0
        rel = abs_diff[nonzero] / abs_expected[nonzero]
        self.finite += abs_diff.size
        self.abs_sum += abs_diff.sum()
        self.abs_max = _larger(self.abs_max, abs_diff)
        self.rel_count += rel.size
        self.rel_sum += rel.sum()
        self.rel_max = _larger(self.rel_max, rel)
        if is_float and abs_diff.size:
            # abs_max 0: every finite pair so far is equal, and equal floats (+0 and -0 too) are 0 ULP
            # apart, so identical outputs need no bit twiddling.
            if self.abs_max == 0:
                self.max_ulp = self.max_ulp or 0
            else:
                # ULPs mean something between nonzero values of one sign: across zero they count every
                # float in between (billions for -1e-9 against 1e-9), so those pairs are left out.
                ov, ev = block.ov, block.ev
                same_sign = (np.signbit(ov) == np.signbit(ev)) & (ov != 0) & (ev != 0)
                if np.count_nonzero(same_sign):
                    ulp = int(block.finite_only(block.ulp)[same_sign].max())
                    self.max_ulp = max(self.max_ulp or 0, ulp)
        self.worst.add(block.start, block.magnitude, ~within, out > 0)

        equal = o == e if is_float else close  # for integers and bools, close is o == e
        self.obtained_nonzero = self.obtained_nonzero or np.count_nonzero(o) > 0  # cheaper than any()
        self.expected_nonzero = self.expected_nonzero or np.count_nonzero(e) > 0
        if not block.all_finite:  # else there is no NaN or Inf to count
            nan_o, nan_e = np.isnan(o), np.isnan(e)
            if tolerance.nan_equal:
                equal |= nan_o & nan_e
            self.nan_where_finite += int(np.count_nonzero(nan_o & np.isfinite(e)))
            self.inf_mismatches += int(np.count_nonzero(~close & (np.isinf(o) | np.isinf(e)) & ~nan_o & ~nan_e))
            self.nan_mismatches += int(np.count_nonzero(~close & (nan_o | nan_e)))
        self.unequal += int(equal.size - np.count_nonzero(equal))


def _larger(largest: float | None, values: np.ndarray) -> float | None:
    if not values.size:
        return largest
    block_max = float(values.max())
    return block_max if largest is None else max(largest, block_max)


def compare_outputs(
    obtained: Mapping[str, np.ndarray],
    expected: Mapping[str, np.ndarray],
    tolerance_for: Callable[[str, np.dtype], Tolerance],
    inputs: Mapping[str, np.ndarray] | None = None,
) -> list[OutputComparison]:
    """One comparison per expected output, then one failure per unexpected extra output.

    `inputs` are the run's, for tolerances with a `mask_input`.
    """
    results = []
    for name, golden in expected.items():
        golden = np.asarray(golden)
        tolerance = tolerance_for(name, golden.dtype)
        if name in obtained and tolerance.mask_input is not None:
            results.append(_compare_masked(name, np.asarray(obtained[name]), golden, tolerance, inputs or {}))
        elif name in obtained:
            results.append(compare(name, obtained[name], golden, tolerance))
        else:
            missing = ("missing from the obtained outputs",)
            results.append(_not_compared(name, tolerance, golden.shape, golden.dtype, missing))
    for name, value in obtained.items():
        if name not in expected:
            value = np.asarray(value)
            results.append(
                _not_compared(
                    name,
                    tolerance_for(name, value.dtype),
                    value.shape,
                    value.dtype,
                    ("obtained but not in the expected outputs (no golden tensor)",),
                )
            )
    return results


def _compare_masked(name: str, o: np.ndarray, e: np.ndarray, tolerance: Tolerance,
                    inputs: Mapping[str, np.ndarray]) -> OutputComparison:
    """Compare the positions where the mask input is nonzero (e.g. the real tokens of a padded batch):
    an output whose leading dims are the mask's shape is cut to those positions (its statistics and
    indices are then of the kept rows); any other output is compared whole."""
    if tolerance.mask_input not in inputs:
        return _not_compared(name, tolerance, e.shape, e.dtype,
                             (f"mask_input {tolerance.mask_input!r} is not an input of this run "
                              f"(inputs: {', '.join(inputs) or 'none'})",))
    mask = np.asarray(inputs[tolerance.mask_input]) != 0
    if o.shape != e.shape or e.shape[:mask.ndim] != mask.shape:
        return compare(name, o, e, tolerance)
    return compare(name, o[mask], e[mask], tolerance)


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Units-in-the-last-place between a and b in their own float dtype, as int64.

    Bit patterns are mapped to integers that are monotonic in the float value
    (negative floats are sign-magnitude, so they are flipped), which makes the
    distance a plain subtraction; +0 and -0 both map to 0.  Pairs involving NaN
    get the int64 maximum, and float64 distances beyond int64 are clipped to it.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.dtype != b.dtype or a.dtype not in _ULP_INT_TYPES:
        raise TypeError(
            f"ulp_distance needs two float16, float32 or float64 arrays of one dtype, got {a.dtype} and {b.dtype}"
        )
    a, b = np.broadcast_arrays(a, b)
    shape = a.shape
    a = np.atleast_1d(a)
    b = np.atleast_1d(b)
    distance = _ulp_distance(a, b)
    distance[np.isnan(a) | np.isnan(b)] = _INT64_MAX
    return distance.reshape(shape)


def _ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ulp_distance of two arrays of one float dtype and shape, at least 1-D, unchecked.

    Where a side is NaN the distance is meaningless: internal callers mask NaN out anyway.
    """
    ordered_a = _ordered_bits(a)
    ordered_b = _ordered_bits(b)
    if a.dtype.itemsize < 8:  # float16/32: the distance is below 2**33, plain int64 arithmetic is exact
        distance = np.abs(ordered_a - ordered_b)
    else:
        high = np.maximum(ordered_a, ordered_b).view(np.uint64)
        low = np.minimum(ordered_a, ordered_b).view(np.uint64)
        # Wrap-around uint64 subtraction is exact here: the true distance is < 2**64.
        distance = np.minimum(high - low, np.uint64(_INT64_MAX)).astype(np.int64)
    return distance


def cosine_similarity(a, b) -> float:
    """Cosine of the flattened tensors in float64; 1.0 if both are all zeros, 0.0 if one is.

    Each side is divided by its largest magnitude first (cosine is scale
    invariant) so that large float64 values cannot overflow the norms.
    Non-finite input gives NaN.
    """
    x = np.asarray(a)
    y = np.asarray(b)
    if x.size != y.size:
        raise ValueError(f"cosine_similarity needs equal sizes, got {x.size} and {y.size}")
    with np.errstate(invalid="ignore", divide="ignore"):
        return _cosine(lambda: ((xb.astype(np.float64), yb.astype(np.float64)) for _, (xb, yb) in flat_blocks(x, y)))


def _cosine(pairs: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]) -> float:
    """Cosine over blocks of float64 pairs: one pass finds the scales, a second sums the products."""
    x_scale = y_scale = np.float64(0.0)
    for x, y in pairs():
        x_scale = np.maximum(x_scale, np.abs(x).max(initial=0.0))  # np.maximum keeps a NaN
        y_scale = np.maximum(y_scale, np.abs(y).max(initial=0.0))
    if x_scale == 0 and y_scale == 0:
        return 1.0
    if x_scale == 0 or y_scale == 0:
        return 0.0
    dot = x_squares = y_squares = np.float64(0.0)
    for x, y in pairs():
        x = x / x_scale
        y = y / y_scale
        dot += _dot(x, y)
        x_squares += _dot(x, x)
        y_squares += _dot(y, y)
    value = dot / (np.sqrt(x_squares) * np.sqrt(y_squares))
    return min(max(float(value), -1.0), 1.0) if np.isfinite(value) else float("nan")  # np.clip is slow


def _dot(x: np.ndarray, y: np.ndarray) -> np.float64:
    """Sum of products of two 1-D blocks without BLAS: OpenBLAS's threads make np.dot of a 64K block take
    3 ms instead of 12 us when the cores are busy (a browser beside the tests), einsum takes 20 us."""
    return np.einsum("i,i->", x, y)


def lowest_slice_cosine(obtained, expected, axis: int = -1) -> float:
    """The lowest cosine similarity of the slices along `axis` (each token's hidden vector of a
    [batch, sequence, hidden] output with axis -1), in float64; a pair of all-zero slices counts 1.0,
    one all-zero slice 0.0, NaN if a slice holds NaN or Inf."""
    o = np.moveaxis(np.atleast_1d(np.asarray(obtained)), axis, -1)
    e = np.moveaxis(np.atleast_1d(np.asarray(expected)), axis, -1)
    lowest = 1.0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for rows_o, rows_e in zip(_row_blocks(o), _row_blocks(e)):
            x, y = rows_o.astype(np.float64), rows_e.astype(np.float64)
            x_scale = np.abs(x).max(axis=1, keepdims=True)
            y_scale = np.abs(y).max(axis=1, keepdims=True)
            x, y = x / np.where(x_scale > 0, x_scale, 1.0), y / np.where(y_scale > 0, y_scale, 1.0)
            value = (x * y).sum(axis=1) / (np.sqrt((x * x).sum(axis=1)) * np.sqrt((y * y).sum(axis=1)))
            both_zero, one_zero = (x_scale == 0) & (y_scale == 0), (x_scale == 0) ^ (y_scale == 0)
            value = np.where(both_zero[:, 0], 1.0, np.where(one_zero[:, 0], 0.0, value))
            if not np.all(np.isfinite(value)):
                return float("nan")
            lowest = min(lowest, float(value.min(initial=1.0)))
    return min(max(lowest, -1.0), 1.0)


def topk_agreement(obtained, expected, k, axis=-1) -> float:
    """Fraction of slices along axis whose k largest indices are the same set.

    Ties are broken by position (stable sort), identically for both sides.
    An empty tensor agrees vacuously (1.0).  Slices are sorted a block of them
    at a time; one slice longer than a block is sorted whole.
    """
    o = np.atleast_1d(np.asarray(obtained))
    e = np.atleast_1d(np.asarray(expected))
    if o.shape != e.shape:
        raise ValueError(f"topk_agreement needs equal shapes, got {o.shape} and {e.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    o = np.moveaxis(o, axis, -1)
    e = np.moveaxis(e, axis, -1)
    if e.size == 0:
        return 1.0
    agreeing = 0
    for rows_o, rows_e in zip(_row_blocks(o), _row_blocks(e)):
        top_o = np.sort(np.argsort(rows_o, axis=-1, kind="stable")[:, ::-1][:, :k], axis=-1)
        top_e = np.sort(np.argsort(rows_e, axis=-1, kind="stable")[:, ::-1][:, :k], axis=-1)
        agreeing += int(np.count_nonzero(np.all(top_o == top_e, axis=-1)))
    return agreeing / (e.size // e.shape[-1])


def _row_blocks(array: np.ndarray) -> Iterator[np.ndarray]:
    """The slices along the last axis, as 2-D blocks of about a block's elements each."""
    leading, length = array.shape[:-1], array.shape[-1]
    rows = math.prod(leading)
    rows_per_block = max(1, _BLOCK_ELEMENTS // length)
    for start in range(0, rows, rows_per_block):
        stop = min(start + rows_per_block, rows)
        index = np.unravel_index(np.arange(start, stop), leading) if leading else ()
        yield array[index].reshape(stop - start, length)


def _ordered_bits(x: np.ndarray) -> np.ndarray:
    """Float bits as int64 that sort like the floats (sign-magnitude to two's complement)."""
    bits = x.view(_ULP_INT_TYPES[x.dtype]).astype(np.int64)
    # For a negative float, bits = MIN + magnitude; MIN - bits = -magnitude fits in int64.
    return np.where(bits < 0, _ULP_INT_MIN[x.dtype] - bits, bits)


def _compare_strings(name: str, o: np.ndarray, e: np.ndarray, tolerance: Tolerance) -> OutputComparison:
    """String tensors (ONNX's string type) compare exactly, element by element."""
    if o.shape != e.shape:
        return _not_compared(name, tolerance, e.shape, e.dtype, (f"shape mismatch: obtained {o.shape}, expected {e.shape}",))
    as_text = np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else str(v), otypes=[object])
    differs = as_text(o) != as_text(e) if e.size else np.zeros(e.shape, bool)
    mismatched = int(np.count_nonzero(differs))
    worst = tuple(WorstElement(tuple(int(i) for i in index), o[index], e[index], float("nan"))
                  for index in zip(*np.nonzero(differs)))[:_WORST_LIMIT] if e.ndim else ()
    first = worst[0].index if worst else ()
    return OutputComparison(
        name=name, passed=(not e.size) or mismatched / e.size <= tolerance.mismatch_fraction, tolerance=tolerance,
        shape=e.shape, dtype="string", size=int(e.size), mismatched=mismatched, max_abs_error=None,
        mean_abs_error=None, max_rel_error=None, mean_rel_error=None, max_ulp=None, cosine=None,
        topk_agreement=None, worst=worst, problems=(),
        diagnosis=f"{mismatched} of {e.size} strings differ, the first at index {first}" if mismatched else "identical",
    )


def _problems(o: np.ndarray, e: np.ndarray, tolerance: Tolerance) -> tuple[str, ...]:
    """Reasons the two tensors cannot be compared element by element at all."""
    problems = []
    if o.shape != e.shape:
        problems.append(f"shape mismatch: obtained {o.shape}, expected {e.shape}")
    if o.dtype != e.dtype:
        problems.append(f"dtype mismatch: obtained {o.dtype.name}, expected {e.dtype.name}")
    elif e.dtype.kind not in "biu" and e.dtype not in _ULP_INT_TYPES:
        problems.append(
            f"unsupported dtype {e.dtype.name}: only bool, integer and float16/32/64 tensors are compared"
        )
    elif e.dtype.kind == "f" and not problems:
        ndim = max(e.ndim, 1)
        for field, axis in (("topk_axis", tolerance.topk_axis if tolerance.topk is not None else None),
                            ("cosine_axis", tolerance.cosine_axis)):
            if axis is not None and not -ndim <= axis < ndim:
                problems.append(f"{field} {axis} is out of range for shape {e.shape}")
    return tuple(problems)


def _not_compared(name, tolerance, shape, dtype, problems) -> OutputComparison:
    size = int(np.prod(shape, dtype=np.int64))
    return OutputComparison(
        name=name,
        passed=False,
        tolerance=tolerance,
        shape=tuple(shape),
        dtype=np.dtype(dtype).name,
        size=size,
        mismatched=size,
        max_abs_error=None,
        mean_abs_error=None,
        max_rel_error=None,
        mean_rel_error=None,
        max_ulp=None,
        cosine=None,
        topk_agreement=None,
        worst=(),
        problems=tuple(problems),
        diagnosis="not compared: " + "; ".join(problems),
    )


def _has_elementwise(tolerance: Tolerance) -> bool:
    return not tolerance.exact and (
        tolerance.atol is not None or tolerance.rtol is not None or tolerance.ulp is not None
    )


def _whole_tensor_only(tolerance: Tolerance) -> bool:
    """Only cosine/top-k set: finite drift is judged by them, not by exact equality."""
    return (
        not tolerance.exact
        and not _has_elementwise(tolerance)
        and (tolerance.cosine is not None or tolerance.topk is not None)
    )


def _close(block: _Block, tolerance: Tolerance) -> np.ndarray:
    """Element-wise closeness under the tolerance's element-wise rule and NaN/Inf policy.

    With no element-wise criterion this is equality, which is also what the
    diagnosis uses to locate differences for whole-tensor-only tolerances.
    Runs under compare's errstate (overflow and NaN are expected here).
    """
    o, e = block.o, block.e
    if not block.is_float:
        return o == e
    if _has_elementwise(tolerance):
        if tolerance.atol is not None or tolerance.rtol is not None:
            ok = block.magnitude <= (tolerance.atol or 0.0) + (tolerance.rtol or 0.0) * block.abs_e64
        else:
            ok = np.zeros(e.shape, dtype=bool)
        if tolerance.ulp is not None:
            ok |= block.ulp <= tolerance.ulp
    else:
        ok = o == e
    if not block.all_finite:
        # Infinities must match exactly (same sign); NaN never equals anything here.
        ok = np.where(block.finite, ok, o == e)
        if tolerance.nan_equal:
            ok |= np.isnan(o) & np.isnan(e)
    return ok


def _worst_elements(o: np.ndarray, e: np.ndarray, positions: list[int]) -> tuple[WorstElement, ...]:
    """The table rows at the given flat positions, gathered with one numpy call per column."""
    if not positions:
        return ()
    at = np.array(positions, np.int64)
    indices = zip(*(i.tolist() for i in np.unravel_index(at, e.shape))) if e.ndim else [()] * at.size
    obtained, expected = _flat(o)[at], _flat(e)[at]
    differences = obtained.astype(np.float64) - expected.astype(np.float64)
    return tuple(
        WorstElement(index=tuple(index), obtained=ov, expected=ev, difference=difference)
        for index, ov, ev, difference in zip(indices, obtained.tolist(), expected.tolist(), differences.tolist())
    )


def _diagnose(blocks: _Blocks, totals: _Totals, tolerance: Tolerance) -> str:
    """One line telling harmless (float16/GPU) drift from a real break."""
    o, e = blocks.o, blocks.e
    is_float = e.dtype.kind == "f"
    if not totals.unequal:
        return "identical"
    if not totals.obtained_nonzero and totals.expected_nonzero:
        return (
            "obtained is all zeros (expected is not): the EP likely returned an uninitialised buffer, "
            "e.g. float16 on a GPU without shader-f16"
        )
    if is_float:
        if totals.nan_where_finite:
            return f"NaN in obtained where expected is finite ({_elements(totals.nan_where_finite)})"
        if totals.inf_mismatches:
            return f"Inf mismatch ({_elements(totals.inf_mismatches)})"
        if totals.nan_mismatches:
            return f"NaN mismatch ({_elements(totals.nan_mismatches)})"
    if e.size > 1 and totals.close < e.size and _same_values(o, e, tolerance):
        return "a permutation of the expected values (same values, different order)"

    explained = _offset_or_scale(blocks, np.finfo(e.dtype).eps if is_float else 0.0)
    if explained:
        return explained
    if is_float:
        drift = _float16_drift(blocks, _root_mean_square(blocks, lambda ov, ev: ev, max(1, totals.finite)))
        if drift <= _FLOAT16_DRIFT_ULP:
            return f"float16-rounding-sized drift (max {drift} ULP in float16)"
    error, position = _largest_finite_error(blocks)
    index = tuple(int(i) for i in np.unravel_index(position, e.shape))
    prefix = "errors larger than float16 rounding" if is_float else "values differ"
    return f"{prefix}: max abs error {error:.6g} at index {index}"


def _float16_drift(blocks: _Blocks, scale: float) -> int:
    """Largest error of the finite pairs in float16 ULPs of the larger of the pair's magnitudes and `scale`.

    A model computing in float16 rounds its intermediates, whose size is about the outputs' typical
    magnitude (`scale`, their RMS): near zero its errors are that size, not ULPs of the tiny value
    itself (counted in those, 1e-4 against 3e-4 is 3,000 float16 ULPs). Measured this way the ULPs
    mean the same across zero too.
    """
    drift = 0.0
    floor = np.float64(scale)
    for block in blocks:
        if block.ov.size:
            magnitude = np.maximum(np.maximum(np.abs(block.ov), np.abs(block.ev)), floor)
            spacing = np.spacing(np.minimum(magnitude, 65504.0).astype(np.float16)).astype(np.float64)
            drift = max(drift, float((np.abs(block.ov - block.ev) / spacing).max()))
    return math.ceil(drift) if math.isfinite(drift) else _INT64_MAX


def _largest_finite_error(blocks: _Blocks) -> tuple[float, int]:
    """The largest |obtained - expected| among finite pairs and the flat position of its first occurrence."""
    largest, position = -1.0, 0
    for block in blocks:
        magnitude = block.abs_error
        if magnitude.size:
            at = int(np.argmax(magnitude))
            if magnitude[at] > largest:
                largest, position = float(magnitude[at]), block.start + int(np.flatnonzero(block.finite)[at])
    return largest, position


def _same_values(o: np.ndarray, e: np.ndarray, tolerance: Tolerance) -> bool:
    """Whether the sorted values agree under the tolerance, whatever their positions.

    Sorting copies both tensors, so one larger than a block is judged by its
    distribution instead (:func:`_same_distribution`).
    """
    if e.size <= _BLOCK_ELEMENTS:
        return bool(_close(_Block(0, np.sort(o, axis=None), np.sort(e, axis=None)), tolerance).all())
    return _same_distribution(o, e, tolerance)


def _same_distribution(o: np.ndarray, e: np.ndarray, tolerance: Tolerance) -> bool:
    """Whether sorted obtained is close to sorted expected, judged from counts in one pass.

    If each sorted pair is within s(x), the error allowed at x, then for every x
    #(o <= x - s) <= #(e <= x) <= #(o <= x + s), and the same with o and e
    swapped.  This is checked at values sampled from both sides (every value
    when the sample is the whole tensor); the counts of -inf, +inf and NaN
    must agree.
    """
    step = max(1, e.size // _PERMUTATION_SAMPLE)
    sample = np.concatenate((_strided(o, step), _strided(e, step))).astype(np.float64)
    points = np.unique(sample[np.isfinite(sample)])
    slack = _allowed_error(points, e.dtype, tolerance)
    infinities = np.array([-np.inf, np.finfo(np.float64).max, np.inf])
    edges = np.unique(np.concatenate((points - slack, points, points + slack, infinities)))
    at_most_o, at_most_e = (_counts_at_most(side, edges) for side in (o, e))

    def at(values: np.ndarray) -> np.ndarray:
        return np.searchsorted(edges, values)

    if not np.array_equal(at_most_o[at(infinities)], at_most_e[at(infinities)]):
        return False
    if not tolerance.nan_equal and at_most_e[-1] < e.size:  # NaN is never close then
        return False
    below, middle, above = at(points - slack), at(points), at(points + slack)
    return all(
        np.all(one[below] <= other[middle]) and np.all(other[middle] <= one[above])
        for one, other in ((at_most_o, at_most_e), (at_most_e, at_most_o))
    )


def _strided(array: np.ndarray, step: int) -> np.ndarray:
    return _flat(array)[::step]


def _flat(array: np.ndarray):
    """The elements in C order without copying the array: a view, or a flat iterator that slices and indexes."""
    return array.reshape(-1) if array.flags.c_contiguous else array.flat


def _allowed_error(points: np.ndarray, dtype: np.dtype, tolerance: Tolerance) -> np.ndarray:
    """How far a value may be from an expected value at each point and still be close."""
    allowed = np.zeros_like(points)
    if dtype.kind != "f" or not _has_elementwise(tolerance):
        return allowed
    if tolerance.atol is not None or tolerance.rtol is not None:
        allowed = (tolerance.atol or 0.0) + (tolerance.rtol or 0.0) * np.abs(points)
    if tolerance.ulp is not None:
        spacing = np.spacing(np.abs(points).astype(dtype)).astype(np.float64)
        allowed = np.maximum(allowed, tolerance.ulp * spacing)
    return allowed


def _counts_at_most(array: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """For each edge, how many elements are <= it (NaN is counted by none)."""
    counts = np.zeros(edges.size, np.int64)
    for _, (block,) in flat_blocks(array):
        counts += np.searchsorted(np.sort(block.astype(np.float64)), edges, side="right")  # NaN sorts last
    return counts


def _offset_or_scale(blocks: _Blocks, eps: float) -> str | None:
    """Name a nearly constant offset or scale between obtained and expected, if there is one.

    "Nearly constant" means the fit leaves less than 1 % of the effect
    unexplained, plus the rounding noise of the dtype (a couple of eps of the
    expected values' RMS), so rounding alone never looks like an offset.
    Only finite pairs take part.
    """
    count = 0
    difference_sum = square_sum = energy = product = 0.0
    for block in blocks:
        ov, ev = block.ov, block.ev
        count += ov.size
        difference_sum += (ov - ev).sum()
        square_sum += (ev * ev).sum()
        energy += _dot(ev, ev)
        product += _dot(ov, ev)
    if count < 2:
        return None
    rms_expected = float(np.sqrt(square_sum / count))
    noise = 2.0 * eps * rms_expected
    offset = float(difference_sum / count)
    if abs(offset) > noise:
        spread = _root_mean_square(blocks, lambda ov, ev: ov - ev - offset, count)
        if spread <= _FIT_RELATIVE_SPREAD * abs(offset) + noise:
            return f"constant offset of {offset:.6g}"
    if energy > 0:
        scale = float(product) / float(energy)
        effect = abs(scale - 1.0) * rms_expected
        if effect > noise:
            residual = _root_mean_square(blocks, lambda ov, ev: ov - scale * ev, count)
            if residual <= _FIT_RELATIVE_SPREAD * effect + noise:
                return f"scaled by {scale:.6g}"
    return None


def _root_mean_square(blocks: _Blocks, residual: Callable, count: int) -> float:
    """RMS of residual(obtained, expected) over the finite pairs."""
    total = 0.0
    for block in blocks:
        value = residual(block.ov, block.ev)
        total += (value * value).sum()
    return float(np.sqrt(total / count))


def _elements(count: int) -> str:
    return f"{count} element" if count == 1 else f"{count} elements"


def _percent(value: float) -> str:
    """Two decimals, but never round a small nonzero share down to 0.00%."""
    return f"{value:.2g}%" if 0 < value < 0.01 else f"{value:.2f}%"


def _cell(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else repr(value) if isinstance(value, (str, bytes)) else str(value)


def _table(worst: tuple[WorstElement, ...]) -> list[str]:
    """Aligned rows: index left-aligned, numbers right-aligned."""
    header = ("index", "obtained", "expected", "difference")
    rows = [(str(w.index), _cell(w.obtained), _cell(w.expected), _cell(w.difference)) for w in worst]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(4)]
    lines = []
    for row in (header, *rows):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        lines.append("    ".join(cells))
    return lines
