"""Compare model outputs with golden tensors and explain the difference.

A browser execution provider (wasm, WebGPU, WebNN) never reproduces a golden
tensor bit for bit: GPUs reorder reductions, fuse operations and may compute in
float16.  A bare "arrays not close" assertion cannot tell that harmless drift
from a real break (a wrong weight, a transposed output, an uninitialised GPU
buffer).  This module decides pass/fail under an explicit :class:`Tolerance`
and produces the statistics, worst elements and a one-line diagnosis that make
a failure readable.  It is pure numpy so it can be tested, and reused by the
CLI, without pytest or a browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

__all__ = [
    "Tolerance",
    "WorstElement",
    "OutputComparison",
    "compare",
    "compare_outputs",
    "ulp_distance",
    "cosine_similarity",
    "topk_agreement",
]

_WORST_LIMIT = 10
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
    topk: int | None = None
    topk_axis: int = -1
    mismatch_fraction: float = 0.0
    nan_equal: bool = True
    exact: bool = False
    source: str = "built-in default"

    def __post_init__(self) -> None:
        """Reject settings that would silently make every comparison pass or fail."""
        for field in ("atol", "rtol", "ulp"):
            value = getattr(self, field)
            if value is not None and value < 0:
                raise ValueError(f"{field} must be >= 0, got {value}")
        if self.topk is not None and self.topk < 1:
            raise ValueError(f"topk must be >= 1, got {self.topk}")
        if not 0.0 <= self.mismatch_fraction <= 1.0:
            raise ValueError(f"mismatch_fraction must be in [0, 1], got {self.mismatch_fraction}")

    def describe(self) -> str:
        """Only the fields that are set, plus where the tolerance came from."""
        parts = []
        if self.exact:
            parts.append("exact")
        for field in ("atol", "rtol", "ulp", "cosine", "topk"):
            value = getattr(self, field)
            if value is not None:
                parts.append(f"{field}={value:g}")
        if self.topk is not None and self.topk_axis != -1:
            parts.append(f"topk_axis={self.topk_axis}")
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
            reasons.append(f"cosine similarity {self.cosine:.9g} is below the minimum {tol.cosine:.9g}")
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
    close = _close(o, e, tolerance)
    if is_float and _whole_tensor_only(tolerance):
        within = close | (np.isfinite(o) & np.isfinite(e))
    else:
        within = close
    mismatched = int(e.size - np.count_nonzero(within))

    o64 = o.astype(np.float64)
    e64 = e.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = o64 - e64
    finite = np.isfinite(o64) & np.isfinite(e64)
    abs_diff = np.abs(diff[finite])
    abs_expected = np.abs(e64[finite])
    nonzero = abs_expected > 0
    rel = abs_diff[nonzero] / abs_expected[nonzero]

    max_ulp = cosine = agreement = None
    if is_float and e.size:
        if finite.any():
            max_ulp = int(ulp_distance(o[finite], e[finite]).max())
        cosine = cosine_similarity(o64[finite], e64[finite])
        if tolerance.topk is not None:
            agreement = topk_agreement(o, e, tolerance.topk, tolerance.topk_axis)

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
        max_abs_error=float(abs_diff.max()) if abs_diff.size else None,
        mean_abs_error=float(abs_diff.mean()) if abs_diff.size else None,
        max_rel_error=float(rel.max()) if rel.size else None,
        mean_rel_error=float(rel.mean()) if rel.size else None,
        max_ulp=max_ulp,
        cosine=cosine,
        topk_agreement=agreement,
        worst=_worst(o, e, diff, ~within),
        problems=(),
        diagnosis=_diagnose(o, e, o64, e64, diff, finite, close, tolerance),
    )


def compare_outputs(
    obtained: Mapping[str, np.ndarray],
    expected: Mapping[str, np.ndarray],
    tolerance_for: Callable[[str, np.dtype], Tolerance],
) -> list[OutputComparison]:
    """One comparison per expected output, then one failure per unexpected extra output."""
    results = []
    for name, golden in expected.items():
        golden = np.asarray(golden)
        tolerance = tolerance_for(name, golden.dtype)
        if name in obtained:
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
    ordered_a = _ordered_bits(a)
    ordered_b = _ordered_bits(b)
    high = np.maximum(ordered_a, ordered_b).view(np.uint64)
    low = np.minimum(ordered_a, ordered_b).view(np.uint64)
    # Wrap-around uint64 subtraction is exact here: the true distance is < 2**64.
    distance = np.minimum(high - low, np.uint64(_INT64_MAX)).astype(np.int64)
    distance[np.isnan(a) | np.isnan(b)] = _INT64_MAX
    return distance.reshape(shape)


def cosine_similarity(a, b) -> float:
    """Cosine of the flattened tensors in float64; 1.0 if both are all zeros, 0.0 if one is.

    Each side is divided by its largest magnitude first (cosine is scale
    invariant) so that large float64 values cannot overflow the norms.
    Non-finite input gives NaN.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.size != y.size:
        raise ValueError(f"cosine_similarity needs equal sizes, got {x.size} and {y.size}")
    with np.errstate(invalid="ignore", divide="ignore"):
        x_scale = np.max(np.abs(x), initial=0.0)
        y_scale = np.max(np.abs(y), initial=0.0)
        if x_scale == 0 and y_scale == 0:
            return 1.0
        if x_scale == 0 or y_scale == 0:
            return 0.0
        x = x / x_scale
        y = y / y_scale
        value = np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y))
    return float(np.clip(value, -1.0, 1.0)) if np.isfinite(value) else float("nan")


