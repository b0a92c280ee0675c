"""Tests for pytest_browserml.golden.store: file layout, safe reading, atomic writing, change reports."""

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pytest_browserml.golden import store as goldens
from pytest_browserml.golden.names import GoldenIndex, GoldenKey
from pytest_browserml.golden.store import (
    GoldenError,
    GoldenFiles,
    OutputChange,
    changes,
    find_goldens,
    read_golden,
    read_sidecar,
    remove,
    write_golden,
    write_sidecar,
)


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


@pytest.fixture
def files(tmp_path):
    return GoldenKey("test_models", "test_seg").golden(tmp_path / "goldens")


# --- names -----------------------------------------------------------------


def test_shared_golden_and_its_neighbours(tmp_path):
    key = GoldenKey("test_models", "test_seg")
    files = key.golden(tmp_path)
    assert files.npz == tmp_path / "test_models" / "test_seg.npz"
    assert files.sidecar == tmp_path / "test_models" / "test_seg.json"
    obtained = key.obtained(tmp_path, "wasm")
    assert obtained.npz == tmp_path / "test_models" / "test_seg[wasm].obtained.npz"
    assert obtained.sidecar == tmp_path / "test_models" / "test_seg[wasm].obtained.json"


def test_per_ep_golden_is_named_after_the_ep(tmp_path):
    key = GoldenKey("test_models", "test_seg")
    assert key.golden(tmp_path, ep="webgpu").npz.name == "test_seg[webgpu].npz"
    assert key.golden(tmp_path, ep="webgpu").sidecar.name == "test_seg[webgpu].json"
    assert key.obtained(tmp_path, "webgpu").npz.name == "test_seg[webgpu].obtained.npz"
    assert key.golden(tmp_path, ep="webnn:gpu").npz.name == "test_seg[webnn_gpu].npz"


def test_parametrized_names_keep_brackets_and_dots(tmp_path):
    files = GoldenKey("test_models", "test_seg[1.5-x]").golden(tmp_path, ep="wasm")
    assert files.npz.name == "test_seg[1.5-x][wasm].npz"
    assert files.sidecar.name == "test_seg[1.5-x][wasm].json"


@pytest.mark.parametrize(
    ("test_name", "expected"),
    [
        ("test_x[a/b]", "test_x[a%2Fb].npz"),
        ("test_x[a\\b]", "test_x[a%5Cb].npz"),
        ("test_x[a:b]", "test_x[a%3Ab].npz"),
        ("test_x[a_b]", "test_x[a_b].npz"),
        ("test_x[100%]", "test_x[100%25].npz"),
        ("test_x[../../etc]", "test_x[..%2F..%2Fetc].npz"),
        ("test_x[tab\there\nnul\x00del\x7f]", "test_x[tab%09here%0Anul%00del%7F].npz"),
    ],
)
def test_unsafe_characters_are_escaped(tmp_path, test_name, expected):
    files = GoldenKey("test_models", test_name).golden(tmp_path)
    assert files.npz.name == expected
    assert files.npz.parent == tmp_path / "test_models"


def test_module_stem_cannot_leave_the_golden_dir(tmp_path):
    with pytest.raises(ValueError, match="outside"):
        GoldenKey("..", "test_x")


def test_golden_path_must_be_an_npz():
    with pytest.raises(ValueError, match=r"\.npz"):
        GoldenFiles(Path("test_x.json"))


@pytest.mark.parametrize(
    ("nodeid", "test", "test_id"),
    [
        ("t/test_m.py::test_x[wasm]", "test_x", "t/test_m.py::test_x"),
        ("t/test_m.py::test_x[webnn:gpu-a/b]", "test_x[a/b]", "t/test_m.py::test_x[a/b]"),
        ("t/test_m.py::test_x[wasm-wasm]", "test_x[wasm]", "t/test_m.py::test_x[wasm]"),  # only the fixture's id goes
        ("t/test_m.py::test_x[wasm-m--n]", "test_x[m--n]", "t/test_m.py::test_x[m--n]"),
        ("t/test_m.py::test_x[wasm-v]]", "test_x[v]]", "t/test_m.py::test_x[v]]"),
        ("t/test_m.py::TestA::test_x[NOTSET-1]", "test_x[1]", "t/test_m.py::TestA::test_x[1]"),
        ("t/test_m.py::test_x[wasm-a::b[c]", "test_x[a::b[c]", "t/test_m.py::test_x[a::b[c]"),
    ],
)
def test_a_node_id_maps_to_its_name_without_the_fixtures_ep(nodeid, test, test_id):
    assert GoldenKey.of_node(nodeid) == (GoldenKey("test_m", test), test_id)


