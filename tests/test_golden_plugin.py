"""Goldens as users meet them: pytester runs on example projects."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pytest_browserml.golden import store as goldens
from tests import modelzoo

TEST_FILE = """
import numpy as np
import pytest

X = np.arange(6, dtype=np.float32).reshape(2, 3)

def test_add(browserml):
    browserml.assert_golden(browserml.run("models/add.onnx", {"x": X}, warmup=0, iterations=1))
"""
GOLDEN = Path("goldens/test_model/test_add.npz")


@pytest.fixture
def project(pytester):
    modelzoo.add(pytester.path / "models" / "add.onnx")
    pytester.makepyfile(test_model=TEST_FILE)
    return pytester


def nudge(project, delta: float) -> None:
    """Change the stored golden by `delta` at one element, keeping its sidecar."""
    files = goldens.GoldenFiles(project.path / GOLDEN)
    y = goldens.read_golden(files.npz)["y"].copy()
    y[1, 2] += delta
    goldens.write_golden(files, {"y": y}, goldens.read_sidecar(files.sidecar))


def plant(project, *names: str) -> list[Path]:
    """Copies of test_add's golden under other names, as the store writes them for those tests."""
    folder = project.path / GOLDEN.parent
    sidecar = goldens.read_sidecar(folder / "test_add.json")
    for name in names:
        shutil.copyfile(folder / "test_add.npz", folder / f"{name}.npz")
        test = name.partition("[")[0]
        sidecar.update(test=f"test_model.py::{test}[wasm]", used_by=[f"test_model.py::{test}"])
        (folder / f"{name}.json").write_text(json.dumps(sidecar))
    return [folder / f"{name}.npz" for name in names]


def test_a_missing_golden_fails_with_its_path_and_the_flag(project):
    result = project.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*no golden for this test: goldens/test_model/test_add.npz does not exist.*",
        "*Create it with: pytest 'test_model.py::test_add[[]wasm[]]' --browser-ep wasm --update-goldens *",
    ])
    assert not (project.path / "goldens").exists()


def test_update_writes_reports_and_passes_then_mismatch_writes_obtained(project):
    result = project.runpytest_subprocess("--update-goldens")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*browserml goldens*", "written goldens/test_model/test_add.npz: y: new"])
    sidecar = goldens.read_sidecar(project.path / "goldens/test_model/test_add.json")
    assert sidecar["kind"] == "reference" and sidecar["made_by"]["reference"].startswith("onnxruntime ")
    assert sidecar["inputs"]["x"]["shape"] == [2, 3]

    project.runpytest_subprocess().assert_outcomes(passed=1)

    nudge(project, 0.5)
    result = project.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*1 of 1 outputs differ from the golden goldens/test_model/test_add.npz on wasm (made by onnxruntime *",
        "*output 'y': 1 of 6 elements (16.67%) out of tolerance; shape (2, 3), dtype float32*",
        "*tolerance: atol=0.0001, rtol=0.0001 (atol, rtol from built-in default ?wasm float32?)*",
        "*max abs error 0.5*",
        "*(1, 2)*10*10.5*-0.5*",
        "*obtained outputs written to goldens/test_model/test_add?wasm?.obtained.npz*",
    ])
    obtained = goldens.read_golden(project.path / "goldens/test_model/test_add[wasm].obtained.npz")
    assert obtained["y"][1, 2] == 10.0

    result = project.runpytest_subprocess("--update-goldens")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["written goldens/test_model/test_add.npz: y: max abs change 0.5"])
    project.runpytest_subprocess().assert_outcomes(passed=1)
    assert not (project.path / "goldens/test_model/test_add[wasm].obtained.npz").exists()


def test_update_missing_writes_only_missing_goldens(project):
    project.runpytest_subprocess("--update-goldens=missing").assert_outcomes(passed=1)
    nudge(project, 0.5)
    result = project.runpytest_subprocess("--update-goldens=missing")
    result.assert_outcomes(failed=1)  # the existing golden was kept, and still differs
    assert goldens.read_golden(project.path / GOLDEN)["y"][1, 2] == 10.5


