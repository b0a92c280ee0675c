"""Tensor transport: 1 MB, 16 MB and 256 MB of float32 through an Identity model on wasm, each way.

MB/s into the page and out of it, as the page times them (RunResult.transfer: the input's
fetch from the plugin's server and the outputs' PUT back, performance.now() in the page),
and what the whole browserml.run() costs beside them. Target: at least 1 GB/s each way
at 256 MB.

Run: python bench/bench_transport.py [--sizes 1 16 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import _common
import numpy as np
from _common import MB, figure, median

NAME = "transport"
TARGET_MB_S = 1000  # 1 GB/s, in MiB/s as the rest of the figures (MB = 2**20 bytes here)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 256], help="MiB")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ep", default="wasm")
    args = parser.parse_args()

    from pytest_browserml.browser import page as page_module
    from pytest_browserml.browser.launch import ExecutionProvider
    from pytest_browserml.runner import BrowserML, Runtime
    from tests import modelzoo

    print(f"[{NAME}] load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ep = ExecutionProvider.parse(args.ep)
    settings = _common.settings(ep)
    runtime = Runtime(settings)
    calls: list[float] = []
    original_call = page_module.HarnessPage.call

    def timed_call(self, function, arg, *rest, **kwargs):
        started = time.perf_counter()
        try:
            return original_call(self, function, arg, *rest, **kwargs)
        finally:
            calls.append((time.perf_counter() - started) * 1000)

    page_module.HarnessPage.call = timed_call
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = modelzoo.identity(folder / "identity.onnx")
        browserml = BrowserML(runtime.browser_for(ep), settings, (folder,))
        try:
            browserml.run(model, {"x": np.zeros(16, np.float32)})  # session creation is not transport
            inline_or_http(browserml, model)
            for megabytes in args.sizes:
                measure(browserml, model, megabytes, args.repeats, calls)
                ceilings(runtime, megabytes, args.repeats)
        finally:
            runtime.close()
            page_module.HarnessPage.call = original_call


def measure(browserml, model: Path, megabytes: int, repeats: int, calls: list[float]) -> None:
    x = np.random.default_rng(0).standard_normal(megabytes * MB // 4).astype(np.float32)
    rows = []
    for _ in range(repeats):
        calls.clear()
        started = time.perf_counter()
        result = browserml.run(model, {"x": x}, warmup=0, iterations=1)
        wall = (time.perf_counter() - started) * 1000
        if not np.array_equal(result.outputs["y"], x):
            raise SystemExit("the round trip changed the tensor")
        t = result.transfer
        rows.append({
            "in": t.input_bytes / MB / (t.input_ms / 1000), "out": t.output_bytes / MB / (t.output_ms / 1000),
            "in_ms": t.input_ms, "out_ms": t.output_ms, "wall": wall, "call": calls[-1] if calls else None,
            "run": result.latency.times[0] if result.latency.times else None,
        })
        del result
    rate_in, rate_out = median(r["in"] for r in rows), median(r["out"] for r in rows)
    size = f"{megabytes} MB"
    figure(NAME, f"{size} into the page (fetch from the plugin's server)", rate_in, "MB/s",
           f">= 1000 MB/s" if megabytes >= 256 else None, rate_in >= TARGET_MB_S if megabytes >= 256 else None,
           note=f"median of {len(rows)}; {median(r['in_ms'] for r in rows):.1f} ms; best {max(r['in'] for r in rows):.0f}")
    figure(NAME, f"{size} out of the page (PUT to the plugin's server)", rate_out, "MB/s",
           f">= 1000 MB/s" if megabytes >= 256 else None, rate_out >= TARGET_MB_S if megabytes >= 256 else None,
           note=f"median of {len(rows)}; {median(r['out_ms'] for r in rows):.1f} ms; best {max(r['out'] for r in rows):.0f}")
    wall = median(r["wall"] for r in rows)
    call = median(r["call"] for r in rows)
    in_page = median(r["in_ms"] + r["out_ms"] + (r["run"] or 0) for r in rows)
    figure(NAME, f"{size} whole browserml.run() round trip", wall, "ms",
           note=f"{2 * megabytes / (wall / 1000):.0f} MB/s for both ways end to end; page.call {call:.0f} ms, of "
                f"which in-page transfers + Identity run {in_page:.0f} ms (run {median(r['run'] for r in rows):.1f} ms); "
                f"Python outside the call {wall - call:.0f} ms")


def inline_or_http(browserml, model: Path, rounds: int = 9) -> None:
    """Small tensors ride inside page.evaluate as base64 up to runner.INLINE_LIMIT: the round trip with that path
    and with HTTP forced (INLINE_LIMIT patched to 0 in this process only) at a few sizes under the limit."""
    from pytest_browserml import runner

    default = runner.INLINE_LIMIT
    rows = []
    try:
        for kib in (4, 64, 128, default // 1024 - 4):
            x = np.random.default_rng(0).standard_normal(kib * 1024 // 4).astype(np.float32)
            walls = {}
            for limit in (default, 0) * rounds:
                runner.INLINE_LIMIT = limit
                started = time.perf_counter()
                browserml.run(model, {"x": x}, warmup=0, iterations=1)
                walls.setdefault(limit, []).append((time.perf_counter() - started) * 1000)
            rows.append(f"{kib} KiB: inline {median(walls[default]):.1f} ms, HTTP {median(walls[0]):.1f} ms")
    finally:
        runner.INLINE_LIMIT = default
    figure(NAME, f"browserml.run round trip under INLINE_LIMIT ({default // 1024} KiB), each way the same size", None,
           "", note="; ".join(rows))


RAW_GET = """async (url) => {
  const started = performance.now();
  const buffer = await (await fetch(url)).arrayBuffer();
  return [performance.now() - started, buffer.byteLength];
}"""
RAW_PUT = """async ([url, n]) => {
  const data = new Uint8Array(n);
  data.fill(7);
  const started = performance.now();
  const response = await fetch(url, {method: "PUT", body: new Blob([data])});
  return [performance.now() - started, response.status];
}"""


def ceilings(runtime, megabytes: int, repeats: int) -> None:
    """What the path can do without the plugin's harness: the browser's own fetch/PUT against the same server,
    and the server against a Python client (no browser)."""
    import http.client
    from urllib.parse import urlsplit

    server, page = runtime.server, runtime.browser_for(runtime.settings.eps[0]).page().page
    n = megabytes * MB
    data = np.full(n, 7, np.uint8)
    rates: dict[str, list[float]] = {}
    for _ in range(repeats):
        url = server.offer([memoryview(data)])
        ms, _ = page.evaluate(RAW_GET, url)
        rates.setdefault("browser fetch", []).append(megabytes / (ms / 1000))
        mailbox = server.mailbox()
        ms, _ = page.evaluate(RAW_PUT, [mailbox, n])
        server.collect(mailbox)
        rates.setdefault("browser PUT", []).append(megabytes / (ms / 1000))
        url = server.offer([memoryview(data)])
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port)
        started = time.perf_counter()
        connection.request("GET", parts.path)
        response = connection.getresponse()
        response.readinto(bytearray(n))
        rates.setdefault("Python client GET", []).append(megabytes / (time.perf_counter() - started))
        mailbox = server.mailbox()
        started = time.perf_counter()
        connection.request("PUT", urlsplit(mailbox).path, body=memoryview(data))
        connection.getresponse().read()
        rates.setdefault("Python client PUT", []).append(megabytes / (time.perf_counter() - started))
        server.collect(mailbox)
        connection.close()
    figure(NAME, f"{megabytes} MB ceilings (same server, no harness)", None, "",
           note=", ".join(f"{name} {median(values):.0f} MB/s" for name, values in rates.items()))


if __name__ == "__main__":
    main()
