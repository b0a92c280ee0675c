"""Where an output's tolerance comes from, and saying so in every report.

A tolerance is merged field by field from layers, later layers winning:

1. built-in defaults (:data:`BUILTIN`, per EP and dtype, below),
2. project settings, ``[tool.browserml.tolerance]`` in pyproject.toml,
3. the ``@pytest.mark.tolerance(...)`` marker of the test.

Within a layer, sections apply from least to most specific, so the most
specific one wins::

    general fields -> [ep] -> [ep:device] -> [dtype] -> [ep dtype] -> [ep:device dtype]
    -> the same again inside [outputs.<name>]

A later layer's general setting therefore overrides an earlier layer's
per-output one: the marker is the test author's last word.  An EP id with a
device type (``webnn:gpu``) reads the ``webnn`` section and then the
``webnn:gpu`` section.  A layer looks like::

    {"rtol": 1e-3, "atol": 1e-4,                         # any Tolerance field but source
     "webgpu": {"atol": 1e-3, "float16": {"ulp": 4}},   # EP section, may hold dtype sections
     "float16": {"ulp": 4},                             # dtype section: numpy dtype name
     "outputs": {"boxes": {"rtol": 1e-2, "webgpu": {...}, "float16": {...}}}}

``None`` unsets an optional field (atol, rtol, ulp, cosine, topk), e.g. a
marker ``tolerance(atol=None, rtol=None, ulp=4)`` to judge by ULPs alone.

Built-in defaults:

=================  ======  =====  =====
dtype              EP      atol   rtol
=================  ======  =====  =====
float32            wasm    1e-4   1e-4
float32            webnn   1e-4   1e-3
float32            webgpu  1e-3   1e-3
float16            wasm    1e-3   1e-2
float16            webnn   1e-3   1e-2
float16            webgpu  2e-2   1e-2
float64            any     1e-6   1e-6
int*, uint*, bool  any     exact  exact
=================  ======  =====  =====

The float32 absolute thresholds are those of onnxruntime-web's own test runner
(js/web/test/test-runner.ts: 1e-4 for wasm and WebNN, 1e-3 for WebGPU, whose
shaders reorder reductions and fuse operations).  Its relative thresholds are
tuned for single-operator tests; whole models accumulate more rounding, hence
the looser rtol.  WebNN gets rtol 1e-3 because its backends (DirectML, Core ML,
TFLite) may compute with lower internal precision; WebNN's own conformance
tests likewise grant per-operator tolerances rather than exact results.
float16 keeps 11 significant bits (about 1e-3 relative per operation), so a
model's outputs drift by around 1e-2.  The WebGPU float16 row is calibrated on a real GPU (NVIDIA H200,
bench/bench_gpu.py, README "WebGPU on a real GPU"): the smallest atol at rtol 1e-2 that passes each of
8 float16 models on the native WebGPU EP was 0 (conv net, classifier twice, text classifier), 3.5e-3
(attention block), 1.5e-2 (text recognizer), 2.9e-2 (one 4096-long MatMul) and 1 (a detector whose
sigmoid map saturates, 6.8e-3 even on wasm); atol 2e-2 passes 6 of the 8 with a third to spare.  Integers and bool set nothing, which
compare.py compares exactly.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..browser.launch import EP_SECTIONS_TEXT, ExecutionProvider, is_ep_section
from ..model import Precision
from .compare import Tolerance

__all__ = ["BUILTIN", "FIELDS", "ToleranceError", "ToleranceLayer", "resolve", "section_for", "tolerance_for_value"]

FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Tolerance) if f.name != "source")
DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "quantized",  # not a dtype: the class of float outputs of a model that computes in integers
)
OUTPUTS = "outputs"
_ELEMENTWISE = ("atol", "rtol", "ulp")
_WHOLE_TENSOR = ("cosine", "topk")

# What each field accepts: (kind, lower bound, upper bound); bounds are inclusive.
_NUMBER, _INTEGER, _BOOL, _NAME = "a number", "an integer", "true or false", "an input's name"
_RULES: dict[str, tuple[str, float | None, float | None]] = {
    "atol": (_NUMBER, 0, None),
    "rtol": (_NUMBER, 0, None),
    "ulp": (_INTEGER, 0, None),
    "cosine": (_NUMBER, 0, 1),
    "cosine_axis": (_INTEGER, None, None),
    "topk": (_INTEGER, 1, None),
    "topk_axis": (_INTEGER, None, None),
    "mismatch_fraction": (_NUMBER, 0, 1),
    "nan_equal": (_BOOL, None, None),
    "exact": (_BOOL, None, None),
    "mask_input": (_NAME, None, None),
}
_UNSETTABLE = frozenset(f.name for f in dataclasses.fields(Tolerance) if f.default is None)
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class ToleranceError(ValueError):
    """A tolerance setting is unknown or has a bad value; names the setting and where it was set."""


@dataclass(frozen=True)
class ToleranceLayer:
    """One source of tolerance settings, validated when created so mistakes surface before any test runs."""

    origin: str
    settings: Mapping[str, Any]

    def __post_init__(self) -> None:
        _check_section(self.settings, (), self.origin, eps=True, dtypes=True, outputs=True)


def resolve(layers: Sequence[ToleranceLayer], *, ep: str, dtype: np.dtype, output: str,
            precision: Precision | None = None) -> Tolerance:
    """The tolerance for one output on one EP, with a source naming the section behind each field.

    Float outputs of a model that computes in float16 or integers (`precision`, from model.py) read the
    float16 or quantized sections instead of their own dtype's. A layer that names only whole-tensor
    criteria (cosine, topk) for this output replaces the element-wise rule of the layers before it.
    """
    if not is_ep_section(ep):
        raise ValueError(f"unknown execution provider {ep!r}; known: {EP_SECTIONS_TEXT}")
    ep_keys = ExecutionProvider.parse(ep).section_keys
    dtype_name = np.dtype(dtype).name
    section = section_for(np.dtype(dtype), precision)
    chosen: dict[str, tuple[Any, str]] = {}
    for layer in layers:
        named: dict[str, str] = {}
        for label, scope in _applicable(layer.settings, ep_keys, section, output):
            place = f"{layer.origin} [{label}]" if label else layer.origin
            for field in FIELDS:
                if field in scope:
                    chosen[field] = (scope[field], place)
                    if scope[field] is not None:
                        named[field] = place
        if any(field in named for field in _WHOLE_TENSOR) and not any(
                field in named for field in (*_ELEMENTWISE, "exact")):
            for field in _ELEMENTWISE:
                chosen[field] = (None, layer.origin)
    values = {field: _convert(field, value) for field, (value, _) in chosen.items()}
    source = _source(chosen)
    if section != dtype_name:
        source += f"; the model {precision.reason}"
    return Tolerance(**values, source=source)


def section_for(dtype: np.dtype, precision: Precision | None) -> str:
    """The dtype section a value of `dtype` reads in a model of this precision (e.g. float32 -> "float16")."""
    name = np.dtype(dtype).name
    if precision is None or np.dtype(dtype).kind != "f":
        return name
    if precision.kind == "quantized" or np.dtype(dtype).itemsize > np.dtype(precision.kind).itemsize:
        return precision.kind
    return name


def tolerance_for_value(ep: str, dtype: np.dtype, precision: Precision | None = None,
                        layers: Sequence[ToleranceLayer] = (), output: str = "") -> Tolerance:
    """The tolerance for any value of `dtype` (an output, or an intermediate a localiser compares) on `ep`
    in a model of this precision: the built-in defaults, then `layers`."""
    return resolve([BUILTIN, *layers], ep=ep, dtype=dtype, output=output, precision=precision)


def _applicable(
    settings: Mapping[str, Any], ep_keys: tuple[str, ...], dtype: str, output: str
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(section label, section) of one layer that apply, least specific first."""
    yield from _scopes(settings, "", ep_keys, dtype)
    per_output = settings.get(OUTPUTS, {}).get(output)
    if per_output is not None:
        yield from _scopes(per_output, f"{OUTPUTS}.{_key(output)}", ep_keys, dtype)


