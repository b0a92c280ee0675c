"""Running a model on one EP: the per-worker browsers and the `browserml` fixture object.

`Runtime` owns what a pytest worker shares (Playwright, the local server,
onnxruntime-web, one `EpBrowser` per EP). `EpBrowser` owns one EP's browser
and page and replaces them when they crash or hang. `BrowserML` is what a
test receives.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from . import images
from . import model as model_facts
from .browser import provision, remote, transport, wasm_engine
from .browser.gpu_info import GpuStatus, gpu_status
from .browser.launch import BrowserChoice, BrowserSetupError, ExecutionProvider
from .browser.launch_plan import LaunchPlan
from .browser.page import CLOSE_DEADLINE_S, HarnessPage, PageFailure, PlaywrightError
from .browser.playwright_thread import PlaywrightThread, in_playwright_thread
from .browser.processes import BrowserTree
from .browser.provision import ProvisionError
from .browser.server import HarnessServer
from .budget import limits as budgets
from .budget import placement as placement_log
from .budget import profile as profiles
from .budget import stats
from .budget.limits import FIGURES, Budget
from .golden import check as golden_check
from .golden.check import GoldenPolicy, GoldenTarget
from .model import ModelFacts
from .results import Adapter, Environment, Memory, ModelRunError, Placement, RunResult, Transfer

INLINE_LIMIT = 96 * 1024  # payloads up to this size travel inside the call as base64 (above, HTTP is faster)


@dataclass(frozen=True)
class Settings:
    eps: tuple[ExecutionProvider, ...]
    strict: bool
    timeout_s: float
    ort_web_version: str
    browser_executable: str | None
    browser_channel: str | None
    auto_install: bool
    warmup: int
    iterations: int
    budget_scale: float = 1.0
    profile: bool = False
    ws_endpoints: tuple[str, ...] = ()  # Playwright browser servers to run in instead of a local browser
    wasm_tier: str = wasm_engine.AUTO  # V8's tier for ORT's wasm: auto, tier-up or liftoff (wasm_engine.py)
    wasm_threads: int | None = None  # ORT-web threads per page; None: auto (wasm_engine.threads)
    webgpu_plan: LaunchPlan | None = None  # --webgpu-adapter's flags and environment (None: a remote browser's own)


@dataclass(frozen=True)
class ModelFiles:
    """A model file and its external data, as the page fetches them, with what the file declares."""

    path: Path
    sha256: str
    url: str
    external_data: tuple[dict, ...]  # [{"path": location, "data": url}] for ORT's externalData option
    facts: ModelFacts
    served: Path  # the file behind `url`: `path`, or a copy of it with named free dims


class Runtime:
    """What one pytest process shares across tests; started on first use."""

    def __init__(self, settings: Settings, progress: Callable[[str], None] | None = None):
        self.settings = settings
        self.progress = progress  # where to say what a long wait is waiting for (pytest's terminal), or nowhere
        self.playwright_thread = PlaywrightThread()  # every Playwright call runs there (playwright_thread.py)
        self._playwright_manager = None
        self.playwright = None
        self.server: HarnessServer | None = None
        self.browser_choice: BrowserChoice | None = None
        self._browsers: dict[tuple[ExecutionProvider, str], EpBrowser] = {}  # by EP and wasm tier
        self._prestarted: set[tuple[ExecutionProvider, str]] = set()
        self._models: dict[tuple, ModelFiles] = {}
        self._scratch_dir: Path | None = None  # model copies the runner serves in place of the user's file

    def start(self) -> None:
        """Fetch what is missing (with progress lines on pytest's terminal) and serve ORT; Playwright itself
        starts in its thread, with the first browser."""
        if self.server is not None:
            return
        ort = provision.ort_web(self.settings.ort_web_version, fetch=self.settings.auto_install, progress=self.progress)
        if not self.settings.ws_endpoints:
            self.browser_choice = BrowserChoice.resolve(
                self.settings.browser_executable, self.settings.browser_channel, fetch=self.settings.auto_install,
                progress=self.progress, webgpu=self.settings.webgpu_plan,
            )
        self.server = HarnessServer(ort.dist)

    def _start_playwright(self) -> None:
        if self.playwright is not None:
            return
        from playwright.sync_api import sync_playwright

        self._playwright_manager = sync_playwright()
        with _node_compile_cache(provision.cache_dir() / "node-compile-cache"):
            self.playwright = self._playwright_manager.start()

    @property
    def endpoint(self) -> str | None:
        """This worker's browser server: xdist workers spread over the endpoints given."""
        endpoints = self.settings.ws_endpoints
        if not endpoints:
            return None
        worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
        return endpoints[int(worker) % len(endpoints) if worker.isdigit() else 0]

    @in_playwright_thread
    def browser(self, ep: ExecutionProvider, tier: str) -> tuple[Any, BrowserTree]:
        """A browser for `ep` and its processes: launched here, or connected at this worker's endpoint
        (never both; a remote browser's processes are not ours: pid None)."""
        self._start_playwright()
        if self.endpoint:
            return remote.connect(self.playwright, self.endpoint, ep), BrowserTree(None)
        return BrowserTree.launched_by(
            lambda: self.browser_choice.launch(self.playwright, ep, wasm_engine.launch_args(tier)))

    def tier_for(self, timed: bool) -> str:
        """The wasm tier a test's browser runs; a browser server's browsers run V8's default."""
        return wasm_engine.TIER_UP if self.endpoint else wasm_engine.tier_for(self.settings.wasm_tier, timed)

    @property
    def device(self) -> str:
        return f"browser server {urlsplit(self.endpoint).netloc}" if self.endpoint else "local"

    def browser_for(self, ep: ExecutionProvider, timed: bool = True) -> "EpBrowser":
        """The EP's browser for tests that time their runs (`timed`) or for untimed ones (ONNX folder cases)."""
        self.start()
        key = (ep, self.tier_for(timed))
        if key not in self._browsers:
            self._browsers[key] = EpBrowser(self, *key)
        return self._browsers[key]

    def prestart(self, ep: ExecutionProvider, timed: bool) -> None:
        """Open the browser and page a test on `ep` will use, in the Playwright thread while pytest goes on;
        what fails here fails that test instead. Once per EP and tier."""
        key = (ep, self.tier_for(timed))
        if key in self._prestarted:
            return
        self._prestarted.add(key)
        try:
            ep_browser = self.browser_for(ep, timed)
        except (ProvisionError, BrowserSetupError):
            return
        self.playwright_thread.start(_quiet_probe, ep_browser)

    def model_files(self, path: Path) -> ModelFiles:
        """Register a model (and its external data files) with the server; cached by file identity."""
        stat = path.stat()
        key = (path, stat.st_mtime_ns, stat.st_size)
        if key not in self._models:
            sha256 = provision.file_sha256(path)
            route = f"models/{sha256}"
            facts = model_facts.read(path)
            missing = [location for location in facts.external_data if not (path.parent / location).is_file()]
            if missing:
                raise FileNotFoundError(f"{path}: its external data file {path.parent / missing[0]} is missing "
                                        f"(the model names {missing[0]!r} as the location of its weights)")
            external = tuple(
                {"path": location, "data": self.server.register_file(f"{route}/{location}", path.parent / location)}
                for location in facts.external_data
            )
            served = path
            if facts.has_unnamed_free_dims:  # WebNN fixes free dims by symbol only: give them one
                served = model_facts.with_named_free_dims(path, self._scratch() / sha256 / path.name)
            url = self.server.register_file(f"{route}/{path.name}", served)
            self._models[key] = ModelFiles(path, sha256, url, external, facts, served)
        return self._models[key]

    def _scratch(self) -> Path:
        if self._scratch_dir is None:
            self._scratch_dir = Path(tempfile.mkdtemp(prefix="browserml-models-"))
        return self._scratch_dir

    def close(self) -> None:
        if self._scratch_dir is not None:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)
            self._scratch_dir = None
        for ep_browser in self._browsers.values():
            ep_browser.close()
        self._browsers.clear()
        if self.playwright_thread.started:
            self.playwright_thread.call(self._stop_playwright)
            self.playwright_thread.stop(CLOSE_DEADLINE_S)
        if self.server is not None:
            self.server.close()
            self.server = None

    def _stop_playwright(self) -> None:
        if self.playwright is not None:
            self._playwright_manager.__exit__(None, None, None)
            self.playwright = None


