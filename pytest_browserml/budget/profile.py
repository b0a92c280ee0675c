"""ORT's own profile of a run, summarised: where the time went, node by node.

ORT-web prints its profile as Chrome-trace JSON events when profiling ends;
node events carry the op type and the provider. On JSEP WebGPU the kernels'
GPU times come separately. No browser and no pytest in here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from ..results import NodeTime, Profile


def parse(event_lines: Iterable[str], gpu_kernels: Iterable[dict]) -> Profile:
    nodes: dict[str, list] = {}
    for event in _events(event_lines):
        args = event.get("args") or {}
        if event.get("cat") != "Node" or "op_name" not in args:
            continue
        name = event.get("name", "").removesuffix("_kernel_time")
        entry = nodes.setdefault(name, [args["op_name"], args.get("provider", "?"), 0.0, 0])
        entry[2] += float(event.get("dur", 0))
        entry[3] += 1
    kernels: dict[str, list] = {}
    for kernel in gpu_kernels:
        name = kernel.get("kernelName") or str(kernel.get("kernelId"))
        entry = kernels.setdefault(name, [kernel.get("kernelType", ""), "", 0.0, 0])
        entry[2] += (float(kernel.get("endTime", 0)) - float(kernel.get("startTime", 0))) / 1000  # ns -> us
        entry[3] += 1
    return Profile(_slowest(nodes), _slowest(kernels))


def _slowest(table: dict[str, list]) -> tuple[NodeTime, ...]:
    times = [NodeTime(name, op, provider, total, calls) for name, (op, provider, total, calls) in table.items()]
    return tuple(sorted(times, key=lambda t: -t.total_us))


def _events(lines: Iterable[str]):
    """JSON events from the printed profile: one per line, or whole arrays."""
    for line in lines:
        text = line.strip().rstrip(",")
        if not text.startswith(("{", "[")):
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            continue
        yield from (value if isinstance(value, list) else [value])
