"""Model surgery for localising a divergence: expose a graph's intermediate values, or cut it at a node.

Both write a copy and never touch the original. Weights stay where they are:
a model with external data keeps its `location` entries, so its copy is
written in the same folder (as a hidden file) and reads the same data files.
Only values of the main graph with a known tensor type and shape (after
onnx.shape_inference) can become outputs; the others are listed with the
reason, since the report must say what it could not see.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .. import model as model_facts
from .divergence import GraphNode


@dataclass(frozen=True)
class GraphValues:
    """A model's main-graph nodes in topological order and which of their outputs can be exposed."""

    nodes: tuple[GraphNode, ...]
    exposable: tuple[str, ...]  # intermediate values (not already graph outputs) with a known tensor type and shape
    outputs: tuple[str, ...]  # the graph's own outputs
    skipped: tuple[tuple[str, str], ...]  # (value, why it cannot be exposed)
    has_external_data: bool
    exposed_bytes: int  # what the exposable values of fixed shape hold together (the others count 0)

    def notes(self) -> tuple[str, ...]:
        """The skipped values grouped by reason, in a line each."""
        reasons: dict[str, list[str]] = {}
        for value, why in self.skipped:
            reasons.setdefault(why, []).append(value)
        return tuple(f"{len(values)} value{'s' if len(values) != 1 else ''} not exposed ({why}): "
                     f"{', '.join(values[:4])}{', ...' if len(values) > 4 else ''}" for why, values in reasons.items())


def read(path: Path) -> GraphValues:
    """Parse the model (without its weights), run shape inference, and list what can be exposed."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inferred = _inferred(model)
    graph = inferred.graph
    known = {info.name: info for info in (*graph.value_info, *graph.output, *graph.input)}
    outputs = tuple(output.name for output in model.graph.output)
    nodes = tuple(GraphNode(index, node.name, node.op_type, tuple(node.input), tuple(node.output))
                  for index, node in enumerate(_topological(model.graph)))
    exposable, skipped, exposed_bytes = [], [], 0
    for node in nodes:
        for value in node.outputs:
            if not value or value in outputs:
                continue
            why = _not_exposable(known.get(value))
            if why:
                skipped.append((value, why))
            else:
                exposable.append(value)
                exposed_bytes += _bytes(known[value].type.tensor_type)
    for node in model.graph.node:
        for attribute in node.attribute:
            for subgraph in (*([attribute.g] if attribute.HasField("g") else ()), *attribute.graphs):
                skipped += [(value, f"inside the subgraph of {node.op_type} {node.name!r}")
                            for inner in subgraph.node for value in inner.output if value]
    return GraphValues(nodes, tuple(exposable), outputs, tuple(skipped), bool(model_facts.read(path).external_data),
                       exposed_bytes)


@contextmanager
def exposed_copy(path: Path, values: Sequence[str]) -> Iterator[Path]:
    """A copy of the model whose outputs are its own plus `values`; removed afterwards."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    known = {info.name: info for info in _inferred(model).graph.value_info}
    model.graph.output.extend(known[value] for value in values)
    with _written(model, path, "exposed") as copy:
        yield copy


@contextmanager
def prefix_copy(path: Path, node: GraphNode) -> Iterator[Path]:
    """The model cut after `node`: its outputs are the node's (typed ones), and only what they need is kept."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inferred = _inferred(model).graph
    known = {info.name: info for info in (*inferred.value_info, *inferred.output)}
    wanted = [value for value in node.outputs if value and not _not_exposable(known.get(value))]
    ordered = _topological(model.graph)[: node.index + 1]
    needed, kept = set(wanted), []
    for candidate in reversed(ordered):
        if needed.intersection(candidate.output):
            kept.append(candidate)
            needed.update(value for value in candidate.input if value)
    del model.graph.node[:]
    model.graph.node.extend(reversed(kept))
    del model.graph.output[:]
    model.graph.output.extend(known[value] for value in wanted)
    initializers = [tensor for tensor in model.graph.initializer if tensor.name in needed]
    del model.graph.initializer[:]
    model.graph.initializer.extend(initializers)
    with _written(model, path, f"prefix-{node.index}") as copy:
        yield copy


def _inferred(model):
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # a model shape inference cannot follow: only the declared values are known
        return model


def _topological(graph) -> list:
    """The graph's nodes in an order where each comes after the producers of its inputs (ONNX asks for it; not all
    exporters comply)."""
    produced = {value for node in graph.node for value in node.output}
    available = {info.name for info in graph.input} | {tensor.name for tensor in graph.initializer}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [node for node in pending
                 if all(not value or value in available or value not in produced for value in node.input)]
        if not ready:  # a cycle: not a valid ONNX graph; keep the file's order for the rest
            ordered += pending
            break
        ready_ids = {id(node) for node in ready}
        for node in ready:
            available.update(node.output)
        ordered += ready
        pending = [node for node in pending if id(node) not in ready_ids]
    return ordered


def _bytes(tensor) -> int:
    """Bytes of a tensor type of fixed shape; 0 when a dimension is symbolic or the element type has no fixed size."""
    from onnx.helper import tensor_dtype_to_np_dtype

    dims = [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim]
    if None in dims:
        return 0
    try:
        itemsize = tensor_dtype_to_np_dtype(tensor.elem_type).itemsize
    except (KeyError, TypeError, ValueError):
        return 0
    return math.prod(dims) * itemsize


def _not_exposable(info) -> str | None:
    if info is None or not info.type.HasField("tensor_type"):
        return "type unknown after shape inference" if info is None or not info.type.WhichOneof("value") \
            else f"a {info.type.WhichOneof('value').removesuffix('_type')}, not a tensor"
    tensor = info.type.tensor_type
    if not tensor.elem_type:
        return "type unknown after shape inference"
    if not tensor.HasField("shape"):
        return "shape unknown after shape inference"
    return None


@contextmanager
def _written(model, original: Path, label: str) -> Iterator[Path]:
    """Write `model` as a hidden file: beside the original when it reads external data (same locations), else in a
    temporary folder. Weights stored inside the model stay inside; removed when done."""
    import onnx

    folder = original.parent if model_facts.read(original).external_data else Path(tempfile.gettempdir())
    handle, name = tempfile.mkstemp(prefix=f".{original.stem}.browserml-{label}-", suffix=".onnx", dir=folder)
    os.close(handle)
    copy = Path(name)
    try:
        onnx.save(model, str(copy))
        yield copy
    finally:
        copy.unlink(missing_ok=True)