def test_distinct_ids_get_distinct_files(tmp_path):
    ids = ["a/b", "a_b", "a:b", "v", "v]", "m-n", "m--n", "x-wasm", "x", "A", "%2F", "/"]
    names = {GoldenKey.of_node(f"test_m.py::test_x[wasm-{id_}]")[0].golden(tmp_path).npz.name for id_ in ids}
    assert len(names) == len(ids)


def test_the_index_answers_which_tests_map_to_a_golden(tmp_path):
    index = GoldenIndex.of(tmp_path, ["a/test_m.py::test_x[wasm-1]", "a/test_m.py::test_x[webgpu-1]",
                                      "a/test_m.py::test_y[NOTSET]"])
    assert index.owners(tmp_path / "test_m" / "test_x[1].npz") == {"a/test_m.py::test_x[1]"}
    assert index.owners(tmp_path / "test_m" / "test_x[1][webnn_npu].npz") == {"a/test_m.py::test_x[1]"}  # any EP
    assert index.owners(tmp_path / "test_m" / "test_y[webgpu].npz") == {"a/test_m.py::test_y"}
    assert index.owners(tmp_path / "test_m" / "test_z.npz") == set()
    assert index.owners(tmp_path / "data" / "calibration.npz") == set()
    assert index.collisions() == {}


def test_the_index_names_tests_that_would_share_a_file(tmp_path):
    index = GoldenIndex.of(tmp_path, ["a/test_m.py::test_x[wasm]", "b/test_m.py::test_x[wasm]",
                                      "a/test_n.py::test_y[wasm-Q]", "b/test_n.py::test_y[wasm-q]"])
    assert list(index.collisions()) == [
        f"{tmp_path.name}/test_m/test_x.npz would be the golden of a/test_m.py::test_x and of b/test_m.py::test_x",
        f"{tmp_path.name}/test_n/test_y[Q].npz would be the golden of a/test_n.py::test_y[Q] and of "
        "b/test_n.py::test_y[q]",
    ]


# --- round trip ------------------------------------------------------------


ALL_DTYPES = [
    np.bool_,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
]


def test_round_trip_of_every_dtype_and_odd_shapes(files):
    values = np.random.default_rng(0).uniform(0, 100, size=(2, 3))
    arrays = {f"out_{np.dtype(t).name}": values.astype(t) for t in ALL_DTYPES}
    arrays["out_bool"] = values > 50
    arrays["scalar"] = np.array(3.5, dtype=np.float32)
    arrays["empty"] = np.zeros((0, 4), dtype=np.float16)
    arrays["fortran"] = np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3))
    arrays["special"] = np.array([np.nan, np.inf, -np.inf, -0.0, 65504], dtype=np.float16)
    arrays["int64_extremes"] = np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max], dtype=np.int64)
    write_golden(files, arrays, {"ep": "wasm"})
    loaded = read_golden(files.npz)
    assert list(loaded) == list(arrays)
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype, name
        assert loaded[name].shape == array.shape, name
        np.testing.assert_array_equal(loaded[name], array)
    assert loaded["scalar"].ndim == 0
    assert np.signbit(loaded["special"][3])


def test_output_names_that_numpy_savez_cannot_take(files):
    arrays = {
        "file": np.ones(2, np.float32),
        "allow_pickle": np.zeros(2, np.float32),
        "/model/Conv_output_0": np.arange(3, dtype=np.int32),
        "logits:0": np.array([1.0]),
    }
    write_golden(files, arrays, {})
    loaded = read_golden(files.npz)
    assert sorted(loaded) == sorted(arrays)
    np.testing.assert_array_equal(loaded["/model/Conv_output_0"], arrays["/model/Conv_output_0"])


def test_loaded_arrays_are_independent_of_the_file(files):
    write_golden(files, {"y": np.arange(4.0)}, {})
    loaded = read_golden(files.npz)
    files.npz.unlink()
    loaded["y"][0] = 42.0
    assert loaded["y"].tolist() == [42.0, 1.0, 2.0, 3.0]