def test_unused_goldens_are_listed_only_for_the_whole_suite_and_deleted_on_request(project):
    project.runpytest_subprocess("--update-goldens").assert_outcomes(passed=1)
    stale = goldens.GoldenFiles(plant(project, "test_renamed")[0])
    result = project.runpytest_subprocess()
    result.stdout.fnmatch_lines([
        "unused golden (no collected test maps to it): goldens/test_model/test_renamed.npz",
        "delete them with --delete-unused-goldens",
    ])
    assert "unused golden" not in project.runpytest_subprocess("-k", "add").stdout.str()
    result = project.runpytest_subprocess("--delete-unused-goldens")
    result.stdout.fnmatch_lines(["deleted unused golden goldens/test_model/test_renamed.npz"])
    assert not stale.npz.exists() and not stale.sidecar.exists()
    assert (project.path / GOLDEN).exists()


def test_tolerance_resolution_order_and_the_message_says_where_it_came_from(project):
    project.runpytest_subprocess("--update-goldens").assert_outcomes(passed=1)
    nudge(project, 5e-3)
    project.runpytest_subprocess().assert_outcomes(failed=1)  # built-in: atol 1e-4

    project.makepyprojecttoml("[tool.browserml.tolerance]\natol = 1e-2\n")
    project.runpytest_subprocess().assert_outcomes(passed=1)  # the project's default

    project.makepyfile(test_model=TEST_FILE.replace("def test_add", "@pytest.mark.tolerance(atol=1e-3, rtol=0)\ndef test_add"))
    result = project.runpytest_subprocess()  # the marker beats the project
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*tolerance: atol=0.001, rtol=0 (atol, rtol from marker on test_add)*"])

    project.makepyfile(test_model=TEST_FILE.replace(
        "def test_add", "@pytest.mark.tolerance(atol=1e-3, rtol=0, outputs={'y': {'atol': 1e-2}})\ndef test_add"))
    project.runpytest_subprocess().assert_outcomes(passed=1)  # per output beats the test's general setting


def test_a_bad_tolerance_setting_names_itself_and_where_it_is(project):
    project.makepyprojecttoml("[tool.browserml.tolerance]\natoll = 1e-2\n")
    result = project.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown tolerance setting 'atoll' in [[]tool.browserml.tolerance[]]*pyproject.toml*"])


def test_per_ep_goldens_are_one_per_ep(project):
    project.makepyfile(test_model=TEST_FILE.replace("iterations=1))", "iterations=1), per_ep=True)"))
    args = ("--browser-ep", "wasm", "--browser-ep", "webgpu")
    result = project.runpytest_subprocess(*args, "--update-goldens")
    result.assert_outcomes(passed=2)
    assert {path.name for path in (project.path / "goldens/test_model").glob("*.npz")} == {
        "test_add[wasm].npz", "test_add[webgpu].npz"}
    sidecar = goldens.read_sidecar(project.path / "goldens/test_model/test_add[webgpu].json")
    assert sidecar["kind"] == "per-EP" and sidecar["made_by"]["ep"] == "webgpu"
    assert "swiftshader" in sidecar["made_by"]["adapter"] or sidecar["made_by"]["adapter"]
    files = goldens.GoldenFiles(project.path / "goldens/test_model/test_add[webgpu].npz")
    y = goldens.read_golden(files.npz)["y"].copy()
    y[0, 0] = np.nextafter(y[0, 0], np.float32(1))  # 1 ULP: within the per-EP budget of 2
    goldens.write_golden(files, {"y": y}, goldens.read_sidecar(files.sidecar))
    project.runpytest_subprocess(*args).assert_outcomes(passed=2)
    y[0, 0] += 1e-3
    goldens.write_golden(files, {"y": y}, goldens.read_sidecar(files.sidecar))
    result = project.runpytest_subprocess(*args)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*ulp=2 (atol, rtol, ulp from built-in default for per-EP goldens)*"])


