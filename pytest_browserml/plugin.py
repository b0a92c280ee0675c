"""pytest hooks and fixtures of pytest-browserml; the work happens in the modules they call."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from . import onnx_suite, options
from .browser import provision, wasm_engine
from .browser.launch import EP_NAMES, BrowserSetupError, ExecutionProvider
from .budget import baselines
from .budget.baselines import BaselineError
from .budget.limits import BudgetError, BudgetExceeded, BudgetLayer
from .budget.limits import resolve as resolve_budgets
from .context import PROJECT_BUDGET_KEY, PROJECT_TOLERANCE_KEY, RUNTIME_KEY, reporter_progress, usable_ep_browser
from .golden import localise
from .golden.check import GoldenPolicy, GoldenRecord, GoldenTarget
from .golden.ledger import GoldenLedger
from .golden.tolerances import ToleranceError, ToleranceLayer
from .report import ledger as reports
from .report.ledger import EP_PROPERTY, GOLDEN_PROPERTY, RUN_PROPERTY, TEST_PROPERTY, ReportLedger, run_entry
from .runner import BrowserML, Runtime, Settings

BASELINE_KEY = pytest.StashKey[tuple | None]()
LOCALISE_KEY = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser_ep(*eps): run this test only on these EPs (of those given by --browser-ep)"
    )
    config.addinivalue_line(
        "markers", "budget(**limits): latency, memory and placement limits of each browserml.run, e.g. "
                   "latency_p95='40 ms', wasm_memory='256 MB', max_fallback_nodes=0, and EP sections webgpu={...}"
    )
    config.addinivalue_line(
        "markers", "localise: say where this test's outputs diverge from native onnxruntime (the first node) on "
                   "every assert_golden, passed or not, as --browserml-localise does for all tests"
    )
    config.addinivalue_line(
        "markers", "timed_runs(warmup=N, iterations=M): how often browserml.run runs the model by default in this test"
    )
    config.addinivalue_line(
        "markers", "tolerance(**settings): how close each output must be to its golden; "
                   "fields atol, rtol, ulp, cosine, cosine_axis, topk, mismatch_fraction, nan_equal, exact, "
                   "sections per EP (webgpu={...}), dtype (float16={...}) and output (outputs={name: {...}})"
    )
    config.stash[RUNTIME_KEY] = Runtime(options.settings_from(config), progress=reporter_progress(config))
    config.stash[PROJECT_TOLERANCE_KEY], config.stash[PROJECT_BUDGET_KEY] = options.project_layers(config)
    ledger = GoldenLedger(golden_dir=options.golden_dir(config), property_name=GOLDEN_PROPERTY)
    config.pluginmanager.register(ledger, "browserml-goldens")
    save_as = config.getoption("budget_save")
    json_path, html_path = options.setting(config, "browserml_report"), options.setting(config, "browserml_html")
    config.pluginmanager.register(ReportLedger(
        json_path=Path(json_path) if json_path else None,
        html_path=Path(html_path) if html_path else None,
        save_as=options.baseline_path(config, save_as) if save_as else None,
        rootdir=config.rootpath,
        environment=reports.environment(config.stash[RUNTIME_KEY].settings),
    ), "browserml-reports")
    config.stash[BASELINE_KEY] = options.baseline(config)
    config.stash[LOCALISE_KEY] = options.localise_mode(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    runtime = config.stash.get(RUNTIME_KEY, None)
    if runtime is not None:
        runtime.close()


def pytest_report_header(config: pytest.Config) -> str:
    runtime = config.stash[RUNTIME_KEY]
    settings = runtime.settings
    adapter = f"; webgpu adapter: {settings.webgpu_plan.summary}" if settings.webgpu_plan else ""
    return (f"browserml: eps {', '.join(f'{ep.id} ({ep.bundle})' for ep in settings.eps)}; "
            f"onnxruntime-web {settings.ort_web_version}{adapter}; wasm {wasm_engine.describe(settings.wasm_tier)}, "
            f"{wasm_engine.describe_threads(settings.wasm_threads)}; cache {provision.cache_dir()}")


def pytest_itemcollected(item: pytest.Item) -> None:
    """Start a browser when collection meets the first test that needs it: it launches and opens its page
    in the Playwright thread while pytest collects the rest, and ORT compiles its wasm module in the page."""
    if item.config.option.collectonly:
        return
    ep, timed = _browser_needs(item)
    if ep:
        item.config.stash[RUNTIME_KEY].prestart(ep, timed)


def _browser_needs(item: pytest.Item) -> tuple[ExecutionProvider | None, bool]:
    """The EP an item runs on and whether it times its runs; (None, _) for items without a browser."""
    if isinstance(item, onnx_suite.OnnxDataSet):
        return item.ep, False
    ep = getattr(getattr(item, "callspec", None), "params", {}).get("browserml")
    # a test whose browser_ep marker leaves none of the EPs given is parametrized with pytest's NOTSET
    return (ep if isinstance(ep, ExecutionProvider) else None), True


@pytest.hookimpl(tryfirst=True)
def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    return onnx_suite.ignore_case_folder(collection_path, config)


def pytest_collect_directory(path: Path, parent: pytest.Collector):
    """A folder in ONNX's test-data layout becomes tests: one per data set and EP."""
    return onnx_suite.collect_directory(path, parent)


