"""Localising a golden mismatch, as users meet it: models built so one chosen node diverges on an EP.

The reasons are ORT-web's own, found by running these models (onnxruntime-web 1.30, Chromium 153):
- LayerNormalization on inputs with a large common offset: ORT-web's kernels (wasm, WebGPU through JSEP
  and the native WebGPU EP, WebNN alike) lose the variance to cancellation, native onnxruntime does not.
- the same normalisation written out as ReduceMean/Sub/Pow/.../Add: JSEP WebGPU fuses it into one
  LayerNormalization kernel that diverges, while every node computed on its own agrees; exposing the
  values undoes the fusion, so the break is found by cutting the graph instead.
- WebNN (Chromium's CPU backend): Exp overflows to Inf just below float32's limit (x < 88.72) where native
  onnxruntime is finite, and Log of +Inf is finite (88.4) where native onnxruntime's is Inf.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import jsonschema
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pytest_browserml.golden.check import GoldenMismatch
from pytest_browserml.report.ledger import GOLDEN_PROPERTY
from tests.test_corpus import encoders, sentence  # noqa: F401 (fixtures: the corpus's MiniLM encoders, a sentence)
from tests.test_remote import browser_server  # noqa: F401 (a fixture: a browser server on loopback)

OFFSET = 512.0


def save(path: Path, nodes, initializers: dict, shape=(1, 64)) -> None:
    graph = helper.make_graph(
        nodes, path.stem, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))],
        initializer=[numpy_helper.from_array(np.asarray(value, np.float32), name) for name, value in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def layernorm(path: Path) -> None:
    """offset -> LayerNormalization -> scale: the break is born at 'layernorm' and flows into 'scale'."""
    save(path, [helper.make_node("Add", ["x", "offset"], ["a"], name="offset"),
                helper.make_node("LayerNormalization", ["a", "gamma", "beta"], ["n"], name="layernorm", epsilon=1e-5),
                helper.make_node("Mul", ["n", "two"], ["y"], name="scale")],
         {"offset": OFFSET, "gamma": np.ones(64), "beta": np.zeros(64), "two": 2.0})


def written_out_layernorm(path: Path) -> None:
    """The normalisation node by node, in the pattern ORT fuses into one LayerNormalization."""
    save(path, [helper.make_node("Add", ["x", "offset"], ["a"], name="offset"),
                helper.make_node("ReduceMean", ["a"], ["mu"], name="mean", axes=[-1]),
                helper.make_node("Sub", ["a", "mu"], ["d"], name="center"),
                helper.make_node("Pow", ["d", "two"], ["sq"], name="square"),
                helper.make_node("ReduceMean", ["sq"], ["var"], name="variance", axes=[-1]),
                helper.make_node("Add", ["var", "eps"], ["ve"], name="add_eps"),
                helper.make_node("Sqrt", ["ve"], ["sd"], name="stddev"),
                helper.make_node("Div", ["d", "sd"], ["n"], name="normalize"),
                helper.make_node("Mul", ["n", "gamma"], ["ng"], name="gamma"),
                helper.make_node("Add", ["ng", "beta"], ["y"], name="beta")],
         {"offset": OFFSET, "two": 2.0, "eps": 1e-5, "gamma": np.ones(64), "beta": np.zeros(64)})


def exp_log(path: Path) -> None:
    save(path, [helper.make_node("Identity", ["x"], ["x0"], name="in"),
                helper.make_node("Exp", ["x0"], ["e"], name="exp"),
                helper.make_node("Log", ["e"], ["y"], name="log")], {})


TESTS = """
import numpy as np
import pytest

# multiples of 1/128 around 512: every sum of them is exact in float32, the squares are not
X = (np.random.default_rng(0).integers(-8, 9, 64) / 128).astype(np.float32)[None]
# noise around 3000 (after the model's offset of 512): its variance is lost to cancellation in float32
NOISY = (2488 + 0.01 * np.random.default_rng(0).standard_normal(64)).astype(np.float32)[None]
# exp overflows float32 past 88.72: Inf on every side, whose Log WebNN makes finite
PAST = np.concatenate([np.linspace(-5, 80, 60), [90, 92, 94, 96]]).astype(np.float32)[None]
# just below 88.72: finite in native onnxruntime, Inf in WebNN's less exact exp
NEAR = np.linspace(88.0, 88.72, 64, dtype=np.float32)[None]

def test_layernorm(browserml):
    browserml.assert_golden(browserml.run("models/layernorm.onnx", {"x": NOISY}, warmup=0, iterations=1))

def test_written_out(browserml):
    browserml.assert_golden(browserml.run("models/written_out.onnx", {"x": X}, warmup=0, iterations=1))

