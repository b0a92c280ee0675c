"""ONNX test-data folders as tests: collection, goldens, ORT's errors, and ONNX's own node suite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.generate_node_tests import main as generate_node_tests

X = np.array([[-1.5, 0.0, 2.0], [3.25, -4.0, 5.5]], dtype=np.float32)


def write_case(folder: Path, op_type: str = "Abs", inputs=(X,), outputs=(np.abs(X),), domain: str = "") -> Path:
    """ONNX's layout: model.onnx and test_data_set_0/ with input_K.pb and output_K.pb."""
    names = [f"x{k}" for k in range(len(inputs))]
    graph = helper.make_graph(
        [helper.make_node(op_type, names, ["y"], domain=domain)], "case",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(X.shape)) for name in names],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(X.shape))],
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    data_set = folder / "test_data_set_0"
    data_set.mkdir(parents=True)
    onnx.save(model, str(folder / "model.onnx"))
    for kind, arrays in (("input", inputs), ("output", outputs)):
        for k, array in enumerate(arrays):
            (data_set / f"{kind}_{k}.pb").write_bytes(numpy_helper.from_array(array).SerializeToString())
    return folder


def test_each_data_set_runs_on_each_ep_and_passes_against_its_goldens(pytester):
    write_case(pytester.path / "cases" / "abs")
    add = write_case(pytester.path / "cases" / "add", "Add", inputs=(X, X), outputs=(X + X,))
    (add / "test_data_set_1").mkdir()
    for name in ("input_0.pb", "input_1.pb", "output_0.pb"):
        (add / "test_data_set_1" / name).write_bytes((add / "test_data_set_0" / name).read_bytes())
    result = pytester.runpytest_subprocess("cases", "--browser-ep", "wasm", "--browser-ep", "webgpu",
                                           "--browser-ep", "webnn", "-v")
    result.assert_outcomes(passed=9)
    result.stdout.fnmatch_lines_random([
        "cases/abs::test_data_set_0?wasm? PASSED*",
        "cases/abs::test_data_set_0?webgpu? PASSED*",
        "cases/abs::test_data_set_0?webnn? PASSED*",
        "cases/add::test_data_set_1?webnn? PASSED*",
    ])


def test_an_output_off_its_golden_fails_naming_the_output_and_the_golden_file(pytester):
    wrong = np.abs(X)
    wrong[1, 2] += 1.0
    write_case(pytester.path / "abs", outputs=(wrong,))
    result = pytester.runpytest_subprocess("abs")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*_ abs/test_data_set_0?wasm? _*",
        "1 of 1 outputs differ from the goldens of abs/test_data_set_0 on wasm",
        "output 'y': 1 of 6 elements (16.67%) out of tolerance; shape (2, 3), dtype float32",
        "*worst elements:*",
        "  golden: abs/test_data_set_0/output_0.pb",
    ])
    result.stdout.no_fnmatch_line("*onnx_suite.py*")


def test_a_model_ort_cannot_run_fails_with_orts_message(pytester):
    write_case(pytester.path / "bogus", op_type="NoSuchOp", domain="com.example.bogus")
    result = pytester.runpytest_subprocess("bogus")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*bogus/model.onnx on wasm: onnxruntime-web failed:*com.example.bogus*"])
    result.stdout.no_fnmatch_line("*Traceback*")


def test_an_unreadable_pb_file_fails_naming_the_file(pytester):
    case = write_case(pytester.path / "abs")
    (case / "test_data_set_0" / "input_0.pb").write_bytes(b"not a tensor")
    result = pytester.runpytest_subprocess("abs")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["cannot read the tensor in abs/test_data_set_0/input_0.pb: DecodeError*"])


def test_onnx_node_tests_each_pass_fail_or_skip(pytester, capsys):
    patterns = ["test_abs*", "test_add*", "test_sub*", "test_relu*", "test_neg*", "test_sqrt*", "test_identity*",
                "test_mul*", "test_bitshift_left_uint8"]  # identity_sequence: a skip; bitshift: IR 14, a failure
    generate_node_tests([str(pytester.path), *(arg for pattern in patterns for arg in ("--pattern", pattern))])
    cases = len(list((pytester.path / "node").iterdir()))
    assert 35 <= cases <= 45, capsys.readouterr().out
    result = pytester.runpytest_subprocess("node")
    outcomes = result.parseoutcomes()
    assert set(outcomes) <= {"passed", "failed", "skipped"}, outcomes
    assert sum(outcomes.values()) == cases
    assert outcomes.get("skipped", 0) >= 2  # identity_sequence and identity_opt
    assert outcomes.get("failed", 0) >= 1  # bitshift_left_uint8
    result.stdout.fnmatch_lines(["*Unsupported model IR version: 14*"])


