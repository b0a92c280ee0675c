"""--webgpu-adapter: the launch plan (machine facts -> flags and environment), `hardware` failing without a GPU,
the adapter in reports and per-EP goldens, and both WebGPU implementations (native EP, JSEP) in one run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pytest_browserml.browser import launch_plan
from pytest_browserml.browser.launch_plan import AdapterUnavailable, MachineFacts, VulkanDriver
from pytest_browserml.golden import store as goldens

SWIFTSHADER_ICD = Path("/cache/chromium/vk_swiftshader_icd.json")
NVIDIA = VulkanDriver(Path("/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json"), "libGLX_nvidia.so.0")
LAVAPIPE = VulkanDriver(Path("/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"), "/usr/lib/libvulkan_lvp.so")


def facts(*drivers, missing=()) -> MachineFacts:
    return MachineFacts(tuple(drivers), SWIFTSHADER_ICD, tuple(missing))


# --- the plan, from faked machine facts (pure) ----------------------------------------------------------------

def test_a_gpu_driver_gives_the_pinned_shell_recipe():
    plan = launch_plan.plan("auto", facts(NVIDIA), pinned=True)
    env = dict(plan.env)
    assert plan.hardware and plan.summary.startswith("GPU: nvidia")
    # ANGLE on SwiftShader's Vulkan (it has the headless surface), Dawn enumerates the GPU too
    assert env["VK_DRIVER_FILES"] == f"{SWIFTSHADER_ICD}:{NVIDIA.path}"
    assert env["ANGLE_PREFERRED_DEVICE"] == "SwiftShader Device (Subzero)"
    assert {"--use-angle=vulkan", "--enable-dawn-features=vulkan_enable_f16_on_nvidia"} <= set(plan.args)
    assert "--disable-vulkan-surface" not in plan.args


def test_full_chrome_gets_gl_on_the_gpu_without_a_vulkan_surface():
    plan = launch_plan.plan("hardware", facts(NVIDIA), pinned=False)
    assert dict(plan.env) == {"VK_DRIVER_FILES": str(NVIDIA.path)}
    assert {"--use-angle=vulkan", "--disable-vulkan-surface", "--ignore-gpu-blocklist"} <= set(plan.args)


@pytest.mark.parametrize("drivers", [(), (LAVAPIPE,)], ids=["no driver", "only software drivers"])
def test_without_a_gpu_auto_is_swiftshader_and_hardware_an_error(drivers):
    plan = launch_plan.plan("auto", facts(*drivers), pinned=True)
    assert not plan.hardware and plan.summary == "SwiftShader (no GPU found)" and plan.env == ()
    assert "no Vulkan driver of a GPU found" in plan.fallback_reason
    with pytest.raises(AdapterUnavailable, match=r"--webgpu-adapter hardware: no Vulkan driver of a GPU found "
                                                 r"\(looked in /etc/vulkan/icd.d.*a CPU"):
        launch_plan.plan("hardware", facts(*drivers), pinned=True)


def test_a_missing_library_is_named_with_its_debian_package():
    with pytest.raises(AdapterUnavailable, match=r"nvidia_icd.json found, but it needs libGLdispatch.so.0 "
                                                 r"\(Debian/Ubuntu package libglvnd0\)"):
        launch_plan.plan("hardware", facts(NVIDIA, missing=["libGLdispatch.so.0"]), pinned=True)
    plan = launch_plan.plan("auto", facts(NVIDIA, missing=["libGLdispatch.so.0", "libnss3.so", "libplc4.so"]),
                            pinned=True)
    assert plan.summary == "SwiftShader (GPU not usable)"
    assert plan.missing == ("libnss3.so (Debian/Ubuntu package libnss3)", "libplc4.so (Debian/Ubuntu package libnspr4)")


def test_swiftshader_is_swiftshader_even_with_a_gpu():
    plan = launch_plan.plan("swiftshader", facts(NVIDIA), pinned=True)
    assert not plan.hardware and plan.args == launch_plan.SOFTWARE_ARGS and plan.env == ()


def test_gather_reads_driver_files_and_libraries(tmp_path, monkeypatch):
    nvidia = _icd(tmp_path / "nvidia_icd.json", "libGLX_nvidia.so.0")
    (tmp_path / "libGLdispatch.so.0").write_bytes(b"")
    monkeypatch.setenv("VK_DRIVER_FILES", f"{nvidia}:{tmp_path / 'broken.json'}")
    found = launch_plan.gather(None, (tmp_path,))
    assert NVIDIA.library in [driver.library for driver in found.gpu_drivers]
    assert "libGLdispatch.so.0" not in found.missing_libraries and found.swiftshader_icd is None


def test_a_baseline_measured_on_another_adapter_is_refused_naming_both(tmp_path):
    import dataclasses

    from pytest_browserml.budget import baselines
    from pytest_browserml.results import Adapter
    from tests.test_units import a_result

    path = tmp_path / "base.json"
    baselines.save(path, [baselines.entry_of("t.py::test_x", a_result())])
    on_gpu = a_result()
    nvidia = Adapter("nvidia", "", "", "NVIDIA H200", False, True)
    on_gpu = dataclasses.replace(on_gpu, environment=dataclasses.replace(on_gpu.environment, adapter=nvidia))
    with pytest.raises(baselines.BaselineError, match=r"refusing to compare: adapter 'google swiftshader \(fallback "
                                                      r"adapter, no shader-f16\)' in the baseline, 'nvidia \(hardware "
                                                      r"adapter, shader-f16\)' now"):
        baselines.compare(baselines.load(path), "base", "t.py::test_x", on_gpu, [baselines.CompareRule.parse("p50:10%")])


def _icd(path: Path, library: str) -> Path:
    path.write_text(json.dumps({"file_format_version": "1.0.0", "ICD": {"library_path": library}}))
    return path


# --- through pytest: the header, `hardware` failing here -------------------------------------------------------

ADD_TEST = """
def test_add(browserml):
    import numpy as np
    result = browserml.run("add.onnx", {"x": np.ones((2, 3), np.float32)})
    browserml.assert_golden(result, per_ep=True)
