"""Where a graph's values first leave the reference: pure numpy, no browser, no pytest.

Given the graph's nodes in topological order and, for as many of its values as
could be exposed, what an EP computed and what native onnxruntime computed,
this walks the graph, compares each value within the tolerance of its dtype
(compare.py, in blocks) and names the first nodes whose output is out of
tolerance while every input is within: the nodes where the break is born, not
the ones it merely flows through. Each break is classified (overflow past the
dtype's range, NaN/Inf born here, all zeros, precision-sized drift that grew
along a chain, or values a kernel got wrong), since each points at a different
cause and fix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .compare import OutputComparison, Tolerance, compare

__all__ = ["GraphNode", "NodeFigures", "Divergence", "Localisation", "find_divergences", "classify"]

WITHIN, OUT, NOT_COMPARED = "within", "out", "not compared"
OVERFLOW, NAN_INF, ZEROS, DRIFT, WRONG = "overflow", "NaN/Inf", "zeros", "drift", "wrong values"
# A value out of tolerance by at most this many ULPs of its own dtype is rounding (that accumulated along
# a chain, or that one op's tolerance is too tight for), not a kernel computing something else.
DRIFT_ULP = {"float16": 16, "float32": 2048, "float64": 1 << 20}
# An error at most this many times its inputs' (absolute or relative) is theirs carried on, e.g. a subtraction
# that cancels what the operands agree on: rounding that grew, not a kernel computing something else.
_CARRIED = 16
# An Inf facing a finite value at least this share of the dtype's largest is an overflow, not a division by zero.
_OVERFLOW_SHARE = 1 / 64
_SHOWN = 3  # divergences named in the failure text


@dataclass(frozen=True)
class GraphNode:
    """One node of the main graph, at its topological position."""

    index: int
    name: str
    op_type: str
    inputs: tuple[str, ...]  # "" for an omitted optional input
    outputs: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.op_type} {self.name!r}" if self.name else f"{self.op_type} (unnamed node {self.index})"


@dataclass(frozen=True)
class NodeFigures:
    """How far one node's outputs are from the reference: a point of the per-node error plot."""

    index: int
    name: str
    op_type: str
    status: str  # within, out, not compared
    max_abs_error: float | None
    max_rel_error: float | None
    max_ulp: int | None
    mismatched_percent: float | None

    def to_json(self) -> dict:
        return {"index": self.index, "name": self.name, "op_type": self.op_type, "status": self.status,
                "max_abs_error": self.max_abs_error, "max_rel_error": self.max_rel_error, "max_ulp": self.max_ulp,
                "mismatched_percent": self.mismatched_percent}


@dataclass(frozen=True)
class Divergence:
    """A node whose output left tolerance while all its inputs were within it."""

    node: GraphNode
    value: str
    kind: str  # OVERFLOW, NAN_INF, ZEROS, DRIFT or WRONG
    detail: str
    comparison: OutputComparison

    def describe(self, node_count: int) -> str:
        return (f"node {self.node.index + 1} of {node_count}, {self.node.describe()}, output {self.value!r}: "
                f"{self.kind}: {self.detail}")

    def to_json(self) -> dict:
        c = self.comparison
        return {"index": self.node.index, "name": self.node.name, "op_type": self.node.op_type, "value": self.value,
                "kind": self.kind, "detail": self.detail, "max_abs_error": c.max_abs_error,
                "max_rel_error": c.max_rel_error, "max_ulp": c.max_ulp, "mismatched_percent": c.mismatched_percent,
                "tolerance": c.tolerance.describe()}


