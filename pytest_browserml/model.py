"""What an ONNX file declares and needs, read once per file version: inputs, outputs, dims, external
data, node count and the precision it computes in.

The output dtype does not tell the compute precision: most float16 models ship with float32 inputs and
outputs (onnxconverter-common's keep_io_types=True), and a dynamically quantized model computes in int8
between float32 tensors. The graph tells: float16 initializers and casts, quantize/dequantize and
integer-matmul ops. No browser and no pytest in here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import onnx_proto

# ONNX TensorProto element types by the names onnxruntime-web (and the transport) give them.
_ONNX_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
               9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64"}
_FLOAT16 = 10
# Ops whose presence means the model computes (part of) its work in integers.
_QUANTIZED_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
    "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QGemm", "QAttention", "MatMulNBits",
})


@dataclass(frozen=True)
class DeclaredValue:
    """A graph input or output as the model declares it: dtype None and dims None where it does not say."""

    name: str
    kind: str  # "tensor"; "sequence", "map", "optional": what onnxruntime-web cannot feed; "unknown"
    dtype: str | None
    dims: tuple[int | str, ...] | None  # the size, the symbol, or "?"; a negative size is free, as ORT reads it
    optional: bool  # an input an initializer backs

    def describe(self) -> str:
        if self.kind not in ("tensor", "unknown"):
            return f"{self.name}: {self.kind}"
        shape = f"[{', '.join(map(str, self.dims))}]" if self.dims is not None else "any shape"
        return f"{self.name}: {self.dtype or 'any type'} {shape}" + (" (optional)" if self.optional else "")

    def problems(self, spec: dict) -> list[str]:
        found = []
        if self.kind not in ("tensor", "unknown"):
            found.append(f"{self.name!r} is a {self.kind} input, which onnxruntime-web cannot feed")
        elif self.dtype and self.dtype != spec["dtype"]:
            found.append(f"{self.name!r} is {spec['dtype']}, the model takes {self.dtype}")
        if self.dims is not None and (len(self.dims) != len(spec["shape"]) or any(
                _fixed(d) and d != size for d, size in zip(self.dims, spec["shape"]))):
            found.append(f"{self.name!r} has shape {spec['shape']}, the model takes [{', '.join(map(str, self.dims))}]")
        return found


@dataclass(frozen=True)
class Precision:
    """What a model computes in, beyond its outputs' dtypes: "float16" or "quantized", and the evidence."""

    kind: str
    reason: str  # e.g. "computes in float16 (212 float16 initializers)"


@dataclass(frozen=True)
class ModelFacts:
    """What one ONNX file declares; inputs, outputs and node_count are None for .ort (or unparsable) models."""

    inputs: tuple[DeclaredValue, ...] | None
    outputs: tuple[DeclaredValue, ...] | None
    node_count: int | None  # nodes in the graph and its subgraphs, before ORT's fusions
    external_data: tuple[str, ...]  # files beside the model that hold its weights, relative to its folder
    precision: Precision | None  # None: it computes in its outputs' own dtypes

    def dimensions_of(self, input_specs: list[dict]) -> dict[str, int]:
        """Values of the model's symbolic dimensions in these inputs (for ORT's freeDimensionOverrides)."""
        declared = {value.name: value.dims or () for value in self.inputs or ()}
        values = {}
        for spec in input_specs:
            for axis, (dimension, size) in enumerate(zip(declared.get(spec["name"], ()), spec["shape"])):
                if _unnamed_free(dimension):
                    values[free_dim_name(spec["name"], axis)] = size
                elif isinstance(dimension, str):
                    values[dimension] = size
        return dict(sorted(values.items()))

    @property
    def has_unnamed_free_dims(self) -> bool:
        return any(_unnamed_free(d) for value in self.inputs or () for d in value.dims or ())

    def input_mismatch(self, specs: list[dict]) -> str | None:
        """What is wrong with the inputs given, beside what the model expects; None when they fit its declaration.

        Checked before the page runs them: ORT would refuse them too, naming one problem and not what it
        expects, and WebNN keeps a refused input's shape in the session, failing every later run of the model.
        """
        declared = self.inputs
        if declared is None:  # an .ort model, or one onnx cannot parse: ORT will say what is wrong
            return None
        by_name = {value.name: value for value in declared}
        given = {spec["name"]: spec for spec in specs}
        problems = [f"input {value.name!r} is missing" for value in declared
                    if value.name not in given and not value.optional]
        problems += [f"the model has no input {name!r}" for name in given if name not in by_name]
        problems += [problem for name, spec in given.items() if name in by_name
                     for problem in by_name[name].problems(spec)]
        if not problems:
            return None
        return "\n".join([
            "the inputs do not match the model: " + "; ".join(problems),
            "the model expects:", *(f"  {value.describe()}" for value in declared),
            "given: " + (", ".join(f"{spec['name']}: {spec['dtype']} {spec['shape']}" for spec in specs) or "no inputs"),
        ])


