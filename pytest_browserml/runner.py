"""Running a model on one EP: the per-worker browsers and the `browserml` fixture object.

`Runtime` owns what a pytest worker shares (Playwright, the local server,
onnxruntime-web, one `EpBrowser` per EP). `EpBrowser` owns one EP's browser
and page and replaces them when they crash or hang. `BrowserML` is what a
test receives.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import budgets, golden_check, images
from . import profile as profiles
from . import placement as placement_log
from . import provision, stats, transport
from .budgets import Budget
from .browser import BrowserChoice, BrowserSetupError, ExecutionProvider
from .golden_check import GoldenPolicy, GoldenTarget
from .page import HarnessPage, PageFailure
from .results import Adapter, Environment, Memory, Placement, RunResult, Transfer
from .server import HarnessServer

BUNDLES = {"all": "ort.all.min.mjs", "webgpu": "ort.webgpu.min.mjs"}
VALIDATION_ERROR = "validation error"
INLINE_LIMIT = 256 * 1024  # payloads up to this size travel inside the call as base64


class ModelRunError(Exception):
    """onnxruntime-web could not run the model on this EP; the text has ORT's message, the EP and the model."""


@dataclass(frozen=True)
class Settings:
    eps: tuple[ExecutionProvider, ...]
    strict: bool
    timeout_s: float
    ort_web_version: str
    ort_web_bundle: str
    browser_executable: str | None
    browser_channel: str | None
    auto_install: bool
    warmup: int
    iterations: int
    budget_scale: float = 1.0
    profile: bool = False


@dataclass(frozen=True)
class ModelFiles:
    """A model file and its external data, as the page fetches them."""

    path: Path
    sha256: str
    url: str
    external_data: tuple[dict, ...]  # [{"path": location, "data": url}] for ORT's externalData option
    symbolic_inputs: Mapping[str, tuple[str | None, ...]]  # input name -> dimension names (None where fixed)

    @property
    def session_key(self) -> str:
        return self.sha256

    def dimensions_of(self, input_specs: list[dict]) -> dict[str, int]:
        """Values of the model's symbolic dimensions in these inputs (for ORT's freeDimensionOverrides)."""
        values = {}
        for spec in input_specs:
            for dimension, size in zip(self.symbolic_inputs.get(spec["name"], ()), spec["shape"]):
                if dimension:
                    values[dimension] = size
        return dict(sorted(values.items()))