@pytest.hookimpl(tryfirst=True)  # the EP id comes first in a node's ids: golden_names.py strips exactly it
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "browserml" in metafunc.fixturenames:
        eps = metafunc.config.stash[RUNTIME_KEY].settings.eps
        if marker := metafunc.definition.get_closest_marker("browser_ep"):
            _check_browser_ep_marker(marker, metafunc.definition.name)
            eps = tuple(ep for ep in eps if ep.id in marker.args or ep.name in marker.args)
        metafunc.parametrize("browserml", eps, indirect=True, ids=[ep.id for ep in eps])


def _check_browser_ep_marker(marker: pytest.Mark, test: str) -> None:
    """An EP the marker misspells would leave the test no parameters: pytest would skip it silently."""
    for text in marker.args:
        try:
            ExecutionProvider.parse(str(text))
        except BrowserSetupError:
            pytest.fail(f"@pytest.mark.browser_ep({text!r}) on {test}: unknown execution provider; choose from "
                        f"{', '.join(EP_NAMES)} (webnn also as webnn:cpu, webnn:gpu or webnn:npu)", pytrace=False)


@pytest.fixture
def browserml(request: pytest.FixtureRequest) -> BrowserML:
    """Runs models in a real browser on the EP of this test (one test per --browser-ep)."""
    runtime = request.config.stash[RUNTIME_KEY]
    ep: ExecutionProvider = request.param
    target = _golden_target(request)
    if refusal := request.config.pluginmanager.get_plugin("browserml-goldens").refusal(target.nodeid_without_ep):
        pytest.fail(refusal, pytrace=False)
    request.node.user_properties += [(EP_PROPERTY, ep.id), (TEST_PROPERTY, target.nodeid_without_ep)]
    ep_browser = usable_ep_browser(request.node, ep)
    roots = (request.config.rootpath, Path(request.node.path).parent)
    return BrowserML(ep_browser, _run_settings(request, runtime.settings), roots, target,
                     _golden_policy(request, ep_browser), _budgets(request, ep), _on_result(request, target.nodeid_without_ep))


def _run_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The ini's warm-up and timed runs, or the test's @pytest.mark.timed_runs(...)."""
    marker = request.node.get_closest_marker("timed_runs")
    if marker is None:
        return settings
    counts = {"warmup": settings.warmup, "iterations": settings.iterations, **marker.kwargs}
    if marker.args or set(counts) != {"warmup", "iterations"} or not all(
            isinstance(value, int) and value >= 0 for value in counts.values()):
        pytest.fail(f"@pytest.mark.timed_runs on {request.node.originalname}: expected warmup=N and/or "
                    f"iterations=N, whole numbers >= 0; got {marker.args or ''}{marker.kwargs}", pytrace=False)
    return dataclasses.replace(settings, **counts)


def _on_result(request: pytest.FixtureRequest, test: str):
    """Record each run's figures for the session's reports; hold them to --budget-compare's baseline."""
    node, baseline = request.node, request.config.stash[BASELINE_KEY]

    def on_result(result) -> None:
        __tracebackhide__ = True
        entry = run_entry(test, result)
        node.user_properties += [
            (RUN_PROPERTY, entry),
            # flat figures for JUnit XML's <properties>, which CI dashboards read
            *((f"browserml_{name}", value) for name, value in entry["figures"].items()),
            ("browserml_fallback_nodes", result.placement.fallback_count),
        ]
        if result.profile:
            node.add_report_section("call", f"browserml profile of {result.model.name} on {result.ep}",
                                    result.profile.format())
        if baseline:
            name, saved, rules = baseline
            try:
                regressions = baselines.compare(saved, name, test, result, rules)
            except BaselineError as error:
                pytest.fail(str(error), pytrace=False)
            if regressions:
                raise BudgetExceeded(f"{result.model.name} on {result.ep} regressed:\n" + "\n".join(regressions))

    return on_result


def _budgets(request: pytest.FixtureRequest, ep: ExecutionProvider) -> dict:
    layers = request.config.stash[PROJECT_BUDGET_KEY]
    try:
        if marker := request.node.get_closest_marker("budget"):
            if marker.args:
                raise BudgetError(f"@pytest.mark.budget on {request.node.originalname} takes keyword arguments only")
            layers = (*layers, BudgetLayer(f"marker on {request.node.originalname}", marker.kwargs))
    except BudgetError as error:
        pytest.fail(str(error), pytrace=False)
    return resolve_budgets(layers, ep.id)


def _golden_target(request: pytest.FixtureRequest) -> GoldenTarget:
    config = request.config
    return GoldenTarget.of_node(request.node.nodeid, options.golden_dir(config), config.rootpath,
                                config.invocation_params.dir)


def _golden_policy(request: pytest.FixtureRequest, ep_browser) -> GoldenPolicy:
    layers = request.config.stash[PROJECT_TOLERANCE_KEY]
    if marker := request.node.get_closest_marker("tolerance"):
        if marker.args:
            pytest.fail(f"@pytest.mark.tolerance on {request.node.originalname} takes keyword arguments only", pytrace=False)
        try:
            layers = (*layers, ToleranceLayer(f"marker on {request.node.originalname}", marker.kwargs))
        except ToleranceError as error:
            pytest.fail(str(error), pytrace=False)
    node = request.node

    def record(entry: GoldenRecord) -> None:
        node.user_properties.append((GOLDEN_PROPERTY, entry.to_json()))

    mode = "always" if node.get_closest_marker("localise") else request.config.stash[LOCALISE_KEY]
    return GoldenPolicy(update=request.config.getoption("update_goldens"), layers=layers, record=record,
                        localise=localise.Localiser(mode, ep_browser.run_once))

