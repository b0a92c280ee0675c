"""Where ORT put each node, read from its session-creation log.

Created at log level 0, a session logs `Node placements` followed by either
` All nodes placed on [X]. Number of nodes: N` or, when the graph is split,
one ` Node(s) placed on [X]. Number of nodes: N` block per provider, each
followed by `  OpType (node name)` lines.

That verbose log costs about a third of a small model's session creation, so
on wasm, whose only provider is the CPU, the runner counts the graph's nodes
instead (before ORT's fusions, which the log would count after).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..results import PlacedNode, Placement

_ALL = re.compile(r"All nodes placed on \[(\w+)\]\. Number of nodes: (\d+)")
_SOME = re.compile(r"Node\(s\) placed on \[(\w+)\]\. Number of nodes: (\d+)")
_NODE = re.compile(r"VerifyEachNodeIsAssignedToAnEp\]\s{2,}(\S+) \((.*)\)\s*$")
_DROPPED = re.compile(r'removing requested execution provider "(\w+)"')
# ORT's own copies between devices, not model nodes.
_COPY_OPS = {"MemcpyFromHost", "MemcpyToHost"}


def parse(log: Iterable[str], requested: tuple[str, ...], shape_nodes: frozenset[str] = frozenset()) -> Placement:
    """Nodes per provider; the nodes on a provider other than `requested` are the fallback: compute nodes,
    and apart from them the `shape_nodes` (names of the graph's shape arithmetic, see model.py)."""
    per_provider: dict[str, int] = {}
    nodes: list[PlacedNode] = []
    dropped: list[str] = []
    provider = None
    for line in log:
        if match := _ALL.search(line):
            per_provider[match[1]] = int(match[2])
            provider = None
        elif match := _SOME.search(line):
            provider = match[1]
            per_provider[provider] = 0
        elif provider and (match := _NODE.search(line)):
            if match[1] not in _COPY_OPS:
                nodes.append(PlacedNode(op_type=match[1], name=match[2], provider=provider))
                per_provider[provider] += 1
        elif match := _DROPPED.search(line):
            dropped.append(match[1])
    fallback = [node for node in nodes if node.provider not in requested]
    shape = tuple(node for node in fallback if node.name in shape_nodes)
    compute = tuple(node for node in fallback if node.name not in shape_nodes)
    if not nodes:  # "All nodes placed on [X]": a fallback has no node list, only a count
        fallback_count = sum(count for name, count in per_provider.items() if name not in requested)
    else:
        fallback_count = len(compute)
    return Placement(
        nodes_per_provider=per_provider,
        fallback_nodes=compute,
        fallback_count=fallback_count,
        requested=requested,
        dropped_providers=tuple(dropped),
        shape_fallback_nodes=shape,
        shape_fallback_count=len(shape),
    )


def all_on(requested: tuple[str, ...], node_count: int) -> Placement:
    """Every node on the requested provider: wasm, whose only provider is the CPU."""
    return Placement(nodes_per_provider={requested[0]: node_count}, fallback_nodes=(), fallback_count=0,
                     requested=requested)