def test_golden_written_by_numpy_savez_is_readable(tmp_path):
    path = tmp_path / "legacy.npz"
    np.savez(path, y=np.arange(3, dtype=np.float32))
    assert read_golden(path)["y"].tolist() == [0.0, 1.0, 2.0]


def test_metadata_sidecar_round_trip_is_pretty_and_sorted(files):
    metadata = {"ep": "webgpu", "opset": 17, "inputs": {"x": [1, 3, 224, 224]}, "adapter": None}
    write_golden(files, {"y": np.zeros(1)}, metadata)
    assert read_sidecar(files.sidecar) == metadata
    text = files.sidecar.read_text()
    assert text == json.dumps(metadata, indent=2, sort_keys=True) + "\n"
    assert text.index('"adapter"') < text.index('"ep"') < text.index('"inputs"')


def test_missing_sidecar_is_none(tmp_path):
    assert read_sidecar(tmp_path / "nothing.json") is None


def test_invalid_sidecar_names_the_file(tmp_path):
    path = tmp_path / "test_x.json"
    path.write_text("{not json")
    with pytest.raises(GoldenError, match="test_x.json is not valid JSON"):
        read_sidecar(path)
    path.write_text("[1, 2]")
    with pytest.raises(GoldenError, match="test_x.json must hold a JSON object"):
        read_sidecar(path)


def test_rewriting_replaces_both_files(files):
    write_golden(files, {"y": np.zeros(2)}, {"version": 1})
    write_golden(files, {"z": np.ones(3)}, {"version": 2})
    assert list(read_golden(files.npz)) == ["z"]
    assert read_sidecar(files.sidecar) == {"version": 2}


def test_written_files_get_ordinary_permissions(files):
    write_golden(files, {"y": np.zeros(2)}, {})
    umask = os.umask(0)
    os.umask(umask)
    assert files.npz.stat().st_mode & 0o777 == 0o666 & ~umask


# --- atomic writing --------------------------------------------------------