@dataclass(frozen=True)
class Localisation:
    """The per-node figures along the graph, the first divergences, and what limits them (notes)."""

    method: str  # how the values were obtained, in words
    figures: tuple[NodeFigures, ...]
    divergences: tuple[Divergence, ...]
    compared: int  # values compared
    notes: tuple[str, ...] = ()

    def format(self) -> str:
        """The short "first divergence" block of the failure text."""
        count = len(self.figures)
        if not self.figures:
            lines = ["first divergence: not found"]
        elif self.divergences:
            lines = [f"first divergence ({self.method}; {self.compared} values compared):"]
            lines += [f"  {divergence.describe(count)}" for divergence in self.divergences[:_SHOWN]]
            if len(self.divergences) > _SHOWN:
                lines.append(f"  and {len(self.divergences) - _SHOWN} more nodes where a divergence starts "
                             "(all in the JSON report)")
        else:
            lines = [f"first divergence: none found ({self.method}; {self.compared} values compared, "
                     "all within tolerance)"]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"method": self.method, "compared": self.compared, "notes": list(self.notes),
                "divergences": [divergence.to_json() for divergence in self.divergences],
                "nodes": [figures.to_json() for figures in self.figures]}


def find_divergences(nodes: Sequence[GraphNode], obtained: Mapping[str, np.ndarray],
                     expected: Mapping[str, np.ndarray], tolerance_for: Callable[[str, np.dtype], Tolerance],
                     *, method: str, notes: Sequence[str] = ()) -> Localisation:
    """Compare every value both sides have, in graph order, and name the nodes where a break is born.

    A value neither side has (not exposed) counts as out when anything it depends on is out, so a
    node downstream of an unseen break is never blamed for it. Values no node produces (inputs,
    initializers) are the same on both sides.
    """
    status: dict[str, str] = {}
    carries_error: dict[str, bool] = {}  # within tolerance but not identical: where drift starts
    comparisons: dict[str, OutputComparison] = {}
    producer: dict[str, GraphNode] = {value: node for node in nodes for value in node.outputs if value}
    figures, divergences = [], []
    for node in nodes:
        feeding = [value for value in node.inputs if value]
        inputs_out = any(status.get(value) == OUT for value in feeding)
        results = {}
        for value in (value for value in node.outputs if value):
            if value in obtained and value in expected:
                reference = np.asarray(expected[value])
                comparison = compare(value, obtained[value], reference, tolerance_for(value, reference.dtype))
                results[value] = comparisons[value] = comparison
                status[value] = WITHIN if comparison.passed else OUT
                carries_error[value] = comparison.passed and comparison.diagnosis != "identical"
            else:
                status[value] = OUT if inputs_out else NOT_COMPARED
                carries_error[value] = any(carries_error.get(value, False) for value in feeding)
        figures.append(_node_figures(node, results.values(), inputs_out))
        if inputs_out:
            continue
        for value, comparison in results.items():
            if not comparison.passed:
                kind, detail = classify(comparison, obtained[value], expected[value],
                                        _drift_chain(node, carries_error, producer),
                                        [comparisons[value] for value in feeding if value in comparisons])
                divergences.append(Divergence(node, value, kind, detail, comparison))
                break
    return Localisation(method, tuple(figures), tuple(divergences), len(comparisons), tuple(notes))


def classify(comparison: OutputComparison, obtained: np.ndarray, expected: np.ndarray,
             chain: Sequence[GraphNode] = (), inputs: Sequence[OutputComparison] = ()) -> tuple[str, str]:
    """What kind of break one out-of-tolerance value is, and the figures that say so.

    `chain` is the path of nodes, oldest first, along which the value's inputs already
    carried (in-tolerance) error, empty when they were identical to the reference;
    `inputs` are the comparisons of the node's inputs (those that were compared).
    """
    if comparison.problems:
        return WRONG, "; ".join(comparison.problems)
    o, e = np.asarray(obtained), np.asarray(expected)
    if comparison.diagnosis.startswith("obtained is all zeros"):
        return ZEROS, f"all {comparison.size} elements are zero where onnxruntime's are not"
    if e.dtype.kind == "f":
        with np.errstate(invalid="ignore", over="ignore"):
            born = _non_finite_born(o, e)
        if born:
            return born
    error = f"max abs error {comparison.max_abs_error:.3g}" + (
        f", max rel error {comparison.max_rel_error:.3g}" if comparison.max_rel_error is not None else "")
    # a whole-tensor rule (cosine, top-k) can fail with no element out of tolerance: then say which rule
    share = (f"{comparison.mismatched} of {comparison.size} elements out of tolerance" if comparison.mismatched
             else "; ".join(comparison.failures))
    if _rounding_sized(comparison, e.dtype) or (chain and _carried(comparison, inputs)):
        if not chain:
            return DRIFT, (f"precision-sized error ({comparison.max_ulp} ULP of {e.dtype.name}, {error}) born here from "
                           f"identical inputs: rounding this op's tolerance is too tight for; {share}")
        size = "precision-sized drift" if _rounding_sized(comparison, e.dtype) else "error carried from its inputs"
        return DRIFT, (f"{size} ({error}; the inputs within tolerance but not identical) that grew along "
                       f"{len(chain)} node{'s' if len(chain) != 1 else ''} from {chain[0].describe()}; {share}")
    return WRONG, f"{error}; {share}, from inputs within tolerance: it computes something else than onnxruntime"