def _quiet_probe(ep_browser: "EpBrowser") -> None:
    """Open the page and probe the EP ahead of the first test on it, which meets and reports any failure again."""
    try:
        ep_browser.probe()
    except Exception:
        pass


@contextlib.contextmanager
def _node_compile_cache(folder: Path) -> Iterator[None]:
    """Playwright's driver (Node) keeps the code it compiles in `folder`, so that each worker's driver starts
    faster (0.29 s against 0.22 s on 2 cores); only the driver's environment says so, not the tests'."""
    if "NODE_COMPILE_CACHE" in os.environ:  # the user's own
        yield
        return
    os.environ["NODE_COMPILE_CACHE"] = str(folder)
    try:
        yield
    finally:
        del os.environ["NODE_COMPILE_CACHE"]


class EpBrowser:
    """One EP's browser and harness page; a crashed page or browser is replaced on next use."""

    def __init__(self, runtime: Runtime, ep: ExecutionProvider, tier: str = wasm_engine.TIER_UP):
        self.runtime = runtime
        self.ep = ep
        self.tier = tier
        self._browser = None
        self._tree = BrowserTree(None)
        self._page: HarnessPage | None = None
        self._probe: dict | None = None
        self._environment: Environment | None = None
        self._sessions: dict[str, tuple[tuple[str, ...], Placement]] = {}  # session key -> (log, placement)

    @property
    def playwright_thread(self) -> PlaywrightThread:
        return self.runtime.playwright_thread

    def page(self) -> HarnessPage:
        """The EP's harness page; a browser that went away is launched or connected anew, once.

        A page still usable is handed out in the caller's thread (its browser's and its own state are flags
        Playwright keeps, read without a call into it), once nothing is pending in the Playwright thread:
        going there costs a run 0.3 ms, more on a loaded machine."""
        page = self._page
        if (page is not None and not self.playwright_thread.busy and self._browser.is_connected() and page.usable
                and page.browser_usable):
            return page
        return self._page_in_playwright_thread()

    @in_playwright_thread
    def _page_in_playwright_thread(self) -> HarnessPage:
        try:
            return self._open_page()
        except PlaywrightError:
            self.close()
        try:
            return self._open_page()
        except PlaywrightError as error:
            raise BrowserSetupError(f"no page opens in the browser for {self.ep.id}: "
                                    f"{error.message.splitlines()[0]}") from None

    def _open_page(self) -> HarnessPage:
        if self._page is not None and not self._page.browser_usable:
            self.close()  # Playwright learns of a killed browser only when it next talks to it
        if self._browser is None or not self._browser.is_connected():
            self.fresh_page()
            self._browser, self._tree = self.runtime.browser(self.ep, self.tier)
        if self._page is None or not self._page.usable:
            self.fresh_page()
            # a dead GPU process leaves WebGPU's work pending forever: watch it on webgpu
            watched = ("browser", "GPU") if self.ep.name == "webgpu" else ("browser",)
            self._page = HarnessPage(self._browser, self._tree, self.runtime.server, self.ep.bundle,
                                     self.runtime.settings.timeout_s, self.playwright_thread,
                                     remote=bool(self.runtime.endpoint),
                                     load_options=wasm_engine.load_options(
                                         wasm_engine.threads(self.runtime.settings.wasm_threads, self.tier)),
                                     watched=watched)
        return self._page

    def probe(self) -> dict:
        """Doctor's verdict for this EP in this browser: {ok, reason, adapter, webnnDevices}."""
        if self._probe is None:
            probe = self.page().call("probe", self.ep.to_js())
            self._refuse_fallback(probe)
            self._probe = probe
        return self._probe

    @in_playwright_thread
    def gpu_status(self) -> GpuStatus:
        """What this EP's browser says of its GPU (for doctor and for a fallback's reason)."""
        self.page()
        return gpu_status(self._browser)

    def _refuse_fallback(self, probe: dict) -> None:
        """--webgpu-adapter hardware: a browser that still gave no GPU adapter is an error saying why."""
        plan = self.runtime.settings.webgpu_plan
        if self.ep.name != "webgpu" or plan is None or plan.mode != "hardware":
            return
        adapter = Adapter.from_probe(probe.get("adapter"))
        if adapter and not adapter.is_fallback:
            return
        got = adapter.describe() if adapter else probe["reason"]
        raise BrowserSetupError(f"--webgpu-adapter hardware: the browser for {self.ep.id} got {got}, not the GPU "
                                f"({plan.summary}); the browser says: {gpu_status(self._browser).why_not()}")

    def environment(self) -> Environment:
        """What runs the models; the same until the browser is replaced."""
        if self._environment is None:
            info = self.page().info
            self._environment = Environment(
                ep=self.ep.id,
                browser=self.runtime.browser_choice.describe() if self.runtime.browser_choice else self.runtime.device,
                browser_version=self._browser.version,
                device=f"{self.runtime.device}, {info['platform']}",
                ort_web_version=info["ortVersion"],
                ort_web_bundle=self.ep.bundle,
                adapter=Adapter.from_probe(self.probe().get("adapter")),
                wasm_tier=self.tier,
                wasm_threads=info["wasmThreads"],
            )
        return self._environment

    def run(self, model: ModelFiles, feeds: Mapping[str, Any], warmup: int, iterations: int,
            profile: bool = False, keep_session: bool = True, allow_no_ep_nodes: bool = False) -> RunResult:
        """One session's runs; keep_session=False releases the session after them (a model run only once).
        `allow_no_ep_nodes`: a run the EP took no node of returns (its placement says so) instead of failing."""
        __tracebackhide__ = True
        server = self.runtime.server
        specs, parts = transport.encode(feeds)
        mismatch = model.facts.input_mismatch(specs)
        if mismatch:
            raise ModelRunError(f"{self._where(model)}: {mismatch}")
        input_bytes = sum(part.nbytes for part in parts)
        # WebNN builds a graph of static shapes: fix the model's symbolic dimensions from these inputs.
        free_dimensions = model.facts.dimensions_of(specs) if self.ep.name == "webnn" else {}
        session_key = f"{model.sha256}|{self.ep.id}|{free_dimensions}" + ("|profile" if profile else "")
        # Where ORT put the nodes is in its verbose log only, which costs a third of a small model's
        # session creation; wasm has one provider, so there the graph says it.
        placement_from_log = self.ep.name != "wasm" or model.facts.node_count is None
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
            "verboseLog": placement_from_log,
            "releaseSession": not keep_session,
            "outputUrl": server.mailbox(),
        }
        served = model.served
        if session_key not in self._sessions and not model.external_data and served.stat().st_size <= INLINE_LIMIT:
            # a small model rides inside the call too: one HTTP request less per new session, and its DevTools
            # network events (the browser's and network processes and Playwright's driver handle each): a third
            # of the node suite's CPU (bench/bench_xdist.py)
            request["modelBase64"] = base64.b64encode(served.read_bytes()).decode()
        if input_bytes <= INLINE_LIMIT:
            request["inputBase64"] = base64.b64encode(b"".join(parts)).decode()
        else:
            request["inputUrl"] = server.offer(parts)
        page = self.page()
        page.processes.reset_peak_rss()
        cached = session_key in self._sessions
        what = (f"{warmup} warm-up and {iterations} timed runs" if cached else
                f"onnxruntime-web to create the session (load, optimise{', compile shaders' if self.ep.name == 'webgpu' else ''})"
                f" and {warmup} warm-up and {iterations} timed runs")
        say = self.runtime.progress
        on_slow = (lambda seconds: say(f"{model.path.name} on {self.ep.id}: waiting {seconds:.0f} s for {what}")) \
            if say else None
        try:
            answer = page.call("run", request, on_slow=on_slow)
        except PageFailure as failure:
            raise ModelRunError(f"{self._where(model)}: {server.redact(str(failure))}") from None
        finally:
            uploaded = server.collect(request["outputUrl"])  # closes the mailbox, used or not
            server.discard(request.get("inputUrl", ""))
        if answer.get("outputBase64") is not None:
            payload = bytearray(base64.b64decode(answer["outputBase64"]))
        else:
            payload = uploaded or bytearray()
        if not answer["ok"]:
            if self.ep.name == "webgpu" and _DEVICE_GONE.search(answer["error"]):
                # the native EP answers at once when the GPU process dies under it: say that, not ORT's symptom
                raise ModelRunError(f"{self._where(model)}: {page.failure_if_gone(answer['error'])}")
            if self.ep.name == "webnn":  # ORT-web's WebNN backend keeps state of a failed run that fails later ones
                page.close()
            raise ModelRunError(f"{self._where(model)}: onnxruntime-web failed: {server.redact(answer['error'])}"
                                + _too_large(self.ep, answer["error"]) + self._no_float16(answer["error"]))
        if answer["gpuErrors"]:  # WebGPU errors nobody caught, e.g. validation: the outputs cannot be trusted
            page.close()  # more of this run's errors may still arrive: they must not fail the next run
            errors = server.redact("\n".join(answer["gpuErrors"]))
            raise ModelRunError(f"{self._where(model)}: the browser reported a WebGPU error:"
                                + _too_large(self.ep, errors) + self._no_float16(errors) + "\n" + errors)
        if answer["log"] is not None:  # a new session: its creation log says where the nodes went
            self._sessions[session_key] = (
                tuple(line for line in answer["log"] if "[W:" in line or "[E:" in line or "placed on" in line),
                placement_log.parse(answer["log"], self.ep.provider_names(),
                                    model_facts.shape_nodes(model.path) if _split(answer["log"]) else frozenset())
                if placement_from_log
                else placement_log.all_on(self.ep.provider_names(), model.facts.node_count),
            )
        log, placement = self._sessions[session_key] if keep_session else self._sessions.pop(session_key)
        if not placement.requested_took_graph and not allow_no_ep_nodes:
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

    def run_once(self, path: Path, feeds: Mapping[str, Any]) -> RunResult:
        """One run of a model file that will not run again (a copy made to localise a divergence)."""
        return self.run(self.runtime.model_files(path), feeds, warmup=0, iterations=0, keep_session=False)

    def _no_float16(self, error: str) -> str:
        """A line (newline first) naming the adapter when float16 failed for want of shader-f16; "" otherwise."""
        if self.ep.name != "webgpu" or not _NO_FLOAT16.search(error):
            return ""
        adapter = self.environment().adapter
        return (f"\nthe WebGPU adapter ({adapter.describe() if adapter else 'none'}) has no shader-f16: "
                "float16 models cannot run on it")

    def _where(self, model: ModelFiles) -> str:
        return f"{model.path} on {self.ep.id}"

    def fresh_page(self) -> None:
        """Start over in a new page: no cached sessions, no memory left by earlier tests."""
        if self._page is not None:
            self._page.close()
            self._page = None

    @in_playwright_thread
    def close(self) -> None:
        self.fresh_page()
        if self._browser is not None:
            with self._tree.deadline(CLOSE_DEADLINE_S, "closing the browser"):
                try:
                    self._browser.close()
                except Exception:  # already gone with a crash
                    pass
            self._tree.kill()  # whatever a crash or a frozen browser left: nothing outlives the session
            self._browser = None
            self._environment = None


