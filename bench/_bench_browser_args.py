"""A pytest plugin for experiments (loaded with `-p _bench_browser_args`): extra Chromium switches from
$BENCH_BROWSER_ARGS (space-separated) appended to every browser the plugin launches. Nothing else changes."""

from __future__ import annotations

import os

from pytest_browserml import browser

_EXTRA = os.environ.get("BENCH_BROWSER_ARGS", "").split()
_original = browser.ExecutionProvider.launch_args


def _launch_args(self):
    return [*_original(self), *_EXTRA]


if _EXTRA:
    browser.ExecutionProvider.launch_args = _launch_args