def test_under_xdist_workers_write_goldens_and_the_controller_reports_them(project):
    project.makepyfile(test_model=TEST_FILE + """

@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_scaled(browserml, scale):
    browserml.assert_golden(browserml.run("models/add.onnx", {"x": X * scale}, warmup=0, iterations=1))

def test_shared_golden(browserml):
    browserml.assert_golden(browserml.run("models/add.onnx", {"x": X}, warmup=0, iterations=1), name="shared")

def test_shared_golden_too(browserml):
    browserml.assert_golden(browserml.run("models/add.onnx", {"x": X}, warmup=0, iterations=1), name="shared")
""")
    result = project.runpytest_subprocess("-n", "2", "--update-goldens")
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines_random([f"written goldens/test_model/test_scaled?{scale}?.npz: y: new" for scale in (1, 2, 3, 4)])
    for path in (project.path / "goldens/test_model").glob("*.npz"):
        goldens.read_golden(path)  # every file complete
    assert not list((project.path / "goldens").rglob("*.tmp"))
    project.runpytest_subprocess("-n", "2").assert_outcomes(passed=7)


# --- issue 13: goldens nobody can lose or mix up ------------------------------

LIFECYCLE_TESTS = TEST_FILE + """

def test_fails_before_its_golden(browserml):
    raise RuntimeError("broken before assert_golden")

def test_skipped_before_its_golden(browserml):
    pytest.skip("not today")

@pytest.mark.browser_ep("webgpu")
def test_only_on_webgpu(browserml):
    browserml.assert_golden(browserml.run("models/add.onnx", {"x": X}, warmup=0, iterations=1), per_ep=True)
"""
KEPT = ["test_fails_before_its_golden", "test_skipped_before_its_golden", "test_only_on_webgpu",
        "test_only_on_webgpu[webgpu]"]


def test_delete_unused_goldens_keeps_every_golden_a_collected_test_maps_to(project):
    project.runpytest_subprocess("--update-goldens").assert_outcomes(passed=1)
    project.makepyfile(test_model=LIFECYCLE_TESTS)
    kept = plant(project, *KEPT)
    (stale,) = plant(project, "test_renamed")
    result = project.runpytest_subprocess("--delete-unused-goldens")
    result.assert_outcomes(passed=1, failed=1, skipped=2)
    result.stdout.fnmatch_lines(["deleted unused golden goldens/test_model/test_renamed.npz"])
    assert not stale.exists() and not stale.with_suffix(".json").exists()
    assert all(path.exists() for path in kept) and (project.path / GOLDEN).exists()

    plant(project, "test_renamed")
    for args in (["--browser-executable", "/nowhere/chromium"], ["--collect-only"], ["-x"]):
        result = project.runpytest_subprocess("--delete-unused-goldens", *args)
        result.stdout.fnmatch_lines(["--delete-unused-goldens deleted nothing: *",
                                     "would have deleted goldens/test_model/test_renamed.npz"])
        assert stale.exists() and all(path.exists() for path in kept)
    project.makepyfile(test_stop="def test_stop():\n    raise KeyboardInterrupt\n")
    result = project.runpytest_subprocess("--delete-unused-goldens")
    result.stdout.fnmatch_lines(["*deleted nothing: *the session was interrupted*"])
    assert stale.exists() and all(path.exists() for path in kept)