def test_exp_log(browserml):
    browserml.assert_golden(browserml.run("models/exp_log.onnx", {"x": PAST}, warmup=0, iterations=1))

def test_exp_overflow(browserml):
    browserml.assert_golden(browserml.run("models/exp_log.onnx", {"x": NEAR}, warmup=0, iterations=1))

@pytest.mark.localise
def test_agrees(browserml):
    browserml.assert_golden(browserml.run("models/exp_log.onnx", {"x": X}, warmup=0, iterations=1))
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """The models, the test file and its reference goldens, made once for the module's tests."""
    folder = tmp_path_factory.mktemp("localise-project")
    layernorm(folder / "models" / "layernorm.onnx")
    written_out_layernorm(folder / "models" / "written_out.onnx")
    exp_log(folder / "models" / "exp_log.onnx")
    (folder / "test_models.py").write_text(TESTS)
    # the reference goldens come from native onnxruntime: any EP writes the same
    subprocess.run([sys.executable, "-m", "pytest", "--update-goldens", "-o", "browserml_localise=off",
                    "-p", "no:randomly", "-p", "no:cacheprovider", "-q"], cwd=folder, capture_output=True, check=False)
    assert list(folder.glob("goldens/test_models/*.npz")), "the reference goldens were not written"
    return folder


@pytest.fixture
def project(pytester, template):
    shutil.copytree(template, pytester.path, dirs_exist_ok=True)
    return pytester


def failure(result, test: str, ep: str) -> str:
    """The failure text of one test on one EP, from the run's output."""
    text = result.stdout.str()
    start = text.index(f"_ {test}[{ep}] _")
    end = min(index for index in (text.find("\n___", start + 1), text.find("\n===", start + 1)) if index > 0)
    return text[start:end]


def localisation(report: Path, test: str, ep: str) -> dict:
    document = json.loads(report.read_text())
    jsonschema.validate(document, json.loads(files("pytest_browserml.report").joinpath("report.schema.json").read_text()))
    (row,) = [row for row in document["tests"] if row["nodeid"] == f"test_models.py::{test}[{ep}]"]
    return row["goldens"][0]["localisation"]


def test_a_layernorm_losing_its_variance_is_named_on_every_ep(project):
    result = project.runpytest_subprocess("-k", "layernorm", "--browser-ep", "wasm", "--browser-ep", "webgpu",
                                           "--browser-ep", "webnn", "--browserml-report", "report.json",
                                           "--browserml-html", "report.html", "-p", "no:randomly")
    result.assert_outcomes(failed=3)
    for ep in ("wasm", "webgpu", "webnn"):
        text = failure(result, "test_layernorm", ep)
        assert (f"first divergence (2 values exposed as outputs of a copy, run on {ep} and in native onnxruntime; "
                "3 values compared):") in text
        assert "node 2 of 3, LayerNormalization 'layernorm', output 'n': wrong values: max abs error" in text
        assert "Mul 'scale'" not in text  # downstream of the break: not blamed
        found = localisation(project.path / "report.json", "test_layernorm", ep)
        assert [(d["name"], d["kind"]) for d in found["divergences"]] == [("layernorm", "wrong values")]
        assert [(n["name"], n["status"]) for n in found["nodes"]] == [
            ("offset", "within"), ("layernorm", "out"), ("scale", "out")]
        assert found["nodes"][0]["max_abs_error"] == 0
    page = (project.path / "report.html").read_text()
    assert page.count("class='divergence-plot'") == 3 and page.count("class='first-divergence'") == 3
    assert "first divergence LayerNormalization &#x27;layernorm&#x27;: wrong values" in page
    assert not list(project.path.glob("models/.*"))  # the copies are gone
    # the native WebGPU EP (the webgpu bundle) shares the kernel's flaw
    native = project.runpytest_subprocess("-k", "test_layernorm", "--browser-ep", "webgpu", "--ort-web-bundle",
                                          "webgpu", "-p", "no:randomly")
    native.assert_outcomes(failed=1)
    assert "node 2 of 3, LayerNormalization 'layernorm', output 'n': wrong values" in failure(
        native, "test_layernorm", "webgpu")


def test_a_fused_kernel_that_diverges_only_while_fused_is_found_by_cutting_the_graph(project):
    result = project.runpytest_subprocess("-k", "written_out", "--browser-ep", "wasm", "--browser-ep", "webgpu",
                                           "--browserml-report", "report.json", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)  # wasm fuses it too, into a kernel that agrees
    text = failure(result, "test_written_out", "webgpu")
    assert "first divergence (bisected by graph prefix in " in text
    assert "node 10 of 10, Add 'beta', output 'y': wrong values" in text
    assert ("note: with its values exposed the copy does not diverge: ORT ran the test's model as 2 nodes for the "
            "graph's 10, so a fused kernel") in text
    found = localisation(project.path / "report.json", "test_written_out", "webgpu")
    assert [d["name"] for d in found["divergences"]] == ["beta"]
    assert found["method"].startswith("bisected by graph prefix in ")


