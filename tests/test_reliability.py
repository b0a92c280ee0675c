"""Faults users meet, and what they see: each fails one test with a message naming the culprit,
never a crashed session or a hang. docs/reliability.md lists them with the test of each.

Bad inputs and too-large models run in-process on every EP of the project's ini; crashes,
bad goldens and races run pytest itself (pytester, or a process of our own to kill -9).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pytest_browserml import ModelRunError
from pytest_browserml.browser import provision
from pytest_browserml.golden import store as goldens
from tests import modelzoo

ADD_TEST = """
import numpy as np

def test_add(browserml):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(browserml.run("models/add.onnx", {"x": x}).outputs["y"], x + x)
"""


def save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def expand_model(path: Path, mib: int) -> Path:
    """x [1] expanded to a float32 intermediate of `mib` MiB, then summed: a tiny file, a huge tensor."""
    graph = helper.make_graph(
        [helper.make_node("Expand", ["x", "shape"], ["big"]), helper.make_node("ReduceSum", ["big"], ["y"], keepdims=0)],
        "expand",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        initializer=[numpy_helper.from_array(np.array([mib * 2**20 // 4], np.int64), "shape")],
    )
    return save(graph, path)


def nan_model(path: Path) -> Path:
    """log = Log(a) (NaN for a < 0) and inv = Reciprocal(b) (Inf for b == 0)."""
    graph = helper.make_graph(
        [helper.make_node("Log", ["a"], ["log"]), helper.make_node("Reciprocal", ["b"], ["inv"])],
        "nan",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [4]) for name in ("a", "b")],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [4]) for name in ("log", "inv")],
    )
    return save(graph, path)


def ones(shape, dtype=np.float32) -> np.ndarray:
    return np.ones(shape, dtype)


# --- 1. bad inputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "feeds", "problem", "expects"), [
    ("add", {"z": ones((2, 3))}, "input 'x' is missing; the model has no input 'z'", "x: float32 [2, 3]"),
    ("matmul", {}, "input 'x' is missing", "x: float32 [batch, 64]"),
    ("add", {"x": ones((3, 3))}, "'x' has shape [3, 3], the model takes [2, 3]", "x: float32 [2, 3]"),
    ("matmul", {"x": ones(64)}, "'x' has shape [64], the model takes [batch, 64]", "x: float32 [batch, 64]"),
    ("add", {"x": ones((2, 3), np.float64)}, "'x' is float64, the model takes float32", "x: float32 [2, 3]"),
    ("embedding", {"ids": ones(2, np.int32)}, "'ids' is int32, the model takes int64", "ids: int64 [n]"),
], ids=["wrong-name", "missing", "wrong-shape", "wrong-rank", "wrong-float-dtype", "wrong-int-dtype"])
def test_inputs_unlike_the_models_fail_listing_what_it_expects(browserml, models, model, feeds, problem, expects):
    with pytest.raises(ModelRunError) as failure:
        browserml.run(models[model], feeds, warmup=0, iterations=1)
    assert str(failure.value).startswith(f"{models[model]} on {browserml.ep}: the inputs do not match the model: "
                                         f"{problem}\nthe model expects:\n  {expects}\ngiven: ")
    assert browserml.run(models["add"], {"x": ones((2, 3))}, warmup=0, iterations=1).outputs["y"].sum() == 12


def test_a_truncated_model_fails_with_orts_message_and_the_next_run_works(browserml, models, tmp_path):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(models["conv"].read_bytes()[: models["conv"].stat().st_size // 2])
    with pytest.raises(ModelRunError, match=rf"{truncated} on {browserml.ep}: onnxruntime-web failed: "):
        browserml.run(truncated, {"x": ones((1, 3, 16, 16))}, warmup=0, iterations=1)
    assert browserml.run(models["add"], {"x": ones((2, 3))}, warmup=0, iterations=1).outputs["y"].sum() == 12


@pytest.mark.browser_ep("wasm")
@pytest.mark.parametrize("location", ["../secret.bin", "{secret}"], ids=["relative", "absolute"])
def test_external_data_outside_the_models_folder_is_not_served(browserml, tmp_path, location):
    """The model file names its external data: a model from elsewhere must not read other files through the page."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(6, dtype=np.float32).tobytes())
    weights = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2, 3], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location.format(secret=secret)), ("offset", "0"), ("length", "24")):
        weights.external_data.add(key=key, value=value)
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "leak",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], initializer=[weights])
    model = save(graph, tmp_path / "models" / "leak.onnx")
    with pytest.raises(ValueError, match=r"pytest-browserml does not serve .*secret\.bin at 'models/[0-9a-f]+/.*secret"
                                         r"\.bin': the route has a '\.\.' or empty part"):
        browserml.run(model, {"x": ones((2, 3))}, warmup=0, iterations=1)


