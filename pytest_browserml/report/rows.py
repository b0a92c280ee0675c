"""One row of the session's reports, a test on one EP: what the JSON ledger, the terminal table and the HTML
page all read (a module of its own, so the ledger and the HTML page need not import each other)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class TestRow:
    """One test on one EP."""

    nodeid: str
    test: str  # without the EP id
    ep: str
    adapter: str | None = None  # the WebGPU adapter it ran on, None off webgpu
    # passed, failed, error, skipped, xfailed, xpassed; interrupted until its call reports (Ctrl-C mid-test
    # leaves no call report: such a test must never read as passed)
    verdict: str = "interrupted"
    duration_s: float = 0.0
    message: str | None = None
    runs: list[dict] = field(default_factory=list)
    goldens: list[dict] = field(default_factory=list)

    @property
    def worst_abs(self) -> float | None:
        return _max(o["max_abs_error"] for g in self.goldens for o in g["outputs"])

    @property
    def worst_ulp(self) -> float | None:
        return _max(o["max_ulp"] for g in self.goldens for o in g["outputs"])

    @property
    def p50_ms(self) -> float | None:
        return _max(run["figures"].get("latency_p50") for run in self.runs)

    @property
    def peak_memory(self) -> float | None:
        """The EP's own memory: GPU buffers on webgpu, the wasm heap elsewhere."""
        figure = "gpu_memory" if self.ep.startswith("webgpu") else "wasm_memory"
        return _max(run["figures"].get(figure) for run in self.runs)

    @property
    def fallback_nodes(self) -> int | None:
        return _max(run.get("fallback_nodes") for run in self.runs)

    @property
    def shape_nodes(self) -> int | None:
        """Shape arithmetic off the EP, which ORT keeps on the CPU by design (not in fallback_nodes)."""
        return _max(run.get("shape_nodes") for run in self.runs)

    def to_json(self) -> dict:
        """A copy, since _finite builds new dicts and lists (dataclasses.asdict's deep copy took 0.3 s of the
        node suite's 1,884 rows)."""
        return _finite(vars(self))


def _max(values) -> float | None:
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return max(present) if present else None


def _finite(value):
    """JSON has no NaN or Infinity: such figures are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
