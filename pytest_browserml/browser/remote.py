"""Browsers elsewhere, through Playwright's browser server.

A device runs `browserml serve`: Playwright's `launchServer` (from the Node
driver the playwright Python package ships) with a Chromium started with
every EP's switches. The tests connect to its ws endpoint. The remote page
never reaches an open port on the test machine: every request it makes to
the harness server's URL is intercepted by Playwright's request routing and
answered from here, over the Playwright connection itself. Models, goldens
and tensors stay on the machine running pytest.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from . import processes
from .launch import QUIET_ARGS, BrowserChoice, ExecutionProvider

# The switches of every EP at once: a served browser serves all of them.
SERVED_ARGS = [*QUIET_ARGS, "--enable-unsafe-webgpu", "--enable-unsafe-swiftshader",
               "--enable-features=Vulkan,WebMachineLearningNeuralNetwork"]

LAUNCH_SERVER = """
const { chromium } = require(process.argv[1]);
(async () => {
  const options = JSON.parse(process.argv[2]);
  const server = await chromium.launchServer(options);
  console.log(server.wsEndpoint());
  const stop = async () => { await server.close(); process.exit(0); };
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"]) process.on(signal, stop);
})().catch((error) => { console.error(error); process.exit(1); });
"""


def start_server(choice: BrowserChoice, host: str = "127.0.0.1", port: int = 0) -> tuple[subprocess.Popen, str]:
    """Start Playwright's browser server with `choice`'s browser; returns the process and its ws endpoint.

    The endpoint's path is random, so only who is given the endpoint can use the browser.
    """
    import playwright

    driver = Path(playwright.__file__).parent / "driver"
    options = {"host": host, "port": port, "headless": True, "wsPath": "/" + secrets.token_urlsafe(16),
               "args": [*SERVED_ARGS, *choice.extra_args]}
    if choice.executable:
        options["executablePath"] = str(choice.executable)
    if choice.channel:
        options["channel"] = choice.channel
    node = driver / ("node.exe" if sys.platform == "win32" else "node")
    process = subprocess.Popen([str(node), "-e", LAUNCH_SERVER, str(driver / "package"), json.dumps(options)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **dict(choice.env)},  # the browser inherits it
                               preexec_fn=_stop_with_parent if sys.platform == "linux" else None)
    try:
        endpoint = process.stdout.readline().strip()
    except BaseException:  # e.g. Ctrl-C while the browser starts
        stop_server(process)
        raise
    if not endpoint.startswith("ws://"):
        stop_server(process)
        raise RuntimeError(f"the browser server did not start: {endpoint} {process.stderr.read()}")
    return process, endpoint


def _stop_with_parent() -> None:
    """In the browser server's process, before Node starts: SIGTERM it when its parent dies, even of a
    SIGKILL that gives `browserml serve` no chance to stop it (Linux's PR_SET_PDEATHSIG)."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


STOP_GRACE_S = 10


def stop_server(process: subprocess.Popen) -> int:
    """Stop the browser server and its browser: nothing it started outlives it."""
    return processes.stop(process, STOP_GRACE_S)


CONNECT_TIMEOUT_S = 30


def connect(playwright, endpoint: str, ep: ExecutionProvider):
    from .launch import BrowserSetupError

    try:
        return playwright.chromium.connect(endpoint, timeout=CONNECT_TIMEOUT_S * 1000)
    except Exception as error:
        raise BrowserSetupError(f"cannot reach the browser server {endpoint} for {ep.id}: "
                                f"{str(error).splitlines()[0]}") from None


def route_through_playwright(page, base_url: str) -> None:
    """Answer the page's requests to `base_url` from this machine, over the Playwright connection."""
    origin = urlsplit(base_url)

    def answer(route, request) -> None:
        url = urlsplit(request.url)
        connection = http.client.HTTPConnection(origin.hostname, origin.port, timeout=300)
        try:
            connection.request(request.method, url.path + (f"?{url.query}" if url.query else ""),
                               body=request.post_data_buffer, headers={"Content-Type": "application/octet-stream"})
            response = connection.getresponse()
            route.fulfill(status=response.status, headers=dict(response.getheaders()), body=response.read())
        finally:
            connection.close()

    page.route(f"{base_url}**", answer)