@pytest.mark.browser_ep("wasm")
@pytest.mark.parametrize("name", ["my model", "modèle 日本", "a#b", "what?", "100%", "a+b&c=d;e"])
def test_a_model_and_its_external_data_run_whatever_their_file_names(browserml, tmp_path, name):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(browserml.run(modelzoo.add(tmp_path / f"{name}.onnx"), {"x": x}).outputs["y"], x + x)
    external = modelzoo.external_data(tmp_path / "external" / f"{name}.onnx")  # weights in "<name>.weights"
    x = np.ones((1, 256), np.float32)
    expected = modelzoo.reference(external, {"x": x})["y"]
    np.testing.assert_allclose(browserml.run(external, {"x": x}).outputs["y"], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.browser_ep("wasm")
def test_missing_external_data_names_the_local_file_and_never_the_token(browserml, tmp_path):
    model = modelzoo.external_data(tmp_path / "model.onnx")
    (tmp_path / "model.weights").unlink()
    with pytest.raises(FileNotFoundError) as error:
        browserml.run(model, {"x": np.ones((1, 256), np.float32)})
    assert f"its external data file {tmp_path / 'model.weights'} is missing" in str(error.value)
    assert browserml._ep_browser.runtime.server.token not in str(error.value)


def gpu_max_buffer_size(browserml) -> int:
    page = browserml._ep_browser.page()  # Playwright answers only in its thread (playwright_thread.py)
    return page.playwright_thread.call(
        page.page.evaluate, "async () => (await navigator.gpu.requestAdapter()).limits.maxBufferSize")


def test_a_model_too_large_for_the_ep_fails_saying_so(browserml, models, tmp_path):
    """An intermediate beyond the EP's limit, from a 200-byte model: fails fast, nothing is allocated.

    wasm: 32-bit memory (std::bad_alloc below 4 GiB, a SafeInt overflow above); webnn: 2 GiB per
    tensor; webgpu: the device's maxBufferSize (1 GiB on SwiftShader), else ORT's 4 GiB.
    """
    ep = browserml.ep.split(":")[0]
    if ep == "webgpu":
        limit = gpu_max_buffer_size(browserml)
        sizes = [limit // 2**20 + 64] if limit < 4 * 2**30 - 2**28 else [4200]
    else:
        sizes = {"wasm": [4090, 4200], "webnn": [2100]}[ep]
    for mib in sizes:
        started = time.monotonic()
        with pytest.raises(ModelRunError) as failure:
            browserml.run(expand_model(tmp_path / f"expand{mib}.onnx", mib), {"x": ones(1)}, warmup=0, iterations=1)
        assert f"the model is too large for {browserml.ep}" in str(failure.value), str(failure.value)
        assert time.monotonic() - started < 20
    assert browserml.run(models["add"], {"x": ones((2, 3))}, warmup=0, iterations=1).outputs["y"].sum() == 12


@pytest.fixture
def project(pytester):
    """A user project with the add model."""
    modelzoo.add(pytester.path / "models" / "add.onnx")
    return pytester


def test_nan_and_inf_outputs_are_named_against_a_finite_golden(project):
    nan_model(project.path / "models" / "nan.onnx")
    files = goldens.GoldenFiles(project.path / "goldens" / "test_model" / "test_nan.npz")
    goldens.write_golden(files, {"log": np.array([0, 0, 0, 0.5], np.float32),
                                 "inv": np.array([1, 1, 0.5, 0.25], np.float32)}, {})
    project.makepyfile(test_model="""
        import numpy as np

        def test_nan(browserml):
            feeds = {"a": np.array([1, -1, -2, 2], np.float32), "b": np.array([1, 0, 2, 4], np.float32)}
            browserml.assert_golden(browserml.run("models/nan.onnx", feeds))
    """)
    result = project.runpytest_subprocess("--browser-ep", "wasm")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*2 of 2 outputs differ from the golden goldens/test_model/test_nan.npz on wasm*",
        "*output 'log': 3 of 4 elements (75.00%) out of tolerance*",
        "*diagnosis: NaN in obtained where expected is finite (2 elements)*",
        "*output 'inv': 1 of 4 elements (25.00%) out of tolerance*",
        "*diagnosis: Inf mismatch (1 element)*",
    ])