def _scopes(
    scope: Mapping[str, Any], label: str, ep_keys: tuple[str, ...], dtype: str
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    def join(*parts: str) -> str:
        return " ".join(part for part in (label, *parts) if part)

    yield label, scope
    eps = [(key, scope[key]) for key in ep_keys if key in scope]
    for key, section in eps:
        yield join(_key(key)), section
    if dtype in scope:
        yield join(dtype), scope[dtype]
    for key, section in eps:
        if dtype in section:
            yield join(_key(key), dtype), section[dtype]


def _source(chosen: Mapping[str, tuple[Any, str]]) -> str:
    """Fields grouped by where they were set, e.g. ``atol, rtol from X [webgpu float32]; ulp from Y``."""
    groups: dict[str, list[str]] = {}
    for field in FIELDS:
        if field in chosen and chosen[field][0] is not None:
            groups.setdefault(chosen[field][1], []).append(field)
    if not groups:
        return BUILTIN.origin
    return "; ".join(f"{', '.join(fields)} from {place}" for place, fields in groups.items())


def _convert(field: str, value: Any) -> Any:
    """Plain Python values, so numpy scalars from a marker never reach reports or JSON."""
    if value is None:
        return None
    kind = _RULES[field][0]
    if kind == _NAME:
        return str(value)
    return float(value) if kind == _NUMBER else int(value) if kind == _INTEGER else bool(value)


def _key(part: str) -> str:
    """A key as TOML would spell it, so users can search for it."""
    return part if _BARE_KEY.fullmatch(part) else f'"{part}"'


def _check_section(
    section: object, path: tuple[str, ...], origin: str, *, eps: bool, dtypes: bool, outputs: bool
) -> None:
    """Validate one section; which sub-sections it may hold depends on where it sits."""
    if not isinstance(section, Mapping):
        where = f"tolerance section {_dotted(path)!r}" if path else "tolerance settings"
        raise ToleranceError(f"{where} in {origin}: expected a table of settings, got {section!r}")
    for key, value in section.items():
        here = (*path, str(key))
        if key in _RULES:
            _check_value(key, value, here, origin)
        elif eps and is_ep_section(key):
            _check_section(value, here, origin, eps=False, dtypes=dtypes, outputs=False)
        elif dtypes and key in DTYPES:
            _check_section(value, here, origin, eps=False, dtypes=False, outputs=False)
        elif outputs and key == OUTPUTS:
            if not isinstance(value, Mapping):
                raise ToleranceError(
                    f"tolerance section {_dotted(here)!r} in {origin}: "
                    f"expected a table of output names, got {value!r}"
                )
            for name, per_output in value.items():
                _check_section(per_output, (*here, str(name)), origin, eps=True, dtypes=True, outputs=False)
        else:
            raise ToleranceError(
                f"unknown tolerance setting {_dotted(here)!r} in {origin}; "
                f"known: {_known(eps=eps, dtypes=dtypes, outputs=outputs)}"
            )


def _check_value(field: str, value: object, path: tuple[str, ...], origin: str) -> None:
    if value is None and field in _UNSETTABLE:
        return
    kind, low, high = _RULES[field]
    if kind == _BOOL:
        ok = isinstance(value, (bool, np.bool_))
    elif kind == _NAME:
        ok = isinstance(value, str) and bool(value)
    else:
        number = numbers.Integral if kind == _INTEGER else numbers.Real
        ok = isinstance(value, number) and not isinstance(value, (bool, np.bool_))
    if ok and ((low is not None and not value >= low) or (high is not None and not value <= high)):
        ok = False
    if not ok:
        raise ToleranceError(
            f"tolerance setting {_dotted(path)!r} = {value!r} in {origin}: expected {_expected(kind, low, high)}"
        )


def _expected(kind: str, low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{kind} in [{low}, {high}]"
    if low is not None:
        return f"{kind} >= {low}"
    return kind


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(_key(part) for part in path)


def _known(*, eps: bool, dtypes: bool, outputs: bool) -> str:
    known = [", ".join(FIELDS)]
    if eps:
        known.append(EP_SECTIONS_TEXT)
    if dtypes:
        known.append(f"dtype sections {', '.join(DTYPES)}")
    if outputs:
        known.append(f"{OUTPUTS} (per-output sections)")
    return "; ".join(known)


# all-MiniLM-L6-v2 quantized to int8 (quantize_dynamic, per channel) keeps cosine 0.989 (hidden states) and
# 0.993 (sentence embedding) against its float32 model; one layer's weight scale tripled drops them to 0.906
# and 0.910 (tests/test_corpus.py runs both).
QUANTIZED_COSINE = 0.98

# Defined last: creating a layer runs the validation helpers above.
BUILTIN = ToleranceLayer(
    "built-in default",
    {
        "float16": {"atol": 1e-3, "rtol": 1e-2},
        "float64": {"atol": 1e-6, "rtol": 1e-6},
        "quantized": {"cosine": QUANTIZED_COSINE},
        "wasm": {"float32": {"atol": 1e-4, "rtol": 1e-4}},
        "webnn": {"float32": {"atol": 1e-4, "rtol": 1e-3}},
        "webgpu": {"float32": {"atol": 1e-3, "rtol": 1e-3}, "float16": {"atol": 2e-2, "rtol": 1e-2}},
    },
)
