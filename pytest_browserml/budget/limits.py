"""Latency, memory and placement budgets: a model that is right but too slow, too big,
or running on the wrong device fails its test too.

Budgets come in layers, later winning per figure: `[tool.browserml.budget]` in
pyproject.toml, then the test's `@pytest.mark.budget(...)`. Within a layer an
EP section (`webgpu={...}`) beats the general settings. Times read "40 ms" or
"2 s", sizes "256 MB" or "1.5 GiB" (binary units, as pytest-memray reads them).
No pytest and no browser in here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..browser.launch import EP_SECTIONS_TEXT, ExecutionProvider, is_ep_section
from ..browser.wasm_engine import LIFTOFF
from ..results import RunResult

_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "min": 60_000.0}
_SIZE_UNITS = {"b": 1, "kb": 1 << 10, "kib": 1 << 10, "mb": 1 << 20, "mib": 1 << 20, "gb": 1 << 30, "gib": 1 << 30}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[-+]?\d+)?)\s*([a-zA-Z]+)\s*$")


@dataclass(frozen=True)
class Figure:
    label: str
    kind: str  # "time" (ms), "size" (bytes) or "count"
    read: Callable[[RunResult], float | None]
    only_on: str | None = None  # an EP without this figure is not held to it
    minimum: bool = False  # the budget is a floor, not a ceiling


FIGURES: dict[str, Figure] = {
    "latency_p50": Figure("latency p50", "time", lambda r: r.latency.median),
    "latency_p95": Figure("latency p95", "time", lambda r: r.latency.p95),
    "latency_mean": Figure("latency mean", "time", lambda r: r.latency.mean),
    "latency_max": Figure("latency max", "time", lambda r: r.latency.max),
    "first_run": Figure("first run", "time", lambda r: r.latency.first_run),
    "session_create": Figure("session create", "time", lambda r: r.latency.session_create),
    "wasm_memory": Figure("wasm memory", "size", lambda r: r.memory.wasm),
    "gpu_memory": Figure("gpu buffer memory", "size", lambda r: r.memory.gpu_buffers, only_on="webgpu"),
    "js_heap": Figure("js heap", "size", lambda r: r.memory.js_heap),
    "process_memory": Figure("browser process memory", "size", lambda r: r.memory.process),
    "max_fallback_nodes": Figure("fallback nodes", "count", lambda r: r.placement.fallback_count),
    "max_shape_nodes": Figure("shape-arithmetic nodes off the EP", "count", lambda r: r.placement.shape_fallback_count),
    # A minimum: the EP taking no node fails a run unless this is 0 (see runner.py).
    "min_ep_nodes": Figure("nodes on the EP", "count", lambda r: r.placement.requested_nodes, minimum=True),
}
_NODES_OF = {"max_fallback_nodes": lambda p: p.fallback_nodes, "max_shape_nodes": lambda p: p.shape_fallback_nodes}
_NAMES_SHOWN = 5


class BudgetExceeded(AssertionError):
    """A run was slower, bigger or more often on the CPU than its budget allows."""


class BudgetError(ValueError):
    """A budget setting that cannot be read; names the setting and where it is."""


@dataclass(frozen=True)
class Budget:
    figure: str
    limit: float  # ms, bytes or a count
    text: str  # as the user wrote it
    origin: str


@dataclass(frozen=True)
class BudgetLayer:
    origin: str  # "[tool.browserml.budget] in pyproject.toml", "marker on test_x"
    settings: Mapping[str, Any]

    def __post_init__(self) -> None:
        for key, value in self.settings.items():
            if is_ep_section(key):
                if not isinstance(value, Mapping):
                    raise BudgetError(f"budget section {key!r} in {self.origin}: expected a table of budgets")
                for figure, limit in value.items():
                    _parse(figure, limit, f"{key}.{figure}", self.origin)
            else:
                _parse(key, value, key, self.origin)


def resolve(layers: Sequence[BudgetLayer], ep: str) -> dict[str, Budget]:
    """The budgets that hold for `ep` (an id such as "webnn:gpu" reads the "webnn" section, then "webnn:gpu")."""
    budgets: dict[str, Budget] = {}
    for layer in layers:
        sections = [(layer.origin, {k: v for k, v in layer.settings.items() if not is_ep_section(k)})]
        sections += [(f"{layer.origin} [{key}]", layer.settings[key])
                     for key in ExecutionProvider.parse(ep).section_keys if isinstance(layer.settings.get(key), Mapping)]
        for origin, section in sections:
            for figure, value in section.items():
                budgets[figure] = Budget(figure, _parse(figure, value, figure, origin), str(value), origin)
    return budgets


def check(result: RunResult, budgets: Mapping[str, Budget], time_scale: float = 1.0) -> list[str]:
    """One line per budget the run exceeded; `time_scale` stretches time budgets for slow machines."""
    failures = []
    ep_name = result.ep.split(":")[0]
    for budget in budgets.values():
        figure = FIGURES[budget.figure]
        if figure.only_on and figure.only_on != ep_name:
            continue
        limit = budget.limit * (time_scale if figure.kind == "time" else 1.0)
        where = f"({budget.origin}, {result.ep}" + (f", --budget-scale {time_scale:g})" if figure.kind == "time"
                                                    and time_scale != 1.0 else ")")
        measured = figure.read(result)
        if figure.kind == "time" and result.environment.wasm_tier == LIFTOFF:
            failures.append(f"{figure.label} has a budget of {budget.text} but was measured on Liftoff-only wasm "
                            f"code, which users' browsers do not run {where}: set browserml_wasm_tier = auto")
        elif measured is None:
            failures.append(f"{figure.label} has a budget of {budget.text} but could not be measured here {where}")
        elif measured < limit if figure.minimum else measured > limit:
            line = (f"{figure.label} {format_value(measured, figure.kind)} {'<' if figure.minimum else '>'} "
                    f"budget {format_value(limit, figure.kind)} {where}")
            if budget.figure in _NODES_OF:
                nodes = _NODES_OF[budget.figure](result.placement)
                line += ":" + ("".join(f"\n  {group}" for group in grouped(nodes)) if nodes else " the whole graph")
            failures.append(line)
    return failures


def grouped(nodes) -> list[str]:
    """One line per op type and provider, e.g. "Gather x12 on CPUExecutionProvider: g0, g1, ... (7 more)"."""
    groups: dict[tuple[str, str], list[str]] = {}
    for node in nodes:
        groups.setdefault((node.op_type, node.provider), []).append(node.name)
    lines = []
    for (op_type, provider), names in sorted(groups.items()):
        count = f" x{len(names)}" if len(names) > 1 else ""
        shown = ", ".join(names[:_NAMES_SHOWN]) + (f", ... ({len(names) - _NAMES_SHOWN} more)"
                                                   if len(names) > _NAMES_SHOWN else "")
        lines.append(f"{op_type}{count} on {provider}: {shown}")
    return lines


def format_value(value: float, kind: str) -> str:
    if kind == "time":
        return f"{value / 1000:.3g} s" if value >= 1000 else f"{value:.3g} ms"
    if kind == "size":
        for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if value >= size:
                return f"{value / size:.4g} {unit}"
        return f"{value:.0f} B"
    return f"{value:g}"


def _parse(figure: str, value: Any, setting: str, origin: str) -> float:
    if figure not in FIGURES:
        raise BudgetError(f"unknown budget {setting!r} in {origin}; known: {', '.join(FIGURES)} "
                          f"and {EP_SECTIONS_TEXT}")
    kind = FIGURES[figure].kind
    if kind == "count":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BudgetError(f"budget {setting!r} = {value!r} in {origin}: expected a whole number >= 0")
        return float(value)
    units = _TIME_UNITS if kind == "time" else _SIZE_UNITS
    match = _QUANTITY.match(str(value))
    unit = match and match[2].lower() if kind == "size" else match and match[2]
    if not match or unit not in units:
        example = '"40 ms" or "2 s"' if kind == "time" else '"256 MB" or "1.5 GiB"'
        raise BudgetError(f"budget {setting!r} = {value!r} in {origin}: expected a {kind} such as {example}")
    return float(match[1]) * units[unit]