MAX_RUNS = 1_000_000


def check_run_arguments(inputs, warmup, iterations) -> None:
    """Refuse what would run a different number of rounds than asked (a negative count runs none,
    2.5 runs three) or fail later with an AttributeError."""
    __tracebackhide__ = True
    for name, value in (("warmup", warmup), ("iterations", iterations)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 0 <= value <= MAX_RUNS:
            raise ValueError(f"browserml.run: {name}={value!r}: expected a whole number from 0 to {MAX_RUNS}")
    if not isinstance(inputs, Mapping):
        raise TypeError(f"browserml.run: inputs must map each input name to an array, e.g. {{'x': array}}; "
                        f"got {type(inputs).__name__}")


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
        # Memory only grows in a page and cached sessions keep theirs: a memory budget is
        # measured in a page of the test's own.
        self._needs_fresh_page = any(FIGURES[name].kind == "size" for name in self._budgets)

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
        warmup = self._settings.warmup if warmup is None else warmup
        iterations = self._settings.iterations if iterations is None else iterations
        check_run_arguments(inputs, warmup, iterations)
        files = self._ep_browser.runtime.model_files(self.resolve(model))
        if self._needs_fresh_page:
            self._ep_browser.fresh_page()
            self._needs_fresh_page = False
        result = self._ep_browser.run(files, inputs, warmup=warmup, iterations=iterations, profile=self._settings.profile,
                                      # the EP taking no node fails the run, unless a budget allows it: min_ep_nodes=0
                                      allow_no_ep_nodes=getattr(self._budgets.get("min_ep_nodes"), "limit", None) == 0)
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

    def assert_golden(self, result: RunResult, *, per_ep: bool = False, name: str | None = None,
                      reference: str | Path | None = None) -> None:
        """Compare every output with the test's golden within its tolerance.

        The default golden, `goldens/<module>/<test>.npz`, comes from native onnxruntime on
        the CPU and holds every EP to the model's true outputs. `per_ep=True` uses
        `<test>[<ep>].npz`, made from this EP's own outputs, to catch any change on one
        device (a driver, browser or ORT-web upgrade) with a near-exact tolerance.
        `name` replaces the test name in the file name, e.g. to share one golden between tests.
        `reference="models/encoder_fp32.onnx"` holds the run to that model's native onnxruntime outputs
        on the same inputs, made anew on each call: an int8 or float16 model to its float32 original.
        """
        __tracebackhide__ = True
        if reference is not None and per_ep:
            raise ValueError("assert_golden: pass reference= or per_ep=True, not both (reference= compares with "
                             "another model's native outputs, per_ep=True with this EP's own earlier ones)")
        golden_check.assert_golden(result, self._golden_target, self._golden_policy, per_ep=per_ep, name=name,
                                   reference_model=None if reference is None else self.resolve(reference))

    def resolve(self, path: str | Path) -> Path:
        """A file given to run() or image_input(): absolute, or relative to the rootdir, else to the test's folder."""
        candidates = [Path(path)] if Path(path).is_absolute() else list(dict.fromkeys(root / path for root in self._roots))
        for candidate in candidates:
            if candidate.is_file():
                return candidate.resolve()
        raise FileNotFoundError(f"file not found: {path} (looked at {', '.join(map(str, candidates))})")


def _split(log: list[str]) -> bool:
    """Whether ORT's placement log lists nodes per provider (the graph was split between them)."""
    return any("Node(s) placed on" in line for line in log)


# What the EPs and the browser say when a tensor or an allocation is beyond their limits.
_GPU_BUFFER_LIMIT = re.compile(r"(?:Buffer|Binding) size \((\d+)\) (?:exceeds|is larger than) the (max[a-z ]+?) \((\d+)\)")
_WEBNN_TENSOR_LIMIT = re.compile(r"tensor size (\d+) exceeds the size limit (\d+)")
_KERNEL_OUTPUT = re.compile(r"Failed to generate kernel's output\[\d+\] with dims (\[[\d, ]*\])")
# The native EP: "Program Cast requires f16 but the device does not support it"; JSEP: "'f16' type used without
# 'f16' extension enabled" (a validation error, with zeros for outputs).
_NO_FLOAT16 = re.compile(r"requires f16 but the device does not support it|'f16' type used without 'f16' extension")
_DEVICE_GONE = re.compile(r"reference no longer exists|[Dd]evice (?:was )?lost")
_WASM_MEMORY_ERRORS = ("std::bad_alloc", "SafeIntOnOverflow", "Out of memory", "Maximum memory size exceeded",
                       "Array buffer allocation failed")


def _too_large(ep: ExecutionProvider, error: str) -> str:
    """A line (newline first) saying the model is too large for the EP when ORT's or the browser's text says so
    in its own terms; "" otherwise."""
    if match := _GPU_BUFFER_LIMIT.search(error):
        size, limit_name, limit = int(match[1]), match[2].removesuffix(" limit"), int(match[3])
        return (f"\nthe model is too large for {ep.id} here: it needs a GPU buffer of {_bytes(size)}, "
                f"beyond this device's {limit_name} of {_bytes(limit)}")
    if match := _WEBNN_TENSOR_LIMIT.search(error):
        return (f"\nthe model is too large for {ep.id}: one of its tensors is {_bytes(int(match[1]))}, "
                f"and WebNN takes at most {_bytes(int(match[2]))} per tensor")
    if match := _KERNEL_OUTPUT.search(error):
        return (f"\nthe model is too large for {ep.id}: onnxruntime-web could not allocate a kernel's output "
                f"of shape {match[1]}")
    if any(text in error for text in _WASM_MEMORY_ERRORS):
        return (f"\nthe model is too large for {ep.id}: an allocation failed in onnxruntime-web's WebAssembly memory, "
                "which is 32-bit (at most 4 GiB for the model, its weights and the tensors of CPU kernels)")
    return ""


def _bytes(count: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.3g} {unit} ({count} bytes)"
    return f"{count} bytes"