def test_delete_unused_goldens_deletes_only_what_the_store_wrote(project):
    project.runpytest_subprocess("--update-goldens").assert_outcomes(passed=1)
    (stale,) = plant(project, "test_renamed")
    data = project.path / "goldens" / "data"
    data.mkdir()
    np.savez(data / "calibration.npz", scale=np.ones(3))
    notes = project.path / GOLDEN.parent / "notes.npz"
    np.savez(notes, y=np.zeros(2))
    notes.with_suffix(".json").write_text('{"about": "my own notes"}')
    # the one test runs only on webgpu: with wasm alone it is collected and skipped, and starts no browser
    project.makepyfile(test_model=TEST_FILE.replace("def test_add", "@pytest.mark.browser_ep('webgpu')\ndef test_add"))
    result = project.runpytest_subprocess("--delete-unused-goldens")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines_random(["deleted unused golden goldens/test_model/test_renamed.npz",
                                        "kept goldens/data/calibration.npz: *not one this store writes",
                                        "kept goldens/test_model/notes.npz: *not one this store writes"])
    assert not stale.exists() and (data / "calibration.npz").exists() and notes.exists()
    assert notes.with_suffix(".json").exists() and (project.path / GOLDEN).exists()


def test_a_failing_obtained_write_keeps_the_mismatch_text(project):
    project.runpytest_subprocess("--update-goldens").assert_outcomes(passed=1)
    nudge(project, 0.5)
    folder = project.path / GOLDEN.parent
    for name in ("test_add.obtained.npz", "test_add[wasm].obtained.npz"):
        (folder / name).mkdir()  # os.replace onto a folder fails, even for root, like a full disk
    result = project.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*1 of 1 outputs differ from the golden goldens/test_model/test_add.npz on wasm*",
        "*max abs error 0.5*",
        "*the obtained outputs could not be written to goldens/test_model/test_add?wasm?.obtained.npz: *",
    ])


def test_obtained_files_are_per_ep_and_the_report_draws_each_eps_own(project):
    args = ("--browser-ep", "wasm", "--browser-ep", "webgpu")
    project.runpytest_subprocess(*args, "--update-goldens").assert_outcomes(passed=2)
    nudge(project, 0.5)
    result = project.runpytest_subprocess(*args, "--browserml-report", "report.json")
    result.assert_outcomes(failed=2)
    folder = project.path / GOLDEN.parent
    for ep in ("wasm", "webgpu"):
        result.stdout.fnmatch_lines([f"*obtained outputs written to goldens/test_model/test_add?{ep}?.obtained.npz*"])
        assert goldens.read_sidecar(folder / f"test_add[{ep}].obtained.json")["compared_on"]["ep"] == ep
    report = json.loads((project.path / "report.json").read_text())
    obtained = {test["ep"]: test["goldens"][0]["obtained"] for test in report["tests"]}
    assert obtained == {ep: str(folder / f"test_add[{ep}].obtained.npz") for ep in ("wasm", "webgpu")}

    # webgpu passes now: it removes its own obtained files, never wasm's
    project.makepyfile(test_model=TEST_FILE.replace("def test_add", "@pytest.mark.tolerance(webgpu={'atol': 1})\ndef test_add"))
    project.runpytest_subprocess(*args).assert_outcomes(passed=1, failed=1)
    assert (folder / "test_add[wasm].obtained.npz").exists() and not (folder / "test_add[webgpu].obtained.npz").exists()


def test_parametrize_ids_map_to_distinct_goldens_and_two_tests_on_one_file_are_refused(project):
    ids = ["a/b", "a_b", "a:b", "v", "v]", "m-n", "m--n", "wasm"]
    project.makepyfile(test_model=TEST_FILE + f"""

@pytest.mark.parametrize("scale", range(1, {len(ids) + 1}), ids={ids!r})
def test_scaled(browserml, scale):
    browserml.assert_golden(browserml.run("models/add.onnx", {{"x": X * scale}}, warmup=0, iterations=1))
""")
    project.runpytest_subprocess("--update-goldens").assert_outcomes(passed=len(ids) + 1)
    assert len(list((project.path / GOLDEN.parent).glob("test_scaled*.npz"))) == len(ids)
    project.runpytest_subprocess().assert_outcomes(passed=len(ids) + 1)

    for package in ("unit", "e2e"):
        project.mkpydir(package).joinpath("test_model.py").write_text(TEST_FILE)
    result = project.runpytest_subprocess("--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*two tests map to one golden file: goldens/test_model/test_add.npz would be the golden of "
        "e2e/test_model.py::test_add and of "
        "test_model.py::test_add and of unit/test_model.py::test_add*",
    ])


