"""Say where a golden mismatch was born: the first node whose output leaves native onnxruntime's.

A copy of the model with its intermediate values exposed as outputs runs once
on the test's own EP page (same browser, bundle, adapter and inputs) and once
in native onnxruntime; divergence.py compares the values in graph order.
Exposing values keeps ORT from fusing across them, so the copy may not compute
what the test's run did: when the copy's outputs no longer diverge, or it is
too large for the EP with every value exposed, the model is bisected by
prefix instead (cut after a node, compare that node's outputs), which keeps
the fusions inside each prefix.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..budget.limits import format_value
from ..results import ModelRunError, Placement, RunResult
from . import exposure, reference
from .compare import Tolerance, compare
from .divergence import GraphNode, Localisation, find_divergences

MODES = ("failures", "always", "off")
_NAMED = 4  # nodes named in a note, the rest counted
# onnxruntime-web's text when an output cannot be read back; each such value costs one more session, up to _RETRIES
_UNREADABLE = re.compile(r"Can't access output tensor data on index (\d+)")
_RETRIES = 8
# Exposed values come back to this process from both sides at once: beyond this, bisect (one value a session).
EXPOSED_LIMIT = 2 << 30
ToleranceFor = Callable[[str, np.dtype], Tolerance]
RunCopy = Callable[[Path, Mapping[str, np.ndarray]], RunResult]  # a model file run once on the test's EP page


@dataclass(frozen=True)
class Localiser:
    """The golden check's hook: localise this test's mismatches (mode "failures") or every comparison ("always")."""

    mode: str
    run_copy: RunCopy

    def __call__(self, result: RunResult, tolerance_for: ToleranceFor, *, passed: bool,
                 per_ep: bool) -> Localisation | None:
        wanted = self.mode == "always" or (self.mode == "failures" and not passed and not per_ep)
        if not wanted or result.model.suffix != ".onnx":
            return None
        try:
            return localise(result, self.run_copy, tolerance_for)
        except Exception as error:  # the golden's verdict stands whatever happens here
            return Localisation("not localised", (), (), 0, (f"could not localise: {type(error).__name__}: "
                                                          f"{str(error).splitlines()[0] if str(error) else ''}",))


def localise(result: RunResult, run_copy: RunCopy, tolerance_for: ToleranceFor) -> Localisation:
    """Expose every value the copy can carry; bisect by prefix when that is too large or hides the break."""

    graph = exposure.read(result.model)
    inputs = result.inputs
    if graph.exposed_bytes > EXPOSED_LIMIT:
        return bisect(result, graph, run_copy, tolerance_for,
                      f"exposing {len(graph.exposable)} values would bring {format_value(graph.exposed_bytes, 'size')} "
                      f"out of the page, held twice here (the EP's and onnxruntime's); past "
                      f"{format_value(EXPOSED_LIMIT, 'size')} the graph is cut instead")
    values, unreadable = list(graph.exposable), []
    while True:
        with exposure.exposed_copy(result.model, values) as copy:
            try:
                exposed = run_copy(copy, inputs)
            except ModelRunError as error:
                if "too large for" in str(error):
                    return bisect(result, graph, run_copy, tolerance_for,
                                  f"exposing {len(values)} values made the copy too large for {result.ep}")
                # ORT-web cannot hand back some outputs (e.g. a Range it folded): drop that one, try again
                index = _UNREADABLE.search(str(error))
                position = int(index[1]) - len(graph.outputs) if index else -1
                if not 0 <= position < len(values) or len(unreadable) == _RETRIES:
                    raise
                unreadable.append(values.pop(position))
                continue
            native = reference.outputs(copy, inputs, cache=False)
            break
    notes = [*graph.notes(), *_placement_notes(result.placement, exposed.placement, len(graph.nodes))]
    if unreadable:
        notes.append(f"{len(unreadable)} value(s) onnxruntime-web could not hand back as outputs, not compared: "
                     f"{', '.join(unreadable)}")
    found = find_divergences(graph.nodes, exposed.outputs, native, tolerance_for,
                             method=f"{len(values)} values exposed as outputs of a copy, run on "
                                    f"{result.ep} and in native onnxruntime", notes=notes)
    if not found.divergences and _diverges(result.outputs, native, graph.outputs, tolerance_for):
        ran = _ran(result.placement)
        fused = f"ORT ran the test's model as {ran} nodes for the graph's {len(graph.nodes)}, " \
            if 0 < ran < len(graph.nodes) else ""
        return bisect(result, graph, run_copy, tolerance_for,
                      f"with its values exposed the copy does not diverge: {fused}so a fused kernel (or a placement) "
                      "of the test's run diverges; the first node named is where the diverging prefix ends")
    return found


def bisect(result: RunResult, graph: exposure.GraphValues, run_copy: RunCopy, tolerance_for: ToleranceFor,
           why: str) -> Localisation:
    """Binary search for the first node whose outputs diverge when the model is cut right after it.

    Assumes a divergence, once born, reaches every later cut (the usual case); each probe is one
    session of a prefix, so this takes about log2(nodes) sessions, not one per node.
    """
    candidates = [node for node in graph.nodes if any(value in graph.exposable or value in graph.outputs
                                                      for value in node.outputs)]
    obtained: dict[str, np.ndarray] = {}
    expected: dict[str, np.ndarray] = {}

    def out_of_tolerance(node: GraphNode) -> bool:
        with exposure.prefix_copy(result.model, node) as copy:
            got = run_copy(copy, result.inputs).outputs
            want = reference.outputs(copy, result.inputs, cache=False)
        obtained.update(got)
        expected.update(want)
        return _diverges(got, want, list(want), tolerance_for)

    low, high, probes = 0, len(candidates) - 1, 0
    while low < high:  # invariant: candidates[high] diverges (the test's outputs did), none before low does
        middle = (low + high) // 2
        probes += 1
        if out_of_tolerance(candidates[middle]):
            high = middle
        else:
            low = middle + 1
    if candidates and high not in _probed(candidates, obtained):
        probes += 1
        out_of_tolerance(candidates[high])
    found = find_divergences(graph.nodes, obtained, expected, tolerance_for,
                             method=f"bisected by graph prefix in {probes} sessions on {result.ep} and in native "
                                    "onnxruntime", notes=(why, *graph.notes()))
    first = candidates[high].index if candidates else None
    return Localisation(found.method, found.figures,
                        tuple(d for d in found.divergences if d.node.index == first), found.compared, found.notes)


def _probed(candidates: list[GraphNode], obtained: Mapping[str, np.ndarray]) -> set[int]:
    return {position for position, node in enumerate(candidates) if any(value in obtained for value in node.outputs)}


def _diverges(obtained: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray], names,
              tolerance_for: ToleranceFor) -> bool:
    return any(name in obtained and name in expected
               and not compare(name, obtained[name], expected[name],
                               tolerance_for(name, np.asarray(expected[name]).dtype)).passed
               for name in names)


def _placement_notes(original: Placement, copy: Placement, graph_nodes: int) -> tuple[str, ...]:
    """Say where ORT fused the test's model (fewer nodes than the graph: on WebNN one node, its whole graph)
    and when exposing values changed its fusions or partitions."""
    def placed(placement: Placement) -> str:
        return ", ".join(f"{count} node(s) on {name}" for name, count in placement.nodes_per_provider.items())

    same = original.nodes_per_provider == copy.nodes_per_provider
    off_ep = original.fallback_nodes
    where = (f" (it placed {len(off_ep)} off {original.requested[0]}: "
             + ", ".join(f"{node.op_type} {node.name!r}" for node in off_ep[:_NAMED])
             + (", ..." if len(off_ep) > _NAMED else "") + ")") if off_ep else ""
    if 0 < _ran(original) < graph_nodes:
        return (f"ORT fused the test's model: it ran as {placed(original)} for the graph's {graph_nodes}{where}; "
                + ("the copy with its values exposed ran the same" if same else f"the copy as {placed(copy)}"),)
    if same:
        return ()
    return (f"exposing values changed ORT's placement: the test's model ran as {placed(original)}{where}, "
            f"the copy as {placed(copy)}",)


def _ran(placement: Placement) -> int:
    return sum(placement.nodes_per_provider.values())