class Runtime:
    """What one pytest process shares across tests; started on first use."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._playwright_manager = None
        self.playwright = None
        self.server: HarnessServer | None = None
        self.browser_choice: BrowserChoice | None = None
        self._browsers: dict[ExecutionProvider, EpBrowser] = {}
        self._models: dict[tuple, ModelFiles] = {}

    def start(self) -> None:
        if self.server is not None:
            return
        from playwright.sync_api import sync_playwright

        if self.settings.ort_web_bundle not in BUNDLES:
            raise BrowserSetupError(
                f"browserml_ort_web_bundle = {self.settings.ort_web_bundle!r}: choose from {', '.join(BUNDLES)}"
            )
        ort = provision.ort_web(self.settings.ort_web_version, fetch=self.settings.auto_install)
        self.browser_choice = BrowserChoice.resolve(
            self.settings.browser_executable, self.settings.browser_channel, fetch=self.settings.auto_install
        )
        self.server = HarnessServer(ort.dist)
        self._playwright_manager = sync_playwright()
        self.playwright = self._playwright_manager.start()

    def browser_for(self, ep: ExecutionProvider) -> "EpBrowser":
        self.start()
        if ep not in self._browsers:
            self._browsers[ep] = EpBrowser(self, ep)
        return self._browsers[ep]

    def model_files(self, path: Path) -> ModelFiles:
        """Register a model (and its external data files) with the server; cached by file identity."""
        stat = path.stat()
        key = (path, stat.st_mtime_ns, stat.st_size)
        if key not in self._models:
            sha256 = _file_sha256(path)
            route = f"models/{sha256}"
            graph = _read_graph(path)
            external = tuple(
                {"path": location, "data": self.server.register_file(f"{route}/{location}", path.parent / location)}
                for location in _external_data_locations(graph)
            )
            url = self.server.register_file(f"{route}/{path.name}", path)
            self._models[key] = ModelFiles(path, sha256, url, external, _symbolic_inputs(graph))
        return self._models[key]

    def close(self) -> None:
        for ep_browser in self._browsers.values():
            ep_browser.close()
        self._browsers.clear()
        if self.playwright is not None:
            self._playwright_manager.__exit__(None, None, None)
            self.playwright = None
        if self.server is not None:
            self.server.close()
            self.server = None


class EpBrowser:
    """One EP's browser and harness page; a crashed page or browser is replaced on next use."""

    def __init__(self, runtime: Runtime, ep: ExecutionProvider):
        self.runtime = runtime
        self.ep = ep
        self._browser = None
        self._page: HarnessPage | None = None
        self._probe: dict | None = None
        self._sessions: dict[str, tuple[tuple[str, ...], Placement]] = {}  # session key -> (log, placement)

    @property
    def bundle(self) -> str:
        return BUNDLES[self.runtime.settings.ort_web_bundle]

    def page(self) -> HarnessPage:
        if self._browser is None or not self._browser.is_connected():
            self._browser = self.runtime.browser_choice.launch(self.runtime.playwright, self.ep)
            self._page = None
        if self._page is None or not self._page.usable:
            self._page = HarnessPage(self._browser, self.runtime.server, self.bundle, self.runtime.settings.timeout_s)
        return self._page

    def probe(self) -> dict:
        """Doctor's verdict for this EP in this browser: {ok, reason, adapter, webnnDevices}."""
        if self._probe is None:
            self._probe = self.page().call("probe", self.ep.to_js())
        return self._probe

    def environment(self) -> Environment:
        return Environment(
            ep=self.ep.id,
            browser=self.runtime.browser_choice.describe(),
            browser_version=self._browser.version,
            ort_web_version=self.page().info["ortVersion"],
            ort_web_bundle=self.bundle,
            adapter=Adapter.from_probe(self.probe().get("adapter")),
        )

    def run(self, model: ModelFiles, feeds: Mapping[str, Any], warmup: int, iterations: int,
            profile: bool = False) -> RunResult:
        __tracebackhide__ = True
        server = self.runtime.server
        specs, parts = transport.encode(feeds)
        input_bytes = sum(part.nbytes for part in parts)
        # WebNN builds a graph of static shapes: fix the model's symbolic dimensions from these inputs.
        free_dimensions = model.dimensions_of(specs) if self.ep.name == "webnn" else {}
        session_key = f"{model.session_key}|{self.ep.id}|{free_dimensions}" + ("|profile" if profile else "")
        request = {
            "sessionKey": session_key,
            "modelUrl": model.url,
            "externalData": list(model.external_data),
            "freeDimensions": free_dimensions,
            "ep": self.ep.to_js(),
            "inputs": specs,
            "warmup": warmup,
            "iterations": iterations,
            "inlineLimit": INLINE_LIMIT,
            "profile": profile,
            "outputUrl": server.mailbox(),
        }
        if input_bytes <= INLINE_LIMIT:
            request["inputBase64"] = base64.b64encode(b"".join(parts)).decode()
        else:
            request["inputUrl"] = server.offer(parts)
        page = self.page()
        page.new_console_lines()  # what earlier runs left behind is not this run's
        page.processes.reset_peak_rss()
        try:
            answer = page.call("run", request)
        except PageFailure as failure:
            raise ModelRunError(f"{self._where(model)}: {failure}") from None
        finally:
            server.discard(request.get("inputUrl", ""))
        if answer.get("outputBase64") is not None:
            payload = bytearray(base64.b64decode(answer["outputBase64"]))
        else:
            payload = server.collect(request["outputUrl"]) or bytearray()
        if not answer["ok"]:
            raise ModelRunError(f"{self._where(model)}: onnxruntime-web failed: {answer['error']}")
        validation = [line for line in page.new_console_lines() if VALIDATION_ERROR in line]
        if validation:
            raise ModelRunError(f"{self._where(model)}: the browser reported a WebGPU error:\n" + "\n".join(validation))
        if answer["log"] is not None:  # a new session: its creation log says where the nodes went
            self._sessions[session_key] = (
                tuple(line for line in answer["log"] if "[W:" in line or "[E:" in line or "placed on" in line),
                placement_log.parse(answer["log"], self.ep.provider_names()),
            )
        log, placement = self._sessions[session_key]
        if not placement.requested_took_graph:
            raise ModelRunError(
                f"{self._where(model)}: {self.ep.id} did not take the graph; ORT placed "
                + ", ".join(f"{count} node(s) on {name}" for name, count in placement.nodes_per_provider.items())
                + (f" after removing the unavailable {', '.join(placement.dropped_providers)} EP" if placement.dropped_providers else "")
                + ". No silent fallback: this run does not count as a run on " + self.ep.id
            )
        memory = answer["memory"]
        return RunResult(
            model=model.path,
            model_sha256=model.sha256,
            ep=self.ep.id,
            inputs={name: np.asarray(value) for name, value in feeds.items()},
            outputs=transport.decode(answer["outputs"], payload),
            latency=stats.latency(
                answer["timesMs"],
                session_create_ms=answer["createMs"],
                first_run_ms=answer["firstRunMs"],
                session_cached=answer["cached"],
            ),
            memory=Memory(wasm=memory["wasm"], gpu_buffers=memory["gpuBuffers"] if self.ep.name == "webgpu" else None,
                          js_heap=memory["jsHeap"], process=page.processes.peak_rss()),
            placement=placement,
            environment=self.environment(),
            transfer=Transfer(input_bytes=input_bytes, input_ms=answer["transfer"]["inputMs"],
                              output_bytes=len(payload), output_ms=answer["transfer"]["outputMs"]),
            log=log,
            profile=profiles.parse(answer["profile"]["events"], answer["profile"]["gpuKernels"]) if profile else None,
        )

    def _where(self, model: ModelFiles) -> str:
        return f"{model.path} on {self.ep.id}"

    def close(self) -> None:
        if self._browser is not None:
            try:
                self._browser.close()
            except Exception:  # already gone with a crash
                pass
            self._browser = None