SHARED_GOLDEN_TESTS = TEST_FILE + """

def test_fp32(browserml):
    browserml.assert_golden(browserml.run("models/add.onnx", {"x": X}, warmup=0, iterations=1), name="shared")

def test_copy(browserml):
    browserml.assert_golden(browserml.run("models/add_copy.onnx", {"x": X}, warmup=0, iterations=1), name="shared")
"""


def test_a_golden_records_its_model_and_another_model_may_not_overwrite_it(project):
    modelzoo.add(project.path / "models" / "add_copy.onnx")
    project.makepyfile(test_model=SHARED_GOLDEN_TESTS)
    result = project.runpytest_subprocess("--update-goldens")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*goldens/test_model/shared.npz is the golden of models/add.onnx, not of "
                                 "models/add_copy.onnx: a different model may not overwrite it*"])
    assert goldens.read_sidecar(project.path / "goldens/test_model/shared.json")["model"] == "models/add.onnx"


def test_update_always_rewrites_the_sidecar(project):
    project.makepyfile(test_model=TEST_FILE.replace("def test_add(browserml)", "@pytest.mark.parametrize('case', "
                                                    "['stale', 'list', 'invalid', 'deleted'])\ndef test_add(browserml, case)"))
    project.runpytest_subprocess("--update-goldens").assert_outcomes(passed=4)
    folder = project.path / GOLDEN.parent
    made = goldens.read_sidecar(folder / "test_add[stale].json")
    (folder / "test_add[stale].json").write_text(json.dumps({**made, "model": "models/old.onnx", "model_sha256": "0" * 64}))
    (folder / "test_add[list].json").write_text("[]")
    (folder / "test_add[invalid].json").write_text("{not json")
    (folder / "test_add[deleted].json").unlink()
    project.runpytest_subprocess("--update-goldens").assert_outcomes(passed=4)
    for case in ("stale", "list", "invalid", "deleted"):
        sidecar = goldens.read_sidecar(folder / f"test_add[{case}].json")
        assert sidecar["model"] == "models/add.onnx" and sidecar["model_sha256"] == made["model_sha256"], case


def test_a_zip_bomb_golden_is_refused_before_it_is_inflated(project):
    project.runpytest_subprocess("--update-goldens").assert_outcomes(passed=1)
    bomb = project.path / GOLDEN
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("y.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": (1 << 28,)})
            for _ in range(1024):
                member.write(bytes(1 << 20))  # 1 GiB of zeros, about 1 MB deflated
    assert bomb.stat().st_size < 2 << 20
    result = project.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*goldens/test_model/test_add.npz: output 'y' declares 1073741952 bytes uncompressed, "
                                 "more than the run's outputs can need (48 bytes of data); refused before inflating*"])