class Touch:
    """Unpickling this creates a file: proof that a golden's pickle ran."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return Path.touch, (self.path,)


def test_bad_goldens_fail_their_test_naming_the_file_and_the_fault(project):
    folder = project.path / "goldens" / "test_model"
    folder.mkdir(parents=True)
    y = np.arange(6, dtype=np.float32).reshape(2, 3) * 2
    goldens.write_golden(goldens.GoldenFiles(folder / "whole.npz"), {"y": y}, {})
    (folder / "truncated.npz").write_bytes((folder / "whole.npz").read_bytes()[:100])
    (folder / "text.npz").write_text("y\n0,2,4\n6,8,10\n")
    unpickled = project.path / "unpickled"
    np.savez(folder / "pickled.npz", y=np.array([Touch(unpickled)], dtype=object))
    goldens.write_golden(goldens.GoldenFiles(folder / "lacking.npz"), {"scores": y}, {})
    project.makepyfile(test_model="""
        import numpy as np
        import pytest

        X = np.arange(6, dtype=np.float32).reshape(2, 3)

        @pytest.mark.parametrize("name", ["whole", "truncated", "text", "pickled", "lacking"])
        def test_golden(browserml, name):
            browserml.assert_golden(browserml.run("models/add.onnx", {"x": X}), name=name)
    """)
    result = project.runpytest_subprocess("--browser-ep", "wasm")
    result.assert_outcomes(passed=1, failed=4)
    result.stdout.fnmatch_lines_random([
        "*GoldenError: *goldens/test_model/truncated.npz is truncated or corrupt*",
        "*GoldenError: *goldens/test_model/text.npz is not an .npz file (no zip header)*",
        "*GoldenError: *goldens/test_model/pickled.npz: output 'y' holds pickled objects; refused without unpickling*",
        "*output 'scores': not compared; expected shape (2, 3), dtype float32*",
        "*problem: missing from the obtained outputs*",
        "*output 'y': not compared*",
        "*problem: obtained but not in the expected outputs (no golden tensor)*",
    ])
    assert not unpickled.exists()


# --- 2. crashes: the browser ----------------------------------------------------------------------


def test_a_killed_browser_is_relaunched(project):
    """Killed between tests: the next run relaunches it unnoticed. Killed mid-run: that run fails, saying so."""
    modelzoo.endless_loop(project.path / "models" / "endless.onnx")
    project.makepyfile(test_model=textwrap.dedent("""
        import os
        import signal
        import threading
        import time
        import numpy as np

        X = np.ones((2, 3), np.float32)

        def kill_browser(browserml):
            os.kill(browserml._ep_browser.page().processes.pids_by_type["browser"][0], signal.SIGKILL)

        def test_kill_between_tests(browserml):
            browserml.run("models/add.onnx", {"x": X})
            kill_browser(browserml)
            time.sleep(1)

        def test_after_the_kill(browserml):
            assert browserml.run("models/add.onnx", {"x": X}).outputs["y"].sum() == 12

        def test_killed_mid_run(browserml):
            threading.Timer(2.0, kill_browser, [browserml]).start()
            browserml.run("models/endless.onnx", {"x": np.ones(1, np.float32)}, warmup=0, iterations=1)
    """) + ADD_TEST)
    result = project.runpytest_subprocess("--browser-ep", "wasm", "-v")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*test_after_the_kill?wasm? PASSED*"])
    result.stdout.fnmatch_lines(["*models/endless.onnx on wasm: the browser process exited (killed or crashed)*"
                                 "it was replaced*"])


def report_of(project, name: str = "report.json") -> dict:
    """The --browserml-report of a pytester run, by test name."""
    tests = json.loads((project.path / name).read_text())["tests"]
    return {row["nodeid"].rpartition("::")[2]: row for row in tests}


def test_a_frozen_browser_fails_its_test_within_the_timeout_and_the_next_gets_a_new_browser(project):
    """SIGSTOP on the browser's main process mid-run: Playwright would wait for it forever."""
    modelzoo.endless_loop(project.path / "models" / "endless.onnx")
    project.makeini("[pytest]\nbrowserml_timeout = 5\n")
    project.makepyfile(test_model=textwrap.dedent("""
        import os
        import signal
        import threading
        import numpy as np

        def test_frozen(browserml):
            pid = browserml._ep_browser.page().processes.pids_by_type["browser"][0]
            open("frozen.pid", "w").write(str(pid))
            threading.Timer(1.0, os.kill, [pid, signal.SIGSTOP]).start()
            browserml.run("models/endless.onnx", {"x": np.ones(1, np.float32)}, warmup=0, iterations=1)
    """) + ADD_TEST)
    result = project.runpytest_subprocess("--browser-ep", "wasm", "-v", "--browserml-report=report.json",
                                          timeout=300)  # only against a hang: the assertions say what counts
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*models/endless.onnx on wasm: the page did not answer within browserml_timeout = 5 s;"
                                 " it was replaced; the browser did not answer closing a page either and was killed*"])
    report = report_of(project)
    assert report["test_frozen[wasm]"]["duration_s"] < 5 + 30
    assert report["test_add[wasm]"]["verdict"] == "passed"
    frozen = int((project.path / "frozen.pid").read_text())
    assert not Path(f"/proc/{frozen}").exists(), "the frozen browser outlived the session"