def test_failed_replace_leaves_old_golden_and_no_temp_files(files, monkeypatch):
    write_golden(files, {"y": np.zeros(3)}, {"version": 1})
    before = files_in(files.npz.parent)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(goldens.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_golden(files, {"y": np.ones(3)}, {"version": 2})
    monkeypatch.undo()
    assert files_in(files.npz.parent) == before
    assert read_golden(files.npz)["y"].tolist() == [0.0, 0.0, 0.0]
    assert read_sidecar(files.sidecar) == {"version": 1}


def test_failure_midway_through_the_npz_leaves_old_golden(files, monkeypatch):
    write_golden(files, {"a": np.zeros(3), "b": np.zeros(3)}, {"version": 1})
    before = files_in(files.npz.parent)
    real_write_npy = goldens._write_npy
    calls = []

    def fail_on_second(member, array):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        real_write_npy(member, array)

    monkeypatch.setattr(goldens, "_write_npy", fail_on_second)
    with pytest.raises(RuntimeError, match="interrupted"):
        write_golden(files, {"a": np.ones(3), "b": np.ones(3)}, {"version": 2})
    monkeypatch.undo()
    assert files_in(files.npz.parent) == before
    assert read_golden(files.npz)["a"].tolist() == [0.0, 0.0, 0.0]


def test_object_arrays_are_refused_before_anything_is_written(files):
    write_golden(files, {"y": np.zeros(3)}, {"version": 1})
    before = files_in(files.npz.parent)
    with pytest.raises(GoldenError, match=r"test_seg\.npz: output 'labels' has dtype object"):
        write_golden(files, {"y": np.ones(3), "labels": np.array(["a", None], dtype=object)}, {"version": 2})
    assert files_in(files.npz.parent) == before
    assert read_sidecar(files.sidecar) == {"version": 1}


@pytest.mark.parametrize("value", [np.array(["cat", "dog"]), np.array([b"x"]), np.zeros(2, dtype="i4,f4")])
def test_string_and_structured_arrays_are_refused(files, value):
    with pytest.raises(GoldenError, match="output 'names'"):
        write_golden(files, {"names": value}, {})
    assert not files.npz.parent.exists() or not any(files.npz.parent.iterdir())


def test_unserialisable_metadata_is_refused_before_the_npz_is_written(files):
    with pytest.raises(GoldenError, match=r"test_seg\.json: metadata cannot be written as JSON"):
        write_golden(files, {"y": np.zeros(1)}, {"when": object()})
    assert not files.npz.exists()


def test_parent_folders_are_created(tmp_path):
    files = GoldenKey("test_m", "test_x").golden(tmp_path / "a" / "b", ep="wasm")
    write_golden(files, {"y": np.zeros(1)}, {})
    assert files.npz.is_file() and files.sidecar.is_file()


# --- refusing bad files ----------------------------------------------------


def test_missing_golden(tmp_path):
    with pytest.raises(GoldenError, match=r"test_x\.npz does not exist"):
        read_golden(tmp_path / "test_x.npz")


def test_truncated_golden(files):
    write_golden(files, {"y": np.arange(1000.0)}, {})
    data = files.npz.read_bytes()
    files.npz.write_bytes(data[: len(data) // 2])
    with pytest.raises(GoldenError, match=r"test_seg\.npz is truncated or corrupt"):
        read_golden(files.npz)


def test_corrupt_array_data_is_caught_by_the_zip_checksum(files):
    write_golden(files, {"y": np.zeros(1000)}, {})
    data = bytearray(files.npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    files.npz.write_bytes(bytes(data))
    with pytest.raises(GoldenError, match=r"test_seg\.npz is truncated or corrupt \(output 'y'\)"):
        read_golden(files.npz)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"hello, I am a text file", "no zip header"),
        (b"\x93NUMPY\x01\x00", "a single .npy array"),
    ],
)
def test_non_npz_file(tmp_path, content, reason):
    path = tmp_path / "test_x.npz"
    path.write_bytes(content)
    with pytest.raises(GoldenError, match=rf"test_x\.npz is not an \.npz file \({reason}\)"):
        read_golden(path)


def test_empty_file(tmp_path):
    path = tmp_path / "test_x.npz"
    path.write_bytes(b"")
    with pytest.raises(GoldenError, match=r"test_x\.npz is empty"):
        read_golden(path)


def test_pickled_objects_are_refused_without_unpickling(tmp_path, monkeypatch):
    path = tmp_path / "test_x.npz"
    np.savez(path, good=np.zeros(2), evil=np.array([{"a": 1}, None], dtype=object))

    def no_unpickling(*args, **kwargs):
        raise AssertionError("unpickled")

    monkeypatch.setattr("pickle.load", no_unpickling)
    monkeypatch.setattr("pickle.loads", no_unpickling)
    refused = r"test_x\.npz: output 'evil' holds pickled objects; refused without unpickling"
    with pytest.raises(GoldenError, match=refused):
        read_golden(path)


def test_zip_entry_that_is_not_an_array(tmp_path):
    path = tmp_path / "test_x.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hi")
    with pytest.raises(GoldenError, match=r"test_x\.npz is not a golden: entry 'notes.txt'"):
        read_golden(path)


def test_directory_instead_of_golden(tmp_path):
    (tmp_path / "test_x.npz").mkdir()
    with pytest.raises(GoldenError, match=r"test_x\.npz cannot be read"):
        read_golden(tmp_path / "test_x.npz")


# --- obtained files --------------------------------------------------------


def test_obtained_files_sit_next_to_the_golden_and_are_removed(tmp_path):
    key = GoldenKey("test_models", "test_seg")
    files, obtained = key.golden(tmp_path), key.obtained(tmp_path, "wasm")
    write_golden(files, {"y": np.zeros(2)}, {"kind": "golden"})
    write_golden(obtained, {"y": np.ones(2)}, {"kind": "obtained"})
    assert read_golden(obtained.npz)["y"].tolist() == [1.0, 1.0]
    assert read_sidecar(obtained.sidecar) == {"kind": "obtained"}
    assert read_golden(files.npz)["y"].tolist() == [0.0, 0.0]
    remove(obtained)
    assert files_in(files.npz.parent) == ["test_seg.json", "test_seg.npz"]
    remove(obtained)  # nothing left to remove is fine


def test_the_sidecar_alone_can_be_rewritten(files):
    write_golden(files, {"y": np.zeros(2)}, {"version": 1})
    write_sidecar(files, {"version": 2})
    assert read_sidecar(files.sidecar) == {"version": 2} and read_golden(files.npz)["y"].tolist() == [0.0, 0.0]


def test_only_sidecars_this_store_writes_count_as_its_own():
    ours = {"format": 1, "kind": "reference", "outputs": {}, "test": "t.py::t[wasm]"}
    assert goldens.is_store_sidecar(ours)
    for other in (None, [], {}, {**ours, "format": 2}, {**ours, "kind": "data"}, {**ours, "outputs": []},
                  {key: value for key, value in ours.items() if key != "test"}):
        assert not goldens.is_store_sidecar(other)


