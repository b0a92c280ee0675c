"""Saved figures to compare later runs with: `--budget-save NAME`, `--budget-compare NAME`.

A baseline file holds, per machine key (EP, browser version, adapter, ORT-web
version and bundle), the figures of each (test, model). Figures measured on
another key are not comparable, so such a comparison is refused and the
message says which part of the key differs.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..results import RunResult
from .limits import FIGURES, format_value

KEY_PARTS = ("ep", "browser", "adapter", "ort_web", "bundle")
ALIASES = {"p50": "latency_p50", "median": "latency_p50", "p95": "latency_p95", "mean": "latency_mean",
           "max": "latency_max"}
_RULE = re.compile(r"^\s*(\w+)\s*:\s*([0-9]*\.?[0-9]+)\s*%\s*$")


class BaselineError(ValueError):
    """A baseline that cannot be used: missing, unreadable, or measured on another machine key."""


@dataclass(frozen=True)
class CompareRule:
    figure: str
    percent: float

    @classmethod
    def parse(cls, text: str) -> "CompareRule":
        match = _RULE.match(text)
        figure = ALIASES.get(match[1], match[1]) if match else None
        if figure not in FIGURES or FIGURES[figure].kind == "count":
            raise BaselineError(f"--budget-compare-fail {text!r}: expected FIGURE:PERCENT% such as p50:10%, with "
                                f"FIGURE one of {', '.join([*ALIASES, *(n for n, f in FIGURES.items() if f.kind != 'count')])}")
        return cls(figure, float(match[2]))


def machine_key(result: RunResult) -> dict[str, str]:
    environment = result.environment
    key = {
        "ep": environment.ep,
        "browser": environment.browser_version,
        "adapter": environment.adapter.describe() if environment.adapter else "none",
        "ort_web": environment.ort_web_version,
        "bundle": environment.ort_web_bundle,
    }
    if environment.wasm_tier != "tier-up":  # figures of Liftoff-only code never stand in for users' (tier-up)
        key["wasm_tier"] = environment.wasm_tier
    return key


def figures_of(result: RunResult) -> dict[str, float]:
    return {name: value for name, figure in FIGURES.items()
            if figure.kind != "count" and (value := figure.read(result)) is not None}


def entry_of(test: str, result: RunResult) -> dict:
    """What one run contributes to a saved baseline."""
    return {"key": machine_key(result), "run": f"{test}::{result.model.name}", "figures": figures_of(result)}


def save(path: Path, entries: list[dict]) -> None:
    """Merge `entries` into the baseline at `path` (other machine keys are kept), atomically."""
    baseline = load(path) if path.exists() else {"format": 1, "machines": []}
    for entry in entries:
        machine = next((m for m in baseline["machines"] if m["key"] == entry["key"]), None)
        if machine is None:
            machine = {"key": entry["key"], "runs": {}}
            baseline["machines"].append(machine)
        machine["runs"][entry["run"]] = entry["figures"]
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(baseline, file, indent=2, sort_keys=True)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def load(path: Path) -> dict:
    try:
        baseline = json.loads(path.read_text())
    except FileNotFoundError:
        raise BaselineError(f"no baseline {path}: save one first with --budget-save {path.stem}") from None
    except (OSError, json.JSONDecodeError) as error:
        raise BaselineError(f"baseline {path} cannot be read: {error}") from None
    if not isinstance(baseline, dict) or not isinstance(baseline.get("machines"), list):
        raise BaselineError(f"baseline {path} is not a pytest-browserml baseline")
    return baseline


def compare(baseline: Mapping, name: str, test: str, result: RunResult, rules: list[CompareRule]) -> list[str]:
    """One line per figure that regressed past its rule; BaselineError when the keys differ."""
    key = machine_key(result)
    same_ep = [m for m in baseline["machines"] if m["key"].get("ep") == key["ep"]]
    if not same_ep:
        raise BaselineError(f"baseline {name} has no figures for EP {key['ep']}")
    machine = next((m for m in same_ep if m["key"] == key), None)
    if machine is None:
        saved = same_ep[0]["key"]
        differing = "; ".join(f"{part} {saved.get(part)!r} in the baseline, {key[part]!r} now"
                              for part in KEY_PARTS if saved.get(part) != key[part])
        raise BaselineError(f"baseline {name} was measured elsewhere, refusing to compare: {differing}")
    saved = machine["runs"].get(f"{test}::{result.model.name}")
    if saved is None:
        return []
    figures = figures_of(result)
    lines = []
    for rule in rules:
        before, now = saved.get(rule.figure), figures.get(rule.figure)
        if before and now is not None and now > before * (1 + rule.percent / 100):
            figure = FIGURES[rule.figure]
            lines.append(f"{figure.label} {format_value(now, figure.kind)} is {100 * (now / before - 1):.0f}% above "
                         f"baseline {name}'s {format_value(before, figure.kind)} (allowed {rule.percent:g}%, {key['ep']})")
    return lines