def test_the_printed_hints_work_when_pasted(project):
    project.makepyfile(test_model=TEST_FILE.replace("def test_add(browserml)", "@pytest.mark.parametrize('s', [1], "
                                                    "ids=['big scale'])\ndef test_add(browserml, s)"))
    result = project.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    # once in the failure, and again in the short summary where CI=true keeps whole lines
    (command,) = set(re.findall(r"Create it with: (.*)  \(then review", result.stdout.str()))
    assert command.startswith("pytest ")
    project.runpytest_subprocess(*shlex.split(command)[1:]).assert_outcomes(passed=1)  # as a shell would split it
    project.runpytest_subprocess().assert_outcomes(passed=1)

    # the golden is the reference's output of this model and input: updating cannot help, a tolerance can
    files = goldens.GoldenFiles(project.path / "goldens/test_model/test_add[big scale].npz")
    y = goldens.read_golden(files.npz)["y"].copy()
    y[1, 2] += 0.5
    goldens.write_golden(files, {"y": y}, goldens.read_sidecar(files.sidecar))
    result = project.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    assert "if this change is intended" not in result.stdout.str()
    result.stdout.fnmatch_lines([
        "*the golden is native onnxruntime's output for this model and these inputs: --update-goldens would write "
        "it again and wasm would fail again. What helps:*",
        "*- a tolerance, the smallest atol that passes: @pytest.mark.tolerance(*",
        "*- its own golden: assert_golden(result, per_ep=True)*",
        "*- for a known defect of wasm: @pytest.mark.xfail(reason=...) on this test*",
    ])
    (marker,) = set(re.findall(r"the smallest atol that passes: (@pytest\.mark\.tolerance\(.*\))", result.stdout.str()))
    project.makepyfile(test_model=TEST_FILE.replace("def test_add(browserml)", f"{marker}\n@pytest.mark.parametrize("
                                                    "'s', [1], ids=['big scale'])\ndef test_add(browserml, s)"))
    project.runpytest_subprocess().assert_outcomes(passed=1)


def approve(project, *args: str):
    return project.run(sys.executable, "-m", "pytest_browserml.cli", "goldens", "approve", *args)


def test_approve_lists_obtained_files_against_their_goldens_and_moves_them_into_place(project):
    project.makepyfile(test_model=TEST_FILE.replace("iterations=1))", "iterations=1), per_ep=True)"))
    project.runpytest_subprocess("--update-goldens").assert_outcomes(passed=1)
    golden = goldens.GoldenFiles(project.path / "goldens/test_model/test_add[wasm].npz")
    y = goldens.read_golden(golden.npz)["y"].copy()
    y[1, 2] += 0.5
    made = goldens.read_sidecar(golden.sidecar)
    goldens.write_golden(golden, {"y": y}, {**made, "made_by": {**made["made_by"], "browser": "152.0"}})
    project.runpytest_subprocess().assert_outcomes(failed=1)
    artifact = project.path / "artifact" / "goldens"  # as a CI job uploads it
    shutil.copytree(project.path / "goldens", artifact)
    for leftover in (project.path / "goldens/test_model").glob("*.obtained.*"):
        leftover.unlink()

    result = approve(project, "artifact")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "goldens/test_model/test_add?wasm?.npz <- artifact/goldens/test_model/test_add?wasm?.obtained.npz",
        "  y: max abs change 0.5",
        "  made_by.browser: 152.0 -> *",
        "approve them with: browserml goldens approve artifact --golden-dir goldens --yes",
    ])
    assert goldens.read_golden(golden.npz)["y"][1, 2] == y[1, 2]  # listed, not moved

    obtained_sidecar = artifact / "test_model/test_add[wasm].obtained.json"
    good = obtained_sidecar.read_text()
    obtained_sidecar.write_text(json.dumps({**json.loads(good), "model": "models/add_fp16.onnx"}))
    result = approve(project, "artifact", "--yes")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["refused artifact/goldens/test_model/test_add?wasm?.obtained.npz: its sidecar names "
                                 "the model models/add_fp16.onnx, the golden's is models/add.onnx"])
    assert goldens.read_golden(golden.npz)["y"][1, 2] == y[1, 2]

    obtained_sidecar.write_text(good)
    outside = project.path / "outside"
    outside.mkdir()
    (project.path / "goldens/evil").symlink_to(outside)
    shutil.copytree(artifact / "test_model", artifact / "evil")
    result = approve(project, "artifact", "--yes")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["refused artifact/goldens/evil/test_add?wasm?.obtained.npz: goldens/evil leads "
                                 "outside the golden folder goldens",
                                 "  approved: goldens/test_model/test_add?wasm?.npz and test_add?wasm?.json written"])
    assert not any(outside.iterdir())
    project.runpytest_subprocess().assert_outcomes(passed=1)
    assert goldens.read_sidecar(golden.sidecar)["made_by"]["browser"] != "152.0"