def topk_agreement(obtained, expected, k, axis=-1) -> float:
    """Fraction of slices along axis whose k largest indices are the same set.

    Ties are broken by position (stable sort), identically for both sides.
    An empty tensor agrees vacuously (1.0).
    """
    o = np.atleast_1d(np.asarray(obtained))
    e = np.atleast_1d(np.asarray(expected))
    if o.shape != e.shape:
        raise ValueError(f"topk_agreement needs equal shapes, got {o.shape} and {e.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    o = np.moveaxis(o, axis, -1)
    e = np.moveaxis(e, axis, -1)
    length = e.shape[-1]
    if e.size == 0:
        return 1.0
    rows_o = o.reshape(-1, length)
    rows_e = e.reshape(-1, length)
    top_o = np.sort(np.argsort(rows_o, axis=-1, kind="stable")[:, ::-1][:, :k], axis=-1)
    top_e = np.sort(np.argsort(rows_e, axis=-1, kind="stable")[:, ::-1][:, :k], axis=-1)
    return float(np.mean(np.all(top_o == top_e, axis=-1)))


def _ordered_bits(x: np.ndarray) -> np.ndarray:
    """Float bits as int64 that sort like the floats (sign-magnitude to two's complement)."""
    int_type = _ULP_INT_TYPES[x.dtype]
    bits = x.view(int_type).astype(np.int64)
    # For a negative float, bits = MIN + magnitude; MIN - bits = -magnitude fits in int64.
    return np.where(bits < 0, np.int64(np.iinfo(int_type).min) - bits, bits)


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
    elif e.dtype.kind == "f" and tolerance.topk is not None and not problems:
        ndim = max(e.ndim, 1)
        if not -ndim <= tolerance.topk_axis < ndim:
            problems.append(f"topk_axis {tolerance.topk_axis} is out of range for shape {e.shape}")
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


def _close(o: np.ndarray, e: np.ndarray, tolerance: Tolerance) -> np.ndarray:
    """Element-wise closeness under the tolerance's element-wise rule and NaN/Inf policy.

    With no element-wise criterion this is equality, which is also what the
    diagnosis uses to locate differences for whole-tensor-only tolerances.
    """
    if e.dtype.kind != "f":
        return o == e
    with np.errstate(invalid="ignore", over="ignore"):
        if _has_elementwise(tolerance):
            ok = np.zeros(e.shape, dtype=bool)
            if tolerance.atol is not None or tolerance.rtol is not None:
                o64 = o.astype(np.float64)
                e64 = e.astype(np.float64)
                bound = (tolerance.atol or 0.0) + (tolerance.rtol or 0.0) * np.abs(e64)
                ok |= np.abs(o64 - e64) <= bound
            if tolerance.ulp is not None:
                ok |= ulp_distance(o, e) <= tolerance.ulp
        else:
            ok = o == e
        finite = np.isfinite(o) & np.isfinite(e)
        # Infinities must match exactly (same sign); NaN never equals anything here.
        ok = np.where(finite, ok, o == e)
    if tolerance.nan_equal:
        ok |= np.isnan(o) & np.isnan(e)
    return ok


def _worst(o: np.ndarray, e: np.ndarray, diff: np.ndarray, out: np.ndarray) -> tuple[WorstElement, ...]:
    """Up to 10 elements: NaN/Inf mismatches, then other mismatches, then in-tolerance differences."""
    flat_diff = diff.ravel()
    flat_out = out.ravel()
    with np.errstate(invalid="ignore"):
        magnitude = np.abs(flat_diff)
    finite = np.isfinite(magnitude)
    tiers = (
        flat_out & ~finite,
        flat_out & finite,
        ~flat_out & finite & (magnitude > 0),
    )
    chosen: list[int] = []
    for tier, ranked in zip(tiers, (False, True, True)):
        room = _WORST_LIMIT - len(chosen)
        if room <= 0:
            break
        candidates = np.flatnonzero(tier)
        if ranked and candidates.size:
            if candidates.size > room:
                candidates = np.sort(candidates[np.argpartition(-magnitude[candidates], room - 1)[:room]])
            candidates = candidates[np.argsort(-magnitude[candidates], kind="stable")]
        chosen.extend(candidates[:room].tolist())
    flat_o = o.ravel()
    flat_e = e.ravel()
    return tuple(
        WorstElement(
            index=tuple(int(i) for i in np.unravel_index(i, e.shape)),
            obtained=flat_o[i].item(),
            expected=flat_e[i].item(),
            difference=float(flat_diff[i]),
        )
        for i in chosen
    )


def _diagnose(o, e, o64, e64, diff, finite, close, tolerance: Tolerance) -> str:
    """One line telling harmless (float16/GPU) drift from a real break."""
    is_float = e.dtype.kind == "f"
    if np.array_equal(o, e, equal_nan=tolerance.nan_equal and is_float):
        return "identical"
    if not o.any() and e.any():
        return (
            "obtained is all zeros (expected is not): the EP likely returned an uninitialised buffer, "
            "e.g. float16 on a GPU without shader-f16"
        )
    if is_float:
        nan_o, nan_e = np.isnan(o), np.isnan(e)
        count = np.count_nonzero(nan_o & np.isfinite(e))
        if count:
            return f"NaN in obtained where expected is finite ({_elements(count)})"
        count = np.count_nonzero(~close & (np.isinf(o) | np.isinf(e)) & ~nan_o & ~nan_e)
        if count:
            return f"Inf mismatch ({_elements(count)})"
        count = np.count_nonzero(~close & (nan_o | nan_e))
        if count:
            return f"NaN mismatch ({_elements(count)})"
    if e.size > 1 and not close.all() and _same_values(o, e, tolerance):
        return "a permutation of the expected values (same values, different order)"

    d, ov, ev = diff[finite], o64[finite], e64[finite]
    explained = _offset_or_scale(d, ov, ev, np.finfo(e.dtype).eps if is_float else 0.0)
    if explained:
        return explained
    if is_float:
        with np.errstate(over="ignore"):
            drift = int(ulp_distance(o[finite].astype(np.float16), e[finite].astype(np.float16)).max())
        if drift <= _FLOAT16_DRIFT_ULP:
            return f"float16-rounding-sized drift (max {drift} ULP in float16)"
    worst = int(np.argmax(np.abs(d)))
    index = tuple(int(i) for i in np.unravel_index(np.flatnonzero(finite)[worst], e.shape))
    prefix = "errors larger than float16 rounding" if is_float else "values differ"
    return f"{prefix}: max abs error {abs(d[worst]):.6g} at index {index}"


def _same_values(o: np.ndarray, e: np.ndarray, tolerance: Tolerance) -> bool:
    """Whether the sorted values agree under the tolerance, whatever their positions."""
    return bool(_close(np.sort(o, axis=None), np.sort(e, axis=None), tolerance).all())


def _offset_or_scale(d: np.ndarray, ov: np.ndarray, ev: np.ndarray, eps: float) -> str | None:
    """Name a nearly constant offset or scale between obtained and expected, if there is one.

    "Nearly constant" means the fit leaves less than 1 % of the effect
    unexplained, plus the rounding noise of the dtype (a couple of eps of the
    expected values' RMS), so rounding alone never looks like an offset.
    """
    if d.size < 2:
        return None
    rms_expected = float(np.sqrt(np.mean(ev * ev)))
    noise = 2.0 * eps * rms_expected
    offset = float(d.mean())
    if abs(offset) > noise and float(d.std()) <= _FIT_RELATIVE_SPREAD * abs(offset) + noise:
        return f"constant offset of {offset:.6g}"
    energy = float(ev @ ev)
    if energy > 0:
        scale = float(ov @ ev) / energy
        effect = abs(scale - 1.0) * rms_expected
        residual = float(np.sqrt(np.mean((ov - scale * ev) ** 2)))
        if effect > noise and residual <= _FIT_RELATIVE_SPREAD * effect + noise:
            return f"scaled by {scale:.6g}"
    return None


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
