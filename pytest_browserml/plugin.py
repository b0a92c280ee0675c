"""pytest hooks and fixtures of pytest-browserml; the work happens in the modules they call."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from . import onnx_suite, provision
from .browser import BrowserSetupError, ExecutionProvider
from .golden_check import UPDATE_MODES, GoldenPolicy, GoldenRecord, GoldenTarget
from .golden_report import GoldenLedger
from .reports import EP_PROPERTY, GOLDEN_PROPERTY, RUN_PROPERTY, TEST_PROPERTY, ReportLedger
from . import baselines
from .baselines import BaselineError, CompareRule
from .budgets import BudgetError, BudgetExceeded, BudgetLayer
from .budgets import resolve as resolve_budgets
from .context import PROJECT_BUDGET_KEY, PROJECT_TOLERANCE_KEY, RUNTIME_KEY, usable_ep_browser
from .runner import BrowserML, Runtime, Settings
from .tolerances import ToleranceError, ToleranceLayer

BASELINE_KEY = pytest.StashKey[tuple | None]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("browserml", "run ONNX models in a real browser (pytest-browserml)")

    def option(flag, ini, help, *, ini_type=None, default=None, **kwargs):
        group.addoption(flag, dest=ini, help=f"{help} (ini: {ini})", **kwargs)
        parser.addini(ini, help=help, type=ini_type, default=default)

    option("--browser-ep", "browserml_eps", "execution provider to run on: wasm, webgpu, webnn or webnn:gpu|npu; "
           "repeat for several (default: wasm)", action="append", ini_type="args", default=["wasm"])
    option("--browser-ep-strict", "browserml_ep_strict", "an EP that cannot run here is an error, not a skip",
           action="store_true", default=None, ini_type="bool")
    option("--browser-executable", "browserml_browser_executable", "path of a Chromium-based browser to use "
           "instead of the pinned Chromium")
    option("--browser-channel", "browserml_browser_channel", "a Playwright browser channel to use instead of "
           "the pinned Chromium: chromium, chrome, msedge ...")
    option("--browser-ws-endpoint", "browserml_ws_endpoints", "a Playwright browser server (ws://...) to run "
           "the EPs in instead of a local browser; repeat for several (xdist workers spread over them)",
           action="append", ini_type="args", default=[])
    option("--ort-web-version", "browserml_ort_web_version", "onnxruntime-web version from the npm registry",
           default=provision.ORT_WEB_VERSION)
    option("--ort-web-bundle", "browserml_ort_web_bundle", "onnxruntime-web bundle: all (WebGPU through JSEP) "
           "or webgpu (the native WebGPU EP)", default="all")
    option("--golden-dir", "browserml_golden_dir", "folder of the golden tensors, relative to the rootdir",
           default="goldens")
    group.addoption("--update-goldens", nargs="?", const="all", choices=UPDATE_MODES, default=None,
                    help="write the goldens of the tests that run: all of them (default) or only the missing ones")
    group.addoption("--delete-unused-goldens", action="store_true",
                    help="delete goldens that no test used (only when the whole suite ran)")
    option("--budget-scale", "browserml_budget_scale", "multiply every time budget by this factor "
           "(for slower machines)", default="1")
    group.addoption("--budget-save", metavar="NAME", help="save the figures of every run as baseline NAME "
                    "(.browserml/baselines/NAME.json under the rootdir)")
    group.addoption("--budget-compare", metavar="NAME", help="fail runs whose figures regressed from baseline NAME")
    group.addoption("--budget-compare-fail", metavar="FIGURE:PERCENT%", action="append", default=None,
                    help="how much a figure may regress, e.g. p50:10% (repeatable; default p50:10%)")
    group.addoption("--browserml-profile", action="store_true",
                    help="profile every run with ORT (per node; per GPU kernel on WebGPU) and attach the slowest "
                         "nodes to the test report")
    option("--browserml-report", "browserml_report", "write a JSON report of every test x EP with all figures "
           "(schema: pytest_browserml/report.schema.json)")
    option("--browserml-html", "browserml_html", "write a self-contained HTML report: the test x EP matrix, "
           "failures with error statistics and pictures, latency per EP")
    parser.addini("browserml_timeout", "seconds one model run may take before the page is replaced", default="300")
    parser.addini("browserml_auto_install", "fetch onnxruntime-web and the pinned Chromium when missing",
                  type="bool", default=True)
    parser.addini("browserml_warmup", "warm-up runs before the timed runs (not counted)", default="1")
    parser.addini("browserml_iterations", "timed runs of browserml.run", default="5")


def _setting(config: pytest.Config, name: str):
    value = config.getoption(name)
    return config.getini(name) if value is None else value


def settings_from(config: pytest.Config) -> Settings:
    try:
        eps = tuple(dict.fromkeys(ExecutionProvider.parse(text) for text in _setting(config, "browserml_eps")))
        return Settings(
            eps=eps,
            strict=bool(_setting(config, "browserml_ep_strict")),
            timeout_s=_positive_number(config, "browserml_timeout", float),
            ort_web_version=_setting(config, "browserml_ort_web_version"),
            ort_web_bundle=_setting(config, "browserml_ort_web_bundle"),
            browser_executable=_setting(config, "browserml_browser_executable") or None,
            browser_channel=_setting(config, "browserml_browser_channel") or None,
            auto_install=config.getini("browserml_auto_install"),
            warmup=_positive_number(config, "browserml_warmup", int, allow_zero=True),
            iterations=_positive_number(config, "browserml_iterations", int, allow_zero=True),
            budget_scale=_positive_number(config, "browserml_budget_scale", float, option=True),
            profile=config.getoption("browserml_profile"),
            ws_endpoints=tuple(_setting(config, "browserml_ws_endpoints")),
        )
    except BrowserSetupError as error:
        raise pytest.UsageError(str(error)) from None


def _positive_number(config, name, kind, allow_zero=False, option=False):
    text = _setting(config, name) if option else config.getini(name)
    try:
        value = kind(text)
    except ValueError:
        value = -1
    if value < 0 or (value == 0 and not allow_zero):
        raise pytest.UsageError(f"{name} = {text!r}: expected a {'non-negative' if allow_zero else 'positive'} number")
    return value


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser_ep(*eps): run this test only on these EPs (of those given by --browser-ep)"
    )
    config.addinivalue_line(
        "markers", "budget(**limits): latency, memory and placement limits of each browserml.run, e.g. "
                   "latency_p95='40 ms', wasm_memory='256 MB', max_fallback_nodes=0, and EP sections webgpu={...}"
    )
    config.addinivalue_line(
        "markers", "timed_runs(warmup=N, iterations=M): how often browserml.run runs the model by default in this test"
    )
    config.addinivalue_line(
        "markers", "tolerance(**settings): how close each output must be to its golden; "
                   "fields atol, rtol, ulp, cosine, topk, mismatch_fraction, nan_equal, exact, "
                   "sections per EP (webgpu={...}), dtype (float16={...}) and output (outputs={name: {...}})"
    )
    config.stash[RUNTIME_KEY] = Runtime(settings_from(config))
    config.stash[PROJECT_TOLERANCE_KEY], config.stash[PROJECT_BUDGET_KEY] = _project_layers(config)
    ledger = GoldenLedger(golden_dir=_golden_dir(config), eps=tuple(ep.id for ep in config.stash[RUNTIME_KEY].settings.eps),
                          property_name=GOLDEN_PROPERTY)
    config.pluginmanager.register(ledger, "browserml-goldens")
    save_as = config.getoption("budget_save")
    json_path, html_path = _setting(config, "browserml_report"), _setting(config, "browserml_html")
    config.pluginmanager.register(ReportLedger(
        json_path=Path(json_path) if json_path else None,
        html_path=Path(html_path) if html_path else None,
        save_as=_baseline_path(config, save_as) if save_as else None,
        rootdir=config.rootpath,
    ), "browserml-reports")
    config.stash[BASELINE_KEY] = _baseline(config)


def _baseline_path(config: pytest.Config, name: str) -> Path:
    return config.rootpath / ".browserml" / "baselines" / f"{name}.json"


def _baseline(config: pytest.Config) -> tuple[str, dict, list[CompareRule]] | None:
    name = config.getoption("budget_compare")
    if not name:
        return None
    try:
        rules = [CompareRule.parse(text) for text in config.getoption("budget_compare_fail") or ["p50:10%"]]
        return name, baselines.load(_baseline_path(config, name)), rules
    except BaselineError as error:
        raise pytest.UsageError(str(error)) from None


def _golden_dir(config: pytest.Config) -> Path:
    return config.rootpath / _setting(config, "browserml_golden_dir")


def _project_layers(config: pytest.Config) -> tuple[tuple[ToleranceLayer, ...], tuple[BudgetLayer, ...]]:
    """`[tool.browserml.tolerance]` and `[tool.browserml.budget]` of the rootdir's pyproject.toml."""
    import tomllib

    path = config.rootpath / "pyproject.toml"
    if not path.is_file():
        return (), ()
    try:
        project = tomllib.loads(path.read_text()).get("tool", {}).get("browserml", {})
        tolerance, budget = project.get("tolerance"), project.get("budget")
        return (
            (ToleranceLayer(f"[tool.browserml.tolerance] in {path}", tolerance),) if tolerance else (),
            (BudgetLayer(f"[tool.browserml.budget] in {path}", budget),) if budget else (),
        )
    except (tomllib.TOMLDecodeError, ToleranceError, BudgetError) as error:
        raise pytest.UsageError(f"{path}: {error}") from None