# --- change reports --------------------------------------------------------


def test_changes_kinds_and_descriptions():
    old = {
        "same": np.array([1.0, np.nan, np.inf], np.float32),
        "moved": np.array([1.0, 2.0], np.float32),
        "reshaped": np.zeros((2, 3), np.float32),
        "recast": np.array([1.0, 2.0], np.float32),
        "gone": np.zeros(1),
    }
    new = {
        "same": np.array([1.0, np.nan, np.inf], np.float32),
        "moved": np.array([1.0, 2.0123], np.float32),
        "reshaped": np.zeros((3, 2), np.float32),
        "recast": np.array([1.0, 2.0], np.float16),
        "boxes": np.zeros(4),
    }
    result = {change.name: change for change in changes(old, new)}
    assert [change.name for change in changes(old, new)] == ["same", "moved", "reshaped", "recast", "boxes", "gone"]
    assert result["same"] == OutputChange("same", "unchanged", 0.0)
    assert result["moved"].kind == "changed"
    assert result["moved"].max_abs_change == pytest.approx(0.0123, rel=1e-4)
    assert result["moved"].describe() == "moved: max abs change 0.0123"
    assert result["reshaped"].kind == "shape changed"
    assert result["reshaped"].describe() == "reshaped: shape (2, 3) -> (3, 2)"
    assert result["recast"].kind == "dtype changed"
    assert result["recast"].describe() == "recast: dtype float32 -> float16, max abs change 0"
    assert result["boxes"].describe() == "boxes: new"
    assert result["gone"].describe() == "gone: removed"
    assert result["same"].describe() == "same: unchanged"


def test_changes_without_an_old_golden_are_all_new():
    assert changes(None, {"y": np.zeros(1)}) == [OutputChange("y", "new", None)]


def test_changes_nan_against_a_number_is_an_infinite_change():
    (change,) = changes({"y": np.array([np.nan, 1.0])}, {"y": np.array([0.0, 1.0])})
    assert change.kind == "changed" and change.max_abs_change == np.inf


def test_changes_of_ints_bools_and_empty_tensors():
    old = {
        "labels": np.array([3, 7], np.int64),
        "big": np.array([2**62], np.int64),
        "mask": np.array([True, False]),
        "none": np.zeros((0, 3), np.float32),
        "shape_and_dtype": np.zeros(2, np.int32),
    }
    new = {
        "labels": np.array([3, 9], np.int64),
        "big": np.array([2**62 + 1], np.int64),  # equal in float64, yet changed
        "mask": np.array([True, True]),
        "none": np.zeros((0, 3), np.float32),
        "shape_and_dtype": np.zeros(3, np.int64),
    }
    result = {change.name: change for change in changes(old, new)}
    assert result["labels"].max_abs_change == 2.0
    assert result["big"].kind == "changed"
    assert result["mask"].max_abs_change == 1.0
    assert result["none"].kind == "unchanged"
    assert result["shape_and_dtype"].describe() == "shape_and_dtype: shape (2,) -> (3,), dtype int32 -> int64"


# --- finding goldens -------------------------------------------------------


def test_find_goldens_excludes_obtained_and_other_files(tmp_path):
    shared = GoldenKey("test_b", "test_x").golden(tmp_path)
    per_ep = GoldenKey("test_a", "test_y").golden(tmp_path, ep="webnn:gpu")
    for files in (shared, per_ep):
        write_golden(files, {"y": np.zeros(1)}, {})
    write_golden(GoldenKey("test_b", "test_x").obtained(tmp_path, "wasm"), {"y": np.ones(1)}, {})
    (tmp_path / "test_a" / "notes.txt").write_text("not a golden")
    assert find_goldens(tmp_path) == [per_ep.npz, shared.npz]


def test_find_goldens_in_a_missing_folder(tmp_path):
    assert find_goldens(tmp_path / "none") == []