def test_a_killed_gpu_process_fails_the_run_at_once_saying_so(project):
    """Without a watch the run waits for WebGPU work that a dead GPU process will never finish."""
    modelzoo.conv(project.path / "models" / "conv.onnx")
    project.makeini("[pytest]\nbrowserml_timeout = 120\n")
    project.makepyfile(test_model=textwrap.dedent("""
        import os
        import signal
        import threading
        import numpy as np

        def test_gpu_killed(browserml):
            gpu = browserml._ep_browser.page().processes.pids_by_type["GPU"][0]
            threading.Timer(3.0, os.kill, [gpu, signal.SIGKILL]).start()
            x = np.ones((1, 3, 16, 16), np.float32)
            browserml.run("models/conv.onnx", {"x": x}, warmup=0, iterations=1_000_000)
    """) + ADD_TEST)
    result = project.runpytest_subprocess("--browser-ep", "webgpu", "-v", "--browserml-report=report.json",
                                          timeout=600)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*models/conv.onnx on webgpu: the GPU process died (killed or crashed)*"
                                 "it was replaced*"])
    result.stdout.no_fnmatch_line("*did not answer*")
    assert report_of(project)["test_add[webgpu]"]["verdict"] == "passed"


def test_ctrl_c_mid_run_reports_the_test_as_interrupted_never_passed(project):
    modelzoo.endless_loop(project.path / "models" / "endless.onnx")
    project.makepyfile(test_model=textwrap.dedent("""
        import numpy as np

        def test_interrupted(browserml):
            browserml.run("models/add.onnx", {"x": np.ones((2, 3), np.float32)})
            open("running", "w").close()
            browserml.run("models/endless.onnx", {"x": np.ones(1, np.float32)}, warmup=0, iterations=1)
    """))
    pytest_run = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--browser-ep", "wasm",
                                   "--browserml-report=report.json"], cwd=project.path, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for(lambda: (project.path / "running").exists() or pytest_run.poll() is not None, 120, "the run")
        time.sleep(1)  # into the endless run
        os.kill(pytest_run.pid, signal.SIGINT)
        output = pytest_run.communicate(timeout=120)[0]
    finally:
        try:
            os.killpg(pytest_run.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert "KeyboardInterrupt" in output, output
    row = next(line for line in output.splitlines() if "test_interrupted" in line and " wasm " in line)
    assert row.split()[3] == "interrupted", output  # test, ep, adapter, verdict
    assert report_of(project)["test_interrupted[wasm]"]["verdict"] == "interrupted"


def test_a_browser_that_cannot_start_shows_its_command_line_and_stderr(project, tmp_path):
    broken = tmp_path / "broken-chromium"
    broken.write_text("#!/bin/sh\necho 'error while loading shared libraries: libnss3.so: cannot open' >&2\nexit 127\n")
    broken.chmod(0o755)
    project.makepyfile(test_model=ADD_TEST)
    result = project.runpytest_subprocess("--browser-ep", "wasm", "--browser-executable", str(broken))
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        f"*the browser for wasm did not start ({broken} --no-sandbox *",
        "*error while loading shared libraries: libnss3.so: cannot open*",
    ])