def read(path: Path) -> ModelFacts:
    """The facts of the model file at `path`, parsed once per file version."""
    stat = path.stat()
    return _read(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _read(path: Path, _mtime_ns: int, _size: int) -> ModelFacts:
    proto = load_without_weights(path)
    if proto is None:
        return ModelFacts(None, None, None, (), None)
    graph = proto.graph
    initializers = {tensor.name for tensor in graph.initializer}
    return ModelFacts(
        inputs=tuple(_declared(value, value.name in initializers) for value in graph.input),
        outputs=tuple(_declared(value, False) for value in graph.output),
        node_count=node_count(graph),
        external_data=_external_data_locations(graph),
        precision=precision_of(graph),
    )


def shape_nodes(path: Path) -> frozenset[str]:
    """The names of the model's shape-arithmetic nodes (see shape_arithmetic), once per file version; apart
    from read() because shape inference costs and only a graph split between providers needs it."""
    stat = path.stat()
    return _shape_nodes(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _shape_nodes(path: Path, _mtime_ns: int, _size: int) -> frozenset[str]:
    proto = load_without_weights(path)
    return shape_arithmetic(proto) if proto is not None else frozenset()


def load_without_weights(path: Path):
    """The model without its weights; None for .ort files and models onnx cannot parse
    (a corrupt model is for ORT in the page to report)."""
    if path.suffix != ".onnx":
        return None
    try:
        return onnx_proto.load_model(path)
    except Exception:
        return None


# Element types of shape and index tensors: what ORT's CPU-preference heuristic follows from Shape nodes.
_SHAPE_TYPES = frozenset({6, 7, 9})  # int32, int64, bool
_SHAPE_SOURCES = frozenset({"Shape", "Size"})


def shape_arithmetic(proto) -> frozenset[str]:
    """Names of the nodes that compute on shapes and indices only: Shape and Size, and nodes whose inputs and
    outputs are all int32, int64 or bool tensors (types from onnx's shape inference).

    ORT keeps such nodes on the CPU by design on GPU EPs, so their placement there is not a fallback of
    compute; ArgMax (float in, int64 out) or an embedding Gather (float table) are compute.
    """
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # a model onnx cannot infer: its declared types are all there is
        inferred = proto
    names = set()
    for graph in _graphs(inferred.graph):
        types = {value.name: value.type.tensor_type.elem_type
                 for value in (*graph.value_info, *graph.input, *graph.output)}
        types.update((tensor.name, tensor.data_type) for tensor in graph.initializer)
        for node in graph.node:
            if node.op_type == "Constant":
                types.update((output, a.t.data_type) for output in node.output for a in node.attribute if a.HasField("t"))
        for node in graph.node:
            values = [name for name in (*node.input, *node.output) if name]
            if node.op_type in _SHAPE_SOURCES or (
                    values and node.op_type != "Constant" and all(types.get(name) in _SHAPE_TYPES for name in values)):
                names.add(node.name)
    return frozenset(names)


def node_count(graph) -> int:
    """Nodes in the graph and in the subgraphs of its If, Loop and Scan nodes, as ORT's placement counts them."""
    return sum(1 for _ in _nodes(graph))


def precision_of(graph) -> Precision | None:
    """The model's compute precision, from its graph and subgraphs: quantized ops, else float16 values."""
    nodes = list(_nodes(graph))
    quantized = Counter(node.op_type for node in nodes
                        if node.op_type in _QUANTIZED_OPS or node.op_type.startswith("QLinear"))
    if quantized:
        counts = ", ".join(f"{count} {op}" for op, count in sorted(quantized.items()))
        return Precision("quantized", f"computes in integers (quantized: {counts} nodes)")
    evidence = []
    initializers = sum(tensor.data_type == _FLOAT16 for subgraph in _graphs(graph) for tensor in subgraph.initializer)
    constants = sum(attribute.t.data_type == _FLOAT16 for node in nodes if node.op_type == "Constant"
                    for attribute in node.attribute if attribute.HasField("t"))
    casts = sum(node.op_type == "Cast" and any(a.name == "to" and a.i == _FLOAT16 for a in node.attribute)
                for node in nodes)
    for count, one, many in ((initializers, "float16 initializer", "float16 initializers"),
                             (constants, "float16 Constant", "float16 Constants"),
                             (casts, "Cast to float16", "Casts to float16")):
        if count:
            evidence.append(f"{count} {one if count == 1 else many}")
    if not evidence:
        return None
    return Precision("float16", f"computes in float16 ({', '.join(evidence)})")


def _nodes(graph):
    """Every node of the graph and of its subgraphs (If branches, Loop and Scan bodies)."""
    for subgraph in _graphs(graph):
        yield from subgraph.node


def _graphs(graph):
    """The graph and every subgraph inside it."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            for subgraph in (*([attribute.g] if attribute.HasField("g") else ()), *attribute.graphs):
                yield from _graphs(subgraph)


def _fixed(dimension: int | str) -> bool:
    """A declared size the input must have: ORT reads symbols and negative sizes (-1 from PaddlePaddle) as free,
    and 0 as a size."""
    return isinstance(dimension, int) and dimension >= 0


def _unnamed_free(dimension: int | str) -> bool:
    return dimension == "?" or isinstance(dimension, int) and dimension < 0


def free_dim_name(input_name: str, axis: int) -> str:
    """The symbol a free dimension without one gets, so ORT's freeDimensionOverrides can fix it (WebNN)."""
    return f"{input_name}_dim{axis}"


def with_named_free_dims(path: Path, destination: Path) -> Path:
    """A copy of the model (weights stay where they are) whose unnamed free input dims have symbols.

    WebNN builds graphs of static shapes and ORT fixes dims only by symbol: without one, WebNN
    takes no node of such a model.
    """
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for value in proto.graph.input:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if _unnamed_free(dim.dim_value if dim.HasField("dim_value") else dim.dim_param or "?"):
                dim.dim_param = free_dim_name(value.name, axis)
    destination.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(destination))
    return destination


def _external_data_locations(graph) -> tuple[str, ...]:
    """The files that hold the weights of initializers and of node attributes, subgraphs' included."""
    external = onnx_proto.messages().TensorProto.EXTERNAL
    return tuple(sorted({entry.value for tensor in _tensors(graph) if tensor.data_location == external
                         for entry in tensor.external_data if entry.key == "location"}))


def _tensors(graph):
    for subgraph in _graphs(graph):
        yield from subgraph.initializer
        for node in subgraph.node:
            for attribute in node.attribute:
                yield from (*([attribute.t] if attribute.HasField("t") else ()), *attribute.tensors)


def _declared(value, optional: bool) -> DeclaredValue:
    kind = (value.type.WhichOneof("value") or "unknown").removesuffix("_type")
    tensor = value.type.tensor_type
    dtype = dims = None
    if kind == "tensor" and tensor.elem_type:
        names = onnx_proto.messages().TensorProto.DataType
        dtype = _ONNX_TYPES.get(tensor.elem_type) or names.Name(tensor.elem_type).lower()
    if kind == "tensor" and tensor.HasField("shape"):
        dims = tuple(dim.dim_value if dim.HasField("dim_value") else dim.dim_param or "?" for dim in tensor.shape.dim)
    return DeclaredValue(value.name, kind, dtype, dims, optional)