def _rounding_sized(comparison: OutputComparison, dtype: np.dtype) -> bool:
    return comparison.max_ulp is not None and comparison.max_ulp <= DRIFT_ULP.get(dtype.name, 0)


def _carried(comparison: OutputComparison, inputs: Sequence[OutputComparison]) -> bool:
    """Whether the value's error is no more than its inputs' error carried on (absolute or relative)."""
    def worst(field: str) -> float:
        return max((getattr(c, field) or 0.0 for c in inputs), default=0.0)

    return any(getattr(comparison, field) is not None and worst(field) > 0
               and getattr(comparison, field) <= _CARRIED * worst(field)
               for field in ("max_abs_error", "max_rel_error"))


def _non_finite_born(o: np.ndarray, e: np.ndarray) -> tuple[str, str] | None:
    """Overflow or NaN/Inf where one side has them and the other is finite; None when neither has any."""
    largest = float(np.finfo(e.dtype).max)
    inf_o = np.isinf(o) & np.isfinite(e)
    inf_e = np.isinf(e) & np.isfinite(o)
    nan_o = np.isnan(o) & ~np.isnan(e)
    nan_e = np.isnan(e) & ~np.isnan(o)
    for infinite, finite_side, side, other in ((inf_o, e, "the EP", "onnxruntime"), (inf_e, o, "onnxruntime", "the EP")):
        count = int(np.count_nonzero(infinite))
        if count:
            peak = float(np.abs(finite_side[infinite].astype(np.float64)).max())
            if peak >= largest * _OVERFLOW_SHARE:
                return OVERFLOW, (f"{count} Inf on {side} past {e.dtype.name}'s range (largest {largest:.6g}), "
                                  f"where {other} has values up to {peak:.6g}")
            return NAN_INF, f"{count} Inf on {side} where {other} is finite (up to {peak:.3g})"
    for nan, side, other in ((nan_o, "the EP", "onnxruntime"), (nan_e, "onnxruntime", "the EP")):
        count = int(np.count_nonzero(nan))
        if count:
            return NAN_INF, f"{count} NaN on {side} where {other} is not NaN"
    return None


def _drift_chain(node: GraphNode, carries_error: Mapping[str, bool],
                 producer: Mapping[str, GraphNode]) -> tuple[GraphNode, ...]:
    """The nodes, oldest first, through which error already flowed into `node` (the longest such path)."""
    chain: list[GraphNode] = []
    current = node
    while True:
        feeding = [producer[value] for value in current.inputs
                   if value and carries_error.get(value, False) and value in producer]
        if not feeding:
            break
        current = max(feeding, key=lambda n: n.index)
        chain.append(current)
    return tuple(reversed(chain))


def _node_figures(node: GraphNode, results, inputs_out: bool) -> NodeFigures:
    results = list(results)
    if not results:
        return NodeFigures(node.index, node.name, node.op_type, OUT if inputs_out else NOT_COMPARED,
                           None, None, None, None)

    def largest(values):
        present = [value for value in values if value is not None]
        return max(present) if present else None

    return NodeFigures(
        node.index, node.name, node.op_type, OUT if any(not c.passed for c in results) else WITHIN,
        largest(c.max_abs_error for c in results), largest(c.max_rel_error for c in results),
        largest(c.max_ulp for c in results), largest(c.mismatched_percent for c in results),
    )