# --- 1. a tampered onnxruntime-web cache -------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """onnxruntime-web installed by this version (with its manifest) into a cache of its own.

    `npm pack` takes the tarball from npm's cache when it has it, as after the first provisioning.
    """
    cache = tmp_path_factory.mktemp("installed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BROWSERML_CACHE", str(cache))
        provision.ort_web(fetch=True)
    return cache


@pytest.fixture
def cache(installed, tmp_path, monkeypatch) -> Path:
    """A copy of the installed cache (mtimes kept) that a test may damage; BROWSERML_CACHE points at it."""
    shutil.copytree(installed, tmp_path / "cache", symlinks=True)
    monkeypatch.setenv("BROWSERML_CACHE", str(tmp_path / "cache"))
    return provision.ort_web_dir(provision.ORT_WEB_VERSION)


BUNDLE = "dist/ort.all.min.mjs"


@pytest.mark.slow
def test_an_intact_cache_is_checked_without_hashing(cache, monkeypatch):
    marker = json.loads((cache / provision.COMPLETE_MARKER).read_text())
    assert BUNDLE in marker["files"] and marker["integrity"].startswith("sha512-")
    monkeypatch.setattr(provision, "file_sha256", lambda path: pytest.fail(f"hashed {path}"))
    assert provision.ort_web(fetch=False).dist == cache / "dist"


@pytest.mark.slow
def test_a_touched_but_unchanged_cache_is_hashed_once_per_process(cache, monkeypatch):
    for path in (cache / "dist").iterdir():
        os.utime(path)  # e.g. a CI cache restored without mtimes
    hashed = []
    real = provision.file_sha256
    monkeypatch.setattr(provision, "file_sha256", lambda path: hashed.append(path) or real(path))
    provision.ort_web(fetch=False)
    assert len(hashed) == len(list((cache / "dist").iterdir()))
    provision.ort_web(fetch=False)
    assert len(hashed) == len(list((cache / "dist").iterdir()))


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(data)


@pytest.mark.slow
@pytest.mark.parametrize(("damage", "says"), [
    (lambda cache: flip_a_byte(cache / BUNDLE), rf"{BUNDLE} differs from the file installed \(sha256 mismatch\)"),
    (lambda cache: (cache / BUNDLE).write_text("export {};"), rf"{BUNDLE} has 10 bytes, \d+ when installed"),
    (lambda cache: (cache / "dist" / "ort-wasm-simd-threaded.jsep.wasm").unlink(),
     r"dist/ort-wasm-simd-threaded.jsep.wasm is missing"),
    (lambda cache: (cache / provision.COMPLETE_MARKER).write_text("{not json"),
     r"its completion marker .*\.browserml-complete is unreadable \(JSONDecodeError: .*\)"),
], ids=["same-size", "truncated", "missing", "marker"])
def test_a_tampered_cache_is_refused_naming_the_file_and_the_fix(cache, damage, says):
    damage(cache)
    with pytest.raises(provision.ProvisionError,
                       match=rf"^onnxruntime-web 1.30.0 in the cache is damaged: .*{says}\. "
                             r"Run `browserml install --ort-web-version 1.30.0` to fetch it again\.$"):
        provision.ort_web(fetch=False)


@pytest.mark.slow
def test_a_tampered_cache_is_fetched_again_when_allowed(cache, installed):
    flip_a_byte(cache / BUNDLE)
    said = []
    provision.ort_web(fetch=True, progress=said.append)
    assert said[0].startswith("the cached onnxruntime-web@1.30.0 is damaged (") and "sha256 mismatch" in said[0]
    original = installed / "onnxruntime-web" / provision.ORT_WEB_VERSION / BUNDLE
    assert (cache / BUNDLE).read_bytes() == original.read_bytes()
    assert provision._damage(cache) is None
    assert not [path.name for path in cache.parent.iterdir() if path.name.startswith(".1.30.0-")]  # no leftovers


@pytest.mark.slow
def test_a_cache_unpacked_before_manifests_is_not_checked(cache):
    """Documented limit: such a folder has nothing to check against; `browserml install` after deleting it adds one."""
    marker = cache / provision.COMPLETE_MARKER
    record = json.loads(marker.read_text())
    marker.write_text(json.dumps({"package": record["package"], "integrity": record["integrity"]}))
    flip_a_byte(cache / BUNDLE)
    assert provision.ort_web(fetch=False).dist == cache / "dist"


def test_a_session_on_a_tampered_cache_fails_with_the_fix(project, cache):
    flip_a_byte(cache / BUNDLE)
    project.makepyfile(test_model=ADD_TEST)
    project.makeini("[pytest]\nbrowserml_auto_install = false\n")
    result = project.runpytest_subprocess("--browser-ep", "wasm")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*onnxruntime-web 1.30.0 in the cache is damaged: *ort.all.min.mjs differs from the "
                                 "file installed (sha256 mismatch). Run `browserml install --ort-web-version 1.30.0` "
                                 "to fetch it again.*"])


# --- 3. races: many writers, and kill -9 mid-write -------------------------------------------------


def constant_golden(path: Path, size: int) -> float:
    """The golden's one output is `size` copies of one value (each writer writes its own): return it."""
    y = goldens.read_golden(path)["y"]
    assert y.shape == (size,) and np.all(y == y[0]), f"{path} mixes writers' values"
    return float(y[0])


