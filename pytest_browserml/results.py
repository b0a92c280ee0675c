"""What one `browserml.run(...)` returns: outputs and the figures measured with them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class ModelRunError(Exception):
    """onnxruntime-web could not run the model on this EP; the text has ORT's message, the EP and the model."""


PROFILE_TOP = 10  # nodes and kernels a profile shows


@dataclass(frozen=True)
class NodeTime:
    name: str
    op_type: str
    provider: str
    total_us: float
    calls: int


@dataclass(frozen=True)
class Profile:
    nodes: tuple[NodeTime, ...]  # slowest first
    gpu_kernels: tuple[NodeTime, ...]  # slowest first; empty where the adapter cannot time kernels

    def format(self, top: int = PROFILE_TOP) -> str:
        lines = [f"{'node':<40} {'op':<18} {'provider':<26} {'calls':>5} {'total ms':>9}"]
        lines += [f"{n.name[:40]:<40} {n.op_type[:18]:<18} {n.provider[:26]:<26} {n.calls:>5} {n.total_us / 1000:>9.3f}"
                  for n in self.nodes[:top]]
        if self.gpu_kernels:
            lines.append("")
            lines.append(f"{'GPU kernel':<40} {'program':<18} {'':<26} {'calls':>5} {'total ms':>9}")
            lines += [f"{k.name[:40]:<40} {k.op_type[:18]:<18} {'':<26} {k.calls:>5} {k.total_us / 1000:>9.3f}"
                      for k in self.gpu_kernels[:top]]
        return "\n".join(lines)


@dataclass(frozen=True)
class Latency:
    """Milliseconds measured in the page with performance.now(), warm-up runs excluded.

    `session_create` and `first_run` belong to the session: when it came from
    the page's cache (`session_cached`), they are the figures of its creation.
    For webgpu the timed span includes reading the outputs back to the CPU.
    """

    session_create: float | None
    first_run: float | None
    session_cached: bool
    rounds: int
    min: float | None
    max: float | None
    mean: float | None
    median: float | None
    p95: float | None
    stddev: float | None
    iqr: float | None
    times: tuple[float, ...] = ()

    @property
    def p50(self) -> float | None:
        return self.median


@dataclass(frozen=True)
class Memory:
    """Peaks in bytes; None where this browser cannot measure it (never 0 for unknown)."""

    wasm: int | None  # ORT's wasm linear memory (it only grows, so its size is its peak)
    gpu_buffers: int | None  # live bytes of buffers created through the page's WebGPU device
    js_heap: int | None  # used JS heap of the page after the run (performance.memory)
    process: int | None = None  # peak RSS during the run, summed over the browser's processes (local browsers)


@dataclass(frozen=True)
class PlacedNode:
    op_type: str
    name: str
    provider: str


@dataclass(frozen=True)
class Placement:
    """Where ORT put the graph's nodes, from its session-creation log."""

    nodes_per_provider: dict[str, int]
    fallback_nodes: tuple[PlacedNode, ...]  # compute nodes not on the requested EP (named when the graph was split)
    fallback_count: int
    requested: tuple[str, ...]
    dropped_providers: tuple[str, ...] = ()  # EPs ORT removed from the session as unavailable
    # Shape and index arithmetic (Shape, Gather, Range, Unsqueeze, Concat ... on int64) that ORT keeps on the CPU
    # by design: not counted in fallback_count.
    shape_fallback_nodes: tuple[PlacedNode, ...] = ()
    shape_fallback_count: int = 0

    @property
    def requested_nodes(self) -> int:
        """Nodes on the requested EP."""
        return sum(self.nodes_per_provider.get(name, 0) for name in self.requested)

    @property
    def requested_took_graph(self) -> bool:
        """True when the requested EP has nodes, or when ORT folded the whole graph into constants."""
        return not any(self.nodes_per_provider.values()) or any(
            self.nodes_per_provider.get(name, 0) for name in self.requested)


@dataclass(frozen=True)
class Transfer:
    """Time the page spent receiving the inputs and sending the outputs back, in ms."""

    input_bytes: int
    input_ms: float
    output_bytes: int
    output_ms: float


@dataclass(frozen=True)
class Adapter:
    """The page's WebGPU adapter, as navigator.gpu.requestAdapter() describes it."""

    vendor: str
    architecture: str
    device: str
    description: str
    is_fallback: bool  # a software adapter such as SwiftShader
    shader_f16: bool  # without it, float16 models cannot run on WebGPU
    subgroups: bool = False
    driver: str = ""  # with --enable-webgpu-developer-features
    backend: str = ""  # e.g. vulkan
    limits: dict = field(default_factory=dict, compare=False)  # maxBufferSize ...: what bounds a model's tensors

    @classmethod
    def from_probe(cls, info: dict | None) -> "Adapter | None":
        if not info:
            return None
        return cls(info["vendor"], info["architecture"], info["device"], info["description"],
                   info["isFallbackAdapter"], info["shaderF16"], info.get("subgroups", False),
                   info.get("driver", ""), info.get("backend", ""), info.get("limits") or {})

    @property
    def name(self) -> str:
        """Vendor and architecture, e.g. "google swiftshader" or "nvidia": what report rows show."""
        return " ".join(filter(None, (self.vendor or "?", self.architecture)))

    def describe(self) -> str:
        kind = "fallback adapter" if self.is_fallback else "hardware adapter"
        f16 = "shader-f16" if self.shader_f16 else "no shader-f16"
        return f"{self.name} ({kind}, {f16})"


@dataclass(frozen=True)
class Environment:
    """Where a run happened, for reports and golden sidecars."""

    ep: str
    browser: str
    browser_version: str
    ort_web_version: str
    ort_web_bundle: str
    adapter: Adapter | None = None
    device: str = "local"  # "local" or the browser server, and the browser's platform
    wasm_tier: str = "tier-up"  # V8's compiler tier for ORT's wasm: "tier-up" (as users' browsers) or "liftoff"
    wasm_threads: int | None = None  # ORT-web's threads per session in this page (ort.env.wasm.numThreads)


@dataclass(frozen=True)
class RunResult:
    model: Path
    model_sha256: str
    ep: str
    inputs: dict[str, np.ndarray] = field(repr=False)
    outputs: dict[str, np.ndarray]
    latency: Latency
    memory: Memory
    placement: Placement
    environment: Environment
    transfer: Transfer
    log: tuple[str, ...] = field(default=(), repr=False)  # ORT's session-creation log (warnings and placement)
    profile: Profile | None = field(default=None, repr=False)  # with --browserml-profile