"""


@pytest.fixture
def project(pytester, models):
    pytester.makepyfile(test_model=ADD_TEST)
    (pytester.path / "add.onnx").write_bytes(models["add"].read_bytes())
    return pytester


@pytest.mark.parametrize("driver, summary", [
    ("nvidia_icd.json", "*webgpu adapter: GPU: nvidia (*nvidia_icd.json)*"),
    ("vk_swiftshader_icd.json", "*webgpu adapter: SwiftShader (no GPU found)*"),
    (None, "*webgpu adapter: SwiftShader (no GPU found)*"),
], ids=["driver found", "only SwiftShader", "no driver"])
def test_the_header_says_which_adapter_the_plan_aims_at(project, monkeypatch, driver, summary):
    if driver:
        library = "libGLX_nvidia.so.0" if "nvidia" in driver else "libvk_swiftshader.so"
        monkeypatch.setenv("VK_DRIVER_FILES", str(_icd(project.path / driver, library)))
    result = project.runpytest_subprocess("--browser-ep", "webgpu", "--webgpu-adapter", "auto", "--collect-only")
    result.stdout.fnmatch_lines([f"browserml: eps webgpu (ort.webgpu.min.mjs); onnxruntime-web *{summary}"])


def test_hardware_fails_fast_here_naming_what_is_missing(project):
    result = project.runpytest_subprocess("--browser-ep", "webgpu", "--webgpu-adapter", "hardware")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--webgpu-adapter hardware: no Vulkan driver of a GPU found (looked in "
                                 "/etc/vulkan/icd.d*$VK_DRIVER_FILES); this machine's WebGPU would be SwiftShader*"])


def test_an_unknown_adapter_mode_and_the_deprecated_bundle_option(project):
    result = project.runpytest_subprocess("--browser-ep", "webgpu", "-o", "browserml_webgpu_adapter=gpu")
    result.stderr.fnmatch_lines(["*--webgpu-adapter 'gpu': choose from auto, hardware, swiftshader*"])
    result = project.runpytest_subprocess("--browser-ep", "webgpu", "--ort-web-bundle", "all", "--collect-only",
                                          "-W", "default")
    result.stdout.fnmatch_lines(["*browserml: eps webgpu:jsep (ort.all.min.mjs)*", "*test_add?webgpu:jsep?*",
                                 "*--ort-web-bundle all is deprecated: use --browser-ep webgpu:jsep*"])


def test_the_ini_twins(pytester):
    from pytest_browserml.context import RUNTIME_KEY

    pytester.makeini("[pytest]\nbrowserml_eps = wasm webgpu\nbrowserml_webgpu_adapter = swiftshader\n"
                     "browserml_ort_web_bundle = all\n")
    settings = pytester.parseconfigure().stash[RUNTIME_KEY].settings
    assert [ep.id for ep in settings.eps] == ["wasm", "webgpu:jsep"]
    assert settings.webgpu_plan.mode == "swiftshader" and settings.webgpu_plan.summary == "SwiftShader (asked for)"


# --- in a real browser (SwiftShader here) ----------------------------------------------------------------------

CONV_TEST = """
import numpy as np, pytest
from pytest_browserml import ModelRunError