def test_eight_workers_updating_the_same_goldens_leave_them_whole(project):
    modelzoo.identity(project.path / "models" / "identity.onnx")
    project.makepyfile(test_model="""
        import numpy as np
        import pytest

        @pytest.mark.tolerance(atol=1e6, rtol=0)  # other workers rewrite the golden between write and read
        @pytest.mark.parametrize("worker", range(16))
        def test_update(browserml, worker):
            for step in range(4):
                x = np.full(1 << 18, 100 * worker + step, np.float32)  # 1 MiB
                result = browserml.run("models/identity.onnx", {"x": x}, warmup=0, iterations=1)
                browserml.assert_golden(result, name="shared")
                browserml.assert_golden(result, name=f"shared_{step % 2}")
    """)
    result = project.runpytest_subprocess("-n", "8", "--update-goldens", "--browser-ep", "wasm")
    result.assert_outcomes(passed=16)
    folder = project.path / "goldens" / "test_model"
    assert sorted(path.name for path in folder.iterdir()) == [
        "shared.json", "shared.npz", "shared_0.json", "shared_0.npz", "shared_1.json", "shared_1.npz"]
    written = {100 * worker + step for worker in range(16) for step in range(4)}
    for name in ("shared", "shared_0", "shared_1"):
        assert constant_golden(folder / f"{name}.npz", 1 << 18) in written
        assert goldens.read_sidecar(folder / f"{name}.json")["outputs"] == {"y": {"dtype": "float32", "shape": [1 << 18]}}