def test_blockwise_writing_and_changes_match_whole_arrays(files, monkeypatch):
    from pytest_browserml.golden import compare

    monkeypatch.setattr(compare, "_BLOCK_ELEMENTS", 5)
    values = np.random.default_rng(0).standard_normal((7, 9)).astype(np.float32)
    arrays = {"c": values, "strided": values[::2, ::3], "fortran": np.asfortranarray(values), "bool": values > 0}
    write_golden(files, arrays, {})
    for name, array in read_golden(files.npz).items():
        np.testing.assert_array_equal(array, arrays[name])
        assert array.dtype == arrays[name].dtype
    moved = values.copy()
    moved[6, 8] += 0.5
    moved[0, 0] = np.nan
    (change,) = changes({"y": values}, {"y": moved})
    assert change.kind == "changed" and change.max_abs_change == np.inf
    (change,) = changes({"y": moved}, {"y": moved.copy()})
    assert change.kind == "unchanged"


# --- limits ----------------------------------------------------------------


def deflated_bomb(path: Path, megabytes: int) -> Path:
    """A small deflated .npz whose one output inflates to `megabytes` MiB of zeros."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("y.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False,
                                                          "shape": (megabytes << 18,)})
            zeros = bytes(1 << 20)
            for _ in range(megabytes):
                member.write(zeros)
    return path


def test_declared_sizes_beyond_the_limits_are_refused_before_inflating(tmp_path, monkeypatch):
    bomb = deflated_bomb(tmp_path / "bomb.npz", 64)
    assert bomb.stat().st_size < 1 << 20
    inflated = []
    monkeypatch.setattr(np.lib.format, "read_array", lambda *a, **k: inflated.append(1))
    with pytest.raises(GoldenError, match=r"bomb\.npz: output 'y' declares 67108992 bytes uncompressed, more than "
                                          r"the run's outputs can need \(48 bytes of data\); refused before inflating"):
        read_golden(bomb, {"y": 48})
    with pytest.raises(GoldenError, match="output 'y' declares"):
        read_golden(bomb, {"other": 48})  # an output the run lacks may be no larger than its largest
    assert not inflated


def test_a_golden_within_the_limits_reads(files):
    write_golden(files, {"y": np.zeros(6, np.float32)}, {})
    assert read_golden(files.npz, {"y": 6 * 8})["y"].shape == (6,)


# --- approving obtained files ------------------------------------------------


def obtained_sidecar(kind: str, model: str = "models/add.onnx") -> dict:
    return {"format": 1, "kind": kind, "test": "test_m.py::test_x[wasm]", "model": model,
            "outputs": {"y": {"dtype": "float32", "shape": [3]}}, "made_by": {"ep": "wasm"}}


def test_approve_refuses_what_is_not_a_per_ep_golden_of_this_store(tmp_path):
    from pytest_browserml.golden import approve as golden_approve

    source = tmp_path / "artifact"
    key = GoldenKey("test_m", "test_x")
    write_golden(key.obtained(source, "wasm"), {"y": np.ones(3, np.float32)}, obtained_sidecar("reference"))
    write_golden(key.obtained(source, "webgpu"), {"y": np.ones(3, np.float32)}, {"kind": "per-EP"})
    write_golden(key.obtained(source, "webnn"), {"y": np.ones(1 << 20, np.float32)}, obtained_sidecar("per-EP"))
    refusals = {approval.obtained.npz.name: approval.refusal
                for approval in golden_approve.plan(source, tmp_path / "goldens")}
    assert "compared with a reference golden" in refusals["test_x[wasm].obtained.npz"]
    assert "not a sidecar pytest-browserml wrote" in refusals["test_x[webgpu].obtained.npz"]
    assert "output 'y' declares 4194432 bytes uncompressed" in refusals["test_x[webnn].obtained.npz"]  # 3 declared
    assert not (tmp_path / "goldens").exists()


def test_approve_writes_a_new_per_ep_golden_and_moves_obtained_files_out_of_the_golden_folder(tmp_path):
    from pytest_browserml.golden import approve as golden_approve

    folder = tmp_path / "goldens"
    key = GoldenKey("test_m", "test_x")
    write_golden(key.obtained(folder, "wasm"), {"y": np.ones(3, np.float32)}, obtained_sidecar("per-EP"))
    (approval,) = golden_approve.plan(folder, folder)
    assert approval.refusal is None
    assert approval.changes == ("y: new", "model: None -> models/add.onnx", "made_by.ep: None -> wasm")
    golden_approve.apply(approval)
    assert read_golden(key.golden(folder, "wasm").npz)["y"].tolist() == [1.0, 1.0, 1.0]
    assert files_in(folder / "test_m") == ["test_x[wasm].json", "test_x[wasm].npz"]