def pytest_unconfigure(config: pytest.Config) -> None:
    runtime = config.stash.get(RUNTIME_KEY, None)
    if runtime is not None:
        runtime.close()


def pytest_report_header(config: pytest.Config) -> str:
    settings = config.stash[RUNTIME_KEY].settings
    return (f"browserml: eps {', '.join(ep.id for ep in settings.eps)}; onnxruntime-web {settings.ort_web_version} "
            f"({settings.ort_web_bundle} bundle); cache {provision.cache_dir()}")


def pytest_collect_directory(path: Path, parent: pytest.Collector):
    """A folder in ONNX's test-data layout becomes tests: one per data set and EP."""
    return onnx_suite.collect_directory(path, parent)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "browserml" in metafunc.fixturenames:
        eps = metafunc.config.stash[RUNTIME_KEY].settings.eps
        if marker := metafunc.definition.get_closest_marker("browser_ep"):
            eps = tuple(ep for ep in eps if ep.id in marker.args or ep.name in marker.args)
        metafunc.parametrize("browserml", eps, indirect=True, ids=[ep.id for ep in eps])


@pytest.fixture
def browserml(request: pytest.FixtureRequest) -> BrowserML:
    """Runs models in a real browser on the EP of this test (one test per --browser-ep)."""
    runtime = request.config.stash[RUNTIME_KEY]
    ep: ExecutionProvider = request.param
    target = _golden_target(request, ep)
    request.node.user_properties += [(EP_PROPERTY, ep.id), (TEST_PROPERTY, target.nodeid_without_ep)]
    ep_browser = usable_ep_browser(request.config, ep)
    roots = (request.config.rootpath, Path(request.node.path).parent)
    return BrowserML(ep_browser, _run_settings(request, runtime.settings), roots, target,
                     _golden_policy(request), _budgets(request, ep), _on_result(request, target.nodeid_without_ep))


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
        entry = baselines.entry_of(test, result)
        node.user_properties += [
            (RUN_PROPERTY, {**entry, "model": str(result.model), "device": result.environment.device,
                            "fallback_nodes": result.placement.fallback_count,
                            "nodes_per_provider": result.placement.nodes_per_provider}),
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


def _golden_target(request: pytest.FixtureRequest, ep: ExecutionProvider) -> GoldenTarget:
    node = request.node
    name, _, params = node.name.partition("[")
    params = [part for part in params.rstrip("]").split("-") if part and part != ep.id] if params else []
    return GoldenTarget(
        golden_dir=_golden_dir(request.config),
        module_stem=Path(node.path).stem,
        test_name=f"{name}[{'-'.join(params)}]" if params else name,
        nodeid=node.nodeid,
        rootdir=request.config.rootpath,
    )


def _golden_policy(request: pytest.FixtureRequest) -> GoldenPolicy:
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

    return GoldenPolicy(update=request.config.getoption("update_goldens"), layers=layers, record=record)