BIG_TEST = """
import os
import numpy as np

def test_big(browserml):
    first = int(os.environ.get("BIG_FIRST", "0"))
    for step in range(first, first + int(os.environ.get("BIG_STEPS", "1000"))):
        x = np.full(1 << 21, step, np.float32)  # 8 MiB
        browserml.assert_golden(browserml.run("models/identity.onnx", {"x": x}, warmup=0, iterations=1), name="big")
"""


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout_s} s for {what}")
        time.sleep(0.0005)


def test_kill_9_during_an_update_leaves_the_golden_whole_and_the_orphan_is_cleaned_later(project, monkeypatch):
    modelzoo.identity(project.path / "models" / "identity.onnx")
    project.makepyfile(test_big=BIG_TEST)
    folder = project.path / "goldens" / "test_big"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--browser-ep", "wasm", "--update-goldens",
               "-q", "test_big.py"]
    writer = subprocess.Popen(command, cwd=project.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # its browser too: one group to clean up
    try:
        wait_for(lambda: (folder / "big.json").exists(), 120, "the first golden")
        wait_for(lambda: any(name.startswith(".big.npz.") for name in os.listdir(folder)), 60, "an update in progress")
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        try:
            os.killpg(writer.pid, signal.SIGKILL)  # the browser and driver the killed pytest left
        except ProcessLookupError:
            pass
    constant_golden(folder / "big.npz", 1 << 21)
    assert goldens.read_sidecar(folder / "big.json")["outputs"]["y"]["shape"] == [1 << 21]
    orphans = [path for path in folder.iterdir() if path.name.endswith(".tmp")]
    assert orphans and all(f".{writer.pid}-" in path.name for path in orphans)
    assert sorted(path.name for path in folder.iterdir() if not path.name.endswith(".tmp")) == ["big.json", "big.npz"]

    for orphan in orphans:  # older than a live writer's file can be
        os.utime(orphan, (time.time() - 120, time.time() - 120))
    monkeypatch.setenv("BIG_FIRST", "5000")  # a new value: the next run writes the golden
    monkeypatch.setenv("BIG_STEPS", "1")
    project.runpytest_subprocess("--browser-ep", "wasm", "--update-goldens").assert_outcomes(passed=1)
    assert sorted(path.name for path in folder.iterdir()) == ["big.json", "big.npz"]
    assert constant_golden(folder / "big.npz", 1 << 21) == 5000


def test_the_next_write_removes_only_temporaries_of_dead_writers(tmp_path):
    files = goldens.GoldenFiles(tmp_path / "test_x.npz")
    goldens.write_golden(files, {"y": np.zeros(3)}, {})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    old = time.time() - 120
    orphan = tmp_path / f".test_x.npz.{dead.pid}-a1b2c3.tmp"
    legacy = tmp_path / ".test_x.json.q9w8e7r6.tmp"  # named before pids were: its age alone decides
    live = tmp_path / f".test_x.npz.{os.getpid()}-d4e5f6.tmp"  # a writer still running
    young = tmp_path / f".test_x.npz.{dead.pid}-g7h8i9.tmp"  # fresh: perhaps a live writer on another host
    other = tmp_path / f".test_y.npz.{dead.pid}-j1k2l3.tmp"  # another golden's
    for path in (orphan, legacy, live, young, other):
        path.write_bytes(b"partial")
    for path in (orphan, legacy, live, other):
        os.utime(path, (old, old))
    goldens.write_golden(files, {"y": np.ones(3)}, {})
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["test_x.npz", "test_x.json", live.name, young.name, other.name])