def test_webnn_overflowing_exp_and_finite_log_of_inf_are_named_and_the_marker_localises_a_pass(project):
    result = project.runpytest_subprocess("-k", "exp or agrees", "--browser-ep", "webnn",
                                           "--browserml-report", "report.json", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=2)
    text = failure(result, "test_exp_overflow", "webnn")
    assert "node 2 of 3, Exp 'exp', output 'e': overflow: " in text
    assert "Inf on the EP past float32's range (largest 3.40282e+38), where onnxruntime has values up to 3." in text
    assert "Log 'log'" not in text  # downstream of the overflow
    assert ("note: ORT fused the test's model: it ran as 1 node(s) on WebNNExecutionProvider for the graph's 3; "
            "the copy with its values exposed ran the same") in text  # WebNN builds one graph of them
    text = failure(result, "test_exp_log", "webnn")
    assert "node 3 of 3, Log 'log', output 'y': NaN/Inf: 4 Inf on onnxruntime where the EP is finite (up to 88.4)" \
        in text
    assert "Exp 'exp'" not in text  # both overflow to Inf there
    passed = localisation(project.path / "report.json", "test_agrees", "webnn")
    assert passed["divergences"] == [] and {n["status"] for n in passed["nodes"]} == {"within"}

    quiet = project.runpytest_subprocess("-k", "exp_log", "--browser-ep", "webnn", "--browserml-localise=off")
    quiet.assert_outcomes(failed=1)
    assert "first divergence" not in quiet.stdout.str()


def test_a_remote_browser_localises_like_a_local_one(project, browser_server):
    _, endpoint = browser_server
    result = project.runpytest_subprocess("-k", "layernorm", "--browser-ep", "wasm",
                                           "--browser-ws-endpoint", endpoint, "-p", "no:randomly")
    result.assert_outcomes(failed=1)
    assert "node 2 of 3, LayerNormalization 'layernorm', output 'n': wrong values" in failure(
        result, "test_layernorm", "wasm")


def test_a_copy_too_large_to_expose_is_cut_instead_and_names_the_same_node(project):
    # the limit lowered to nothing, as if the values filled gigabytes: the graph is bisected by prefix
    project.makeconftest("import pytest_browserml.golden.localise\npytest_browserml.golden.localise.EXPOSED_LIMIT = 0\n")
    result = project.runpytest_subprocess("-k", "test_layernorm", "--browser-ep", "wasm", "-p", "no:randomly")
    result.assert_outcomes(failed=1)
    text = failure(result, "test_layernorm", "wasm")
    assert "first divergence (bisected by graph prefix in 2 sessions on wasm and in native onnxruntime;" in text
    assert "node 2 of 3, LayerNormalization 'layernorm', output 'n': wrong values" in text
    assert ("note: exposing 2 values would bring 512 B out of the page, held twice here (the EP's and "
            "onnxruntime's); past 0 B the graph is cut instead") in text


@pytest.mark.browser_ep("webgpu:jsep")
def test_the_corpus_int8_encoder_on_webgpu_is_localised_to_a_cast_after_a_cpu_matmulinteger(browserml, encoders,
                                                                                              sentence):
    """The corpus's ORT-web defect (test_corpus.py's xfail): JSEP's outputs are unrelated to native onnxruntime's."""
    result = browserml.run(encoders["int8"], sentence, warmup=0, iterations=1)
    with pytest.raises(GoldenMismatch) as failure:
        browserml.assert_golden(result, reference=encoders["int8"])
    text = str(failure.value)
    assert "first divergence (406 values exposed as outputs of a copy, run on webgpu" in text
    assert "  node 29 of 360, Cast 'l0.key.matmul_output_quantized_cast', output " in text
    assert "wrong values: max abs error 7.09e+04" in text


@pytest.mark.browser_ep("wasm")
@pytest.mark.localise
def test_a_value_ort_web_cannot_hand_back_is_left_out_and_named(browserml, request, encoders, sentence):
    """onnxruntime-web 1.30 refuses to return the corpus encoder's Range output 'positions' as an output
    ("Reading data from non-tensor typed value is not supported"): the copy runs again without it."""
    browserml.assert_golden(browserml.run(encoders["fp32"], sentence, warmup=0, iterations=1),
                            reference=encoders["fp32"])
    (record,) = [value for key, value in request.node.user_properties if key == GOLDEN_PROPERTY]
    found = record["localisation"]
    assert found["divergences"] == [] and found["compared"] == 227
    assert "1 value(s) onnxruntime-web could not hand back as outputs, not compared: positions" in found["notes"]
