"""How the browser's WebAssembly engine runs onnxruntime-web: V8's compiler tier and ORT's thread count.

Tier: V8 first compiles a wasm module with Liftoff (fast to compile, slower code), then re-optimises
hot functions with TurboFan in background threads ("tier-up", what users' browsers do). ORT-web's
module is large: each browser spends 10-16 s of CPU on that re-optimisation, which a suite of
test-sized models (ONNX's node suite: one run per session) never earns back, and which N workers'
browsers pay N times. `liftoff` (`--js-flags=--liftoff-only`) skips it. Latency measured on Liftoff
code is not what users see, so `auto` keeps tier-up for `browserml` tests (they time their runs and
hold them to budgets) and uses Liftoff for ONNX test-data folders (one untimed run per data set).
Measured on ONNX's node suite (bench/bench_xdist.py --tiers), 16 cores: -n 16 8.2 s on Liftoff against
11.9 s on tier-up, -n 0 14.7 s (1 thread a page) against 16.1 s (4); 2 cores, -n 0: Liftoff about 3x faster.

Threads: ORT-web's default is min(4, ceil(cores / 2)) threads per session, per page; N pytest-xdist
workers each running that many oversubscribe the machine. `auto` lowers it to the cores this
worker has: the cores this process may use divided by PYTEST_XDIST_WORKER_COUNT. Liftoff pages (under
`auto`, the untimed ONNX test-data cases) run one thread: on test-sized models ORT's other threads only
spin. Measured on the node suite, 16 cores: -n 8 11.1 s on 1 thread a page against 12.2 s on 2 (74 s of
CPU against 93 s); -n 0 14.7 s on 1 against 15.9 s on 4 (18 s of CPU against 35 s).
"""

from __future__ import annotations

import math
import os

TIER_UP = "tier-up"
LIFTOFF = "liftoff"
AUTO = "auto"
TIERS = (AUTO, TIER_UP, LIFTOFF)
_TIER_ARGS = {TIER_UP: (), LIFTOFF: ("--js-flags=--liftoff-only",)}


class EngineSettingError(ValueError):
    """A tier or thread setting that cannot work; the text names the setting."""


def parse_tier(text: str) -> str:
    tier = text.strip().lower()
    if tier not in TIERS:
        raise EngineSettingError(f"browserml_wasm_tier = {text!r}: choose from {', '.join(TIERS)}")
    return tier


def tier_for(setting: str, timed: bool) -> str:
    """The tier a browser runs: the setting, or under `auto` tier-up for timed tests and Liftoff otherwise."""
    if setting != AUTO:
        return setting
    return TIER_UP if timed else LIFTOFF


def describe(setting: str) -> str:
    """The tier setting in words, for the report header."""
    if setting == AUTO:
        return f"tier auto ({TIER_UP} for browserml tests, {LIFTOFF} for ONNX test-data folders)"
    return f"tier {setting}"


def launch_args(tier: str) -> tuple[str, ...]:
    """Chromium switches for this tier (tier-up is V8's default: none)."""
    return _TIER_ARGS[tier]


def parse_threads(text: str) -> int | None:
    """None for `auto`, else a whole number of threads >= 1."""
    if text.strip().lower() == AUTO:
        return None
    try:
        threads = int(text)
    except ValueError:
        threads = 0
    if threads < 1:
        raise EngineSettingError(f"browserml_wasm_threads = {text!r}: expected auto or a whole number >= 1")
    return threads


def auto_threads(cores: int, workers: int) -> int:
    """ORT-web's own default, min(4, ceil(cores / 2)), but never more than this worker's share of the cores."""
    ort_default = min(4, math.ceil(cores / 2))
    return max(1, min(ort_default, cores // max(1, workers)))


def cores_available() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_count() -> int:
    """pytest-xdist's number of workers (each runs its own browsers); 1 without xdist."""
    try:
        return max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    except ValueError:
        return 1


def threads(setting: int | None, tier: str) -> int:
    """Threads per page of this tier: the setting, or under `auto` 1 on Liftoff and this worker's share else."""
    if setting is not None:
        return setting
    return 1 if tier == LIFTOFF else auto_threads(cores_available(), worker_count())


def describe_threads(setting: int | None) -> str:
    """The thread setting in words, for the report header."""
    if setting is not None:
        return f"{setting} thread(s) per page"
    return f"threads auto ({threads(None, TIER_UP)} a page on {TIER_UP}, 1 on {LIFTOFF})"


def load_options(threads: int) -> dict:
    """What harness.js load() takes for the engine: ORT's thread count, and a one-node model whose session
    the page creates in the background, so that ORT compiles its wasm module (about a second of the
    browser's time) while pytest goes on (collecting, waiting for its first test) instead of in the first test."""
    return {"numThreads": threads, "warmupModelBase64": WARMUP_MODEL_BASE64}


# y = Identity(x), x and y float[1], opset 13, IR 8: onnx.helper's bytes, kept as text so that opening a page
# does not first wait for `import onnx` (0.6 s of a worker's start)
WARMUP_MODEL_BASE64 = ("CAg6PAoQCgF4EgF5IghJZGVudGl0eRIGd2FybXVwWg8KAXgSCgoICAESBAoCCAFiDwoBeRIKCggIARIECgIIAUIE"
                       "CgAQDQ==")