def test_conv_without_dilations(browserml):
    x = {"x": np.ones((1, 3, 16, 16), np.float32)}
    if browserml.ep == "webgpu:jsep":  # ORT-web 1.30's JSEP Conv fails without `dilations`, the native EP runs it
        with pytest.raises(ModelRunError, match=r"(?s)conv.onnx on webgpu:jsep.*dilations should be 2D"):
            browserml.run("conv.onnx", x)
    else:
        browserml.run("conv.onnx", x)
    assert browserml.run("add.onnx", {"x": np.ones((2, 3), np.float32)}).outputs["y"].tolist() == [[2.0] * 3] * 2
"""


def test_both_webgpu_implementations_in_one_run_with_the_adapter_everywhere(project, models):
    """Native EP and JSEP side by side: own ids, bundles, placement, goldens and report rows, and their own
    failures; the adapter in the header, every row, the report and the sidecars; another adapter refused."""
    project.makepyfile(test_conv=CONV_TEST)
    (project.path / "conv.onnx").write_bytes(models["conv_no_dilations"].read_bytes())
    args = ("--browser-ep", "webgpu", "--browser-ep", "webgpu:jsep", "--browserml-report", "report.json", "-v")
    result = project.runpytest_subprocess(*args, "--update-goldens")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*webgpu adapter: SwiftShader (no GPU found)*", "*test_add?webgpu? PASSED*",
                                 "*test_add?webgpu:jsep? PASSED*", "*test_add * webgpu:jsep * google swiftshader *"])
    report = json.loads((project.path / "report.json").read_text())
    assert report["environment"]["webgpu_adapter"] == "SwiftShader (no GPU found)"
    assert report["environment"]["ort_web_bundles"] == {"webgpu": "ort.webgpu.min.mjs",
                                                        "webgpu:jsep": "ort.all.min.mjs"}
    rows = {row["ep"]: row for row in report["tests"] if row["test"] == "test_model.py::test_add"}
    swiftshader = "google swiftshader (fallback adapter, no shader-f16)"
    assert rows["webgpu"]["adapter"] == rows["webgpu:jsep"]["adapter"] == swiftshader
    assert rows["webgpu"]["runs"][0]["nodes_per_provider"] == {"WebGpuExecutionProvider": 1}
    assert rows["webgpu:jsep"]["runs"][0]["nodes_per_provider"] == {"JsExecutionProvider": 1}
    folder = project.path / "goldens" / "test_model"
    for tag, bundle in (("webgpu", "ort.webgpu.min.mjs"), ("webgpu_jsep", "ort.all.min.mjs")):
        sidecar = goldens.read_sidecar(folder / f"test_add[{tag}].json")
        assert sidecar["made_by"]["adapter"] == swiftshader and sidecar["made_by"]["bundle"] == bundle

    # a per-EP golden made on another adapter is refused, naming the difference
    sidecar_path = folder / "test_add[webgpu].json"
    sidecar = json.loads(sidecar_path.read_text())
    sidecar["made_by"]["adapter"] = "nvidia (hardware adapter, shader-f16)"
    sidecar_path.write_text(json.dumps(sidecar))
    result = project.runpytest_subprocess(*args, "test_model.py")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*the per-EP golden goldens/test_model/test_add?webgpu?.npz was made on another device: adapter "
        "'nvidia (hardware adapter, shader-f16)' there, 'google swiftshader (fallback adapter, no shader-f16)' here.",
        "*It is not compared. To replace it with this device's outputs: "
        "pytest 'test_model.py::test_add?webgpu?' --browser-ep webgpu --update-goldens",
    ])


def test_doctor_runs_every_ep_and_shows_the_gpu_section(pytester):
    """`browserml doctor` as a user types it (it builds its own Runtime, outside pytest)."""
    result = pytester.run(sys.executable, "-m", "pytest_browserml.cli", "doctor", "--browser-ep", "wasm",
                          "--browser-ep", "webgpu", "--browser-ep", "webnn", timeout=180)
    assert result.ret == 0, result.stderr.str()
    result.stdout.fnmatch_lines(["*wasm*works*", "*webgpu*works*", "*webnn*works*"])
    result.stdout.fnmatch_lines(["*SwiftShader (no GPU found)*"])