OTHER_PLUGIN = """
import pytest

calls = []

@pytest.hookimpl({options})
def pytest_ignore_collect(collection_path):
    if collection_path.parent.name == "cases" and collection_path.is_dir():
        calls.append(collection_path.name)
    {body}

def pytest_unconfigure(config):
    with open("calls.txt", "w") as handle:
        handle.write(" ".join(sorted(calls)))
"""


@pytest.mark.parametrize(("options", "body"), [
    ("trylast=True", "return False"),  # after pytest's own rules: never asked of a folder they ignore
    ("wrapper=True", "result = yield\n    return False if result is None else result"),
    ("tryfirst=True", "return None"),  # asked once per folder, not again by the plugin
], ids=["trylast", "wrapper", "tryfirst"])
def test_other_plugins_ignore_hooks_run_where_and_as_often_as_in_pytest_alone(pytester, options, body):
    for name in ("test_abs", "build", ".hidden"):
        write_case(pytester.path / "cases" / name)
    pytester.makepyfile(other_plugin=OTHER_PLUGIN.format(options=options, body=body))
    pytester.makeconftest("import other_plugin\n\ndef pytest_configure(config):\n"
                          "    config.pluginmanager.register(other_plugin)\n")  # registered after this plugin

    def collected() -> tuple[list[str], str]:
        result = pytester.runpytest_subprocess("cases", "--co", "-q")
        return sorted(line for line in result.outlines if "::" in line), (pytester.path / "calls.txt").read_text()

    ours = collected()
    (pytester.path / "cases" / "conftest.py").write_text("def pytest_ignore_collect(collection_path):\n"
                                                         "    return None\n")  # pytest decides everything
    assert ours == collected() and ours[0] == ["cases/test_abs::test_data_set_0[wasm]"]


def test_an_unreadable_folder_that_pytest_ignores_is_not_looked_into(pytester):
    """A database volume of another user (mode 700) among the cases: pytest's norecursedirs skip it unread."""
    write_case(pytester.path / "cases" / "test_abs")
    locked = pytester.path / "cases" / ".pgdata"
    locked.mkdir()
    original = Path.is_file

    def is_file(path: Path) -> bool:
        if locked in path.parents:
            raise PermissionError(13, "Permission denied", str(path))
        return original(path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "is_file", is_file)
        result = pytester.runpytest("cases", "--co", "-q")
    assert result.ret == 0, result.outlines
    result.stdout.fnmatch_lines(["cases/test_abs::test_data_set_0?wasm?"])


@pytest.mark.parametrize(("rules", "conftest"), [
    ([], ""), (["--ignore=cases/test_neg"], ""), (["--ignore-glob=*/test_n*"], ""),
    (["-o", "norecursedirs=test_a* build"], ""), (["-o", "norecursedirs=cases/test_neg"], ""),
    (["--collect-in-virtualenv"], ""), ([], "collect_ignore = ['test_sign']\n"),
], ids=["defaults", "ignore", "ignore-glob", "norecursedirs", "norecursedirs-path", "in-virtualenv", "collect_ignore"])
def test_case_folders_are_ignored_as_pytest_itself_would_ignore_them(pytester, rules, conftest):
    """The plugin decides for case folders without pytest's per-pattern path matching; a conftest with a
    hook of its own leaves every decision to pytest, so the collected tests must be the same."""
    for name in ("test_abs", "test_neg", "test_sign", "build", ".hidden", "venv_case", "__pycache__"):
        write_case(pytester.path / "cases" / name)
    (pytester.path / "cases" / "venv_case" / "pyvenv.cfg").write_text("home = /usr\n")
    (pytester.path / "cases" / "conftest.py").write_text(conftest)

    def collected(*more: str) -> list[str]:
        result = pytester.runpytest("cases", "--co", "-q", "-p", "no:randomly", *rules, *more)
        return sorted(line for line in result.outlines if "::" in line)

    ours = collected()
    (pytester.path / "cases" / "conftest.py").write_text(conftest + "def pytest_ignore_collect(collection_path):\n"
                                                         "    return None\n")
    assert ours == collected("-p", "no:cacheprovider") and ours
