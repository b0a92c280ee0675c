"""What the user configured: command-line options, their ini twins, and pyproject.toml's
`[tool.browserml]` tables, read once into typed settings with errors that name the setting."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from .browser import provision, wasm_engine
from .browser.launch import BrowserSetupError, ExecutionProvider, webgpu_plan
from .browser.launch_plan import ADAPTER_MODES
from .browser.wasm_engine import EngineSettingError
from .budget import baselines
from .budget.baselines import BaselineError, CompareRule
from .budget.limits import BudgetError, BudgetLayer
from .golden.check import UPDATE_MODES
from .golden.localise import MODES as LOCALISE_MODES
from .golden.tolerances import ToleranceError, ToleranceLayer
from .runner import Settings


def add_options(parser: pytest.Parser) -> None:
    """Every option with its ini twin where one makes sense."""
    group = parser.getgroup("browserml", "run ONNX models in a real browser (pytest-browserml)")

    def option(flag, ini, help, *, ini_type=None, default=None, **kwargs):
        # The option's own default is None whatever its action (a store_true would read False): None means
        # "not given", and `setting` then reads the ini, whose default is `default`.
        group.addoption(flag, dest=ini, help=f"{help} (ini: {ini})", default=None, **kwargs)
        parser.addini(ini, help=help, type=ini_type, default=default)

    option("--browser-ep", "browserml_eps", "execution provider to run on: wasm, webgpu (the native WebGPU EP), "
           "webgpu:jsep (WebGPU through JSEP), webnn or webnn:gpu|npu; repeat for several (default: wasm)",
           action="append", ini_type="args", default=["wasm"])
    option("--webgpu-adapter", "browserml_webgpu_adapter", "the WebGPU adapter: auto (the GPU when the machine "
           "has one, else SwiftShader), hardware (no GPU is an error) or swiftshader", choices=ADAPTER_MODES,
           default="auto")
    option("--browser-ep-strict", "browserml_ep_strict", "an EP that cannot run here is an error, not a skip",
           action="store_true", default=False, ini_type="bool")
    option("--browser-executable", "browserml_browser_executable", "path of a Chromium-based browser to use "
           "instead of the pinned Chromium")
    option("--browser-channel", "browserml_browser_channel", "a Playwright browser channel to use instead of "
           "the pinned Chromium: chromium, chrome, msedge ...")
    option("--browser-ws-endpoint", "browserml_ws_endpoints", "a Playwright browser server (ws://...) to run "
           "the EPs in instead of a local browser; repeat for several (xdist workers spread over them)",
           action="append", ini_type="args", default=[])
    option("--ort-web-version", "browserml_ort_web_version", "onnxruntime-web version from the npm registry",
           default=provision.ORT_WEB_VERSION)
    option("--ort-web-bundle", "browserml_ort_web_bundle", "DEPRECATED, use --browser-ep webgpu:jsep: `all` makes "
           "webgpu run through JSEP, `webgpu` keeps the native WebGPU EP")
    option("--browserml-wasm-tier", "browserml_wasm_tier", "V8's compiler tier for onnxruntime-web's wasm: "
           "tier-up (as users' browsers run it), liftoff (--js-flags=--liftoff-only: no re-optimisation, far less CPU, "
           "slower code) or auto (tier-up for browserml tests, which time their runs; liftoff for ONNX test-data "
           "folders)", default=wasm_engine.AUTO)
    option("--browserml-wasm-threads", "browserml_wasm_threads", "onnxruntime-web threads per page: a number, or "
           "auto (ORT's default, at most the cores of this xdist worker: cores / PYTEST_XDIST_WORKER_COUNT)",
           default=wasm_engine.AUTO)
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
           "(schema: pytest_browserml/report/report.schema.json)")
    option("--browserml-html", "browserml_html", "write a self-contained HTML report: the test x EP matrix, "
           "failures with error statistics and pictures, latency per EP")
    option("--browserml-localise", "browserml_localise", "when to say where outputs diverge (the first node "
           "whose value leaves native onnxruntime's): failures (of reference goldens; default), always (every "
           "assert_golden, figures in the reports) or off", nargs="?", const="always", choices=LOCALISE_MODES,
           default="failures")
    parser.addini("browserml_timeout", "seconds one model run may take before the page is replaced", default="300")
    parser.addini("browserml_auto_install", "fetch onnxruntime-web and the pinned Chromium when missing",
                  type="bool", default=True)
    parser.addini("browserml_warmup", "warm-up runs before the timed runs (not counted)", default="1")
    parser.addini("browserml_iterations", "timed runs of browserml.run", default="5")


def setting(config: pytest.Config, name: str):
    value = config.getoption(name)
    return config.getini(name) if value is None else value


def settings_from(config: pytest.Config) -> Settings:
    try:
        eps = tuple(dict.fromkeys(ExecutionProvider.parse(text) for text in setting(config, "browserml_eps")))
        eps = _with_deprecated_bundle(config, eps)
        executable = setting(config, "browserml_browser_executable") or None
        channel = setting(config, "browserml_browser_channel") or None
        ws_endpoints = tuple(setting(config, "browserml_ws_endpoints"))
        mode = setting(config, "browserml_webgpu_adapter") or "auto"
        uses_webgpu = any(ep.name == "webgpu" for ep in eps)
        return Settings(
            eps=eps,
            strict=bool(setting(config, "browserml_ep_strict")),
            timeout_s=_number(config, "browserml_timeout"),
            ort_web_version=setting(config, "browserml_ort_web_version"),
            browser_executable=executable,
            browser_channel=channel,
            auto_install=config.getini("browserml_auto_install"),
            warmup=_number(config, "browserml_warmup"),
            iterations=_number(config, "browserml_iterations"),
            budget_scale=_number(config, "browserml_budget_scale", option=True),
            profile=config.getoption("browserml_profile"),
            ws_endpoints=ws_endpoints,
            wasm_tier=wasm_engine.parse_tier(setting(config, "browserml_wasm_tier")),
            wasm_threads=wasm_engine.parse_threads(str(setting(config, "browserml_wasm_threads"))),
            webgpu_plan=webgpu_plan(mode, executable, channel) if uses_webgpu and not ws_endpoints else None,
        )
    except (BrowserSetupError, EngineSettingError) as error:
        raise pytest.UsageError(str(error)) from None


def _with_deprecated_bundle(config: pytest.Config, eps: tuple[ExecutionProvider, ...]) -> tuple[ExecutionProvider, ...]:
    """--ort-web-bundle (deprecated): `all` turns webgpu into webgpu:jsep, as it ran before the EP axis."""
    bundle = setting(config, "browserml_ort_web_bundle")
    if not bundle:
        return eps
    if bundle not in ("all", "webgpu"):
        raise BrowserSetupError(f"browserml_ort_web_bundle = {bundle!r}: choose from all, webgpu "
                                "(deprecated: use --browser-ep webgpu or --browser-ep webgpu:jsep)")
    config.issue_config_time_warning(pytest.PytestDeprecationWarning(
        f"--ort-web-bundle {bundle} is deprecated: use --browser-ep webgpu:jsep for WebGPU through JSEP (ort.all) "
        "and --browser-ep webgpu for the native WebGPU EP; both can run in one session"), stacklevel=2)
    if bundle == "webgpu":
        return eps
    return tuple(dict.fromkeys(ExecutionProvider("webgpu", jsep=True) if ep.name == "webgpu" else ep for ep in eps))


# (kind, lowest, highest, lowest allowed): what each number setting accepts; a day bounds the timeout
# (past it the socket and Playwright timeouts overflow), finite bounds refuse nan and inf.
_NUMBERS = {
    "browserml_timeout": (float, 0, 86400, False),
    "browserml_budget_scale": (float, 0, 1000, False),
    "browserml_warmup": (int, 0, 1_000_000, True),
    "browserml_iterations": (int, 0, 1_000_000, True),
}


def _number(config, name, option=False):
    """A number setting within its range, or a usage error naming the setting and the range."""
    kind, low, high, low_allowed = _NUMBERS[name]
    text = setting(config, name) if option else config.getini(name)
    try:
        value = kind(text)
    except (ValueError, OverflowError):
        value = math.nan
    if not (low <= value <= high) or (value == low and not low_allowed):
        what = "a whole number" if kind is int else "a number"
        raise pytest.UsageError(f"{name} = {text!r}: expected {what} {'from' if low_allowed else 'above'} {low} "
                                f"{'to' if low_allowed else 'up to'} {high}")
    return value


def localise_mode(config: pytest.Config) -> str:
    """--browserml-localise or its ini twin (the command line's choices are argparse's)."""
    mode = setting(config, "browserml_localise")
    if mode not in LOCALISE_MODES:
        raise pytest.UsageError(f"browserml_localise = {mode!r}: choose from {', '.join(LOCALISE_MODES)}")
    return mode


def baseline_path(config: pytest.Config, name: str) -> Path:
    return config.rootpath / ".browserml" / "baselines" / f"{name}.json"


def baseline(config: pytest.Config) -> tuple[str, dict, list[CompareRule]] | None:
    name = config.getoption("budget_compare")
    if not name:
        return None
    try:
        rules = [CompareRule.parse(text) for text in config.getoption("budget_compare_fail") or ["p50:10%"]]
        return name, baselines.load(baseline_path(config, name)), rules
    except BaselineError as error:
        raise pytest.UsageError(str(error)) from None


def golden_dir(config: pytest.Config) -> Path:
    return config.rootpath / setting(config, "browserml_golden_dir")


def project_layers(config: pytest.Config) -> tuple[tuple[ToleranceLayer, ...], tuple[BudgetLayer, ...]]:
    """`[tool.browserml.tolerance]` and `[tool.browserml.budget]` of the rootdir's pyproject.toml."""
    import tomllib

    path = config.rootpath / "pyproject.toml"
    if not path.is_file():
        return (), ()
    try:
        project = tomllib.loads(path.read_text()).get("tool", {}).get("browserml", {})
        if unknown := _unknown_key(project, config):
            raise pytest.UsageError(f"{path}: {unknown}")
        tolerance, budget = project.get("tolerance"), project.get("budget")
        return (
            (ToleranceLayer(f"[tool.browserml.tolerance] in {path}", tolerance),) if tolerance else (),
            (BudgetLayer(f"[tool.browserml.budget] in {path}", budget),) if budget else (),
        )
    except (tomllib.TOMLDecodeError, ToleranceError, BudgetError) as error:
        raise pytest.UsageError(f"{path}: {error}") from None


PROJECT_TABLES = ("tolerance", "budget")


def _unknown_key(project: dict, config: pytest.Config) -> str | None:
    """A misspelt table or a setting in the wrong place would be ignored silently: name it and what was meant."""
    import difflib

    for key in project:
        if key in PROJECT_TABLES:
            continue
        hints = [f"[tool.browserml.{near}]" for near in difflib.get_close_matches(key, PROJECT_TABLES, n=1)]
        try:
            config.getini(f"browserml_{key}")  # an ini setting: it belongs with pytest's
            hints.append(f"browserml_{key} = ... in [tool.pytest.ini_options]")
        except ValueError:
            pass
        hint = f"; did you mean {' or '.join(hints)}?" if hints else ""
        return f"[tool.browserml] has an unknown key {key!r}{hint} ([tool.browserml] takes the tables " \
               f"{', '.join(PROJECT_TABLES)})"
    return None