class BrowserML:
    """The `browserml` fixture: run models on the EP of the running test."""

    def __init__(self, ep_browser: EpBrowser, settings: Settings, roots: tuple[Path, ...],
                 golden_target: GoldenTarget | None = None, golden_policy: GoldenPolicy | None = None,
                 budgets: Mapping[str, Budget] | None = None, on_result: Callable[[RunResult], None] | None = None):
        self._ep_browser = ep_browser
        self._settings = settings
        self._roots = roots
        self._golden_target = golden_target
        self._golden_policy = golden_policy
        self._budgets = budgets or {}
        self._on_result = on_result

    @property
    def ep(self) -> str:
        """The EP of the running test, as given to --browser-ep (e.g. "webgpu" or "webnn:gpu")."""
        return self._ep_browser.ep.id

    @property
    def adapter(self) -> Adapter | None:
        """The WebGPU adapter of this EP's page (None on EPs other than webgpu)."""
        return self._ep_browser.environment().adapter

    def run(self, model: str | Path, inputs: Mapping[str, Any], *, warmup: int | None = None,
            iterations: int | None = None) -> RunResult:
        """Run `model` with `inputs` (name -> array) in the browser; outputs keep ORT's exact dtype and shape.

        The test's budgets (marker and project) apply to every run: one exceeded fails the test.
        """
        __tracebackhide__ = True
        files = self._ep_browser.runtime.model_files(self.resolve(model))
        result = self._ep_browser.run(
            files,
            inputs,
            warmup=self._settings.warmup if warmup is None else warmup,
            iterations=self._settings.iterations if iterations is None else iterations,
            profile=self._settings.profile,
        )
        if self._on_result:
            self._on_result(result)
        exceeded = budgets.check(result, self._budgets, self._settings.budget_scale)
        if exceeded:
            raise budgets.BudgetExceeded(f"{result.model.name} on {result.ep} exceeded its budget:\n" + "\n".join(exceeded))
        return result

    def image_input(self, path: str | Path, *, size: tuple[int, int] | None = None, layout: str = "NCHW",
                    mean=None, std=None, dtype: str = "float32"):
        """An image file as a batch-of-one input: RGB, resized to `size` (width, height), scaled to [0, 1],
        then `(x - mean) / std` per channel; see images.py."""
        return images.image_input(self.resolve(path), size=size, layout=layout, mean=mean, std=std, dtype=dtype)

    def assert_golden(self, result: RunResult, *, per_ep: bool = False, name: str | None = None) -> None:
        """Compare every output with the test's golden within its tolerance.

        The default golden, `goldens/<module>/<test>.npz`, comes from native onnxruntime on
        the CPU and holds every EP to the model's true outputs. `per_ep=True` uses
        `<test>[<ep>].npz`, made from this EP's own outputs, to catch any change on one
        device (a driver, browser or ORT-web upgrade) with a near-exact tolerance.
        `name` replaces the test name in the file name, e.g. to share one golden between tests.
        """
        __tracebackhide__ = True
        target = self._golden_target if name is None else dataclasses.replace(self._golden_target, test_name=name)
        golden_check.assert_golden(result, target, self._golden_policy, per_ep=per_ep)

    def resolve(self, path: str | Path) -> Path:
        """A file given to run() or image_input(): absolute, or relative to the rootdir, else to the test's folder."""
        candidates = [Path(path)] if Path(path).is_absolute() else list(dict.fromkeys(root / path for root in self._roots))
        for candidate in candidates:
            if candidate.is_file():
                return candidate.resolve()
        raise FileNotFoundError(f"file not found: {path} (looked at {', '.join(map(str, candidates))})")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _read_graph(path: Path):
    """The model's graph without its weights; None for .ort files and models onnx cannot parse
    (a corrupt model is for ORT in the page to report)."""
    if path.suffix != ".onnx":
        return None
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False).graph
    except Exception:
        return None


def _external_data_locations(graph) -> list[str]:
    """Files an .onnx model keeps its weights in, relative to the model's folder."""
    if graph is None:
        return []
    from onnx.external_data_helper import (
        _get_attribute_tensors_from_graph,
        _get_initializer_tensors_from_graph,
        uses_external_data,
    )

    tensors = itertools.chain(_get_initializer_tensors_from_graph(graph), _get_attribute_tensors_from_graph(graph))
    return sorted({
        entry.value
        for tensor in tensors
        if uses_external_data(tensor)
        for entry in tensor.external_data
        if entry.key == "location"
    })


def _symbolic_inputs(graph) -> dict[str, tuple[str | None, ...]]:
    if graph is None:
        return {}
    return {
        value.name: tuple(dim.dim_param or None for dim in value.type.tensor_type.shape.dim)
        for value in graph.input
    }
