"""Property tests: whatever shapes, dtypes and bytes come in, only the documented errors come out.

The tensor transport raises TransportError, the golden reader GoldenError, the ONNX
.pb reader OnnxCaseError, and the comparison never raises: a bad tensor or file must
fail one test with a message, not crash the session with a numpy or zipfile error.
"""

from __future__ import annotations

import io
import math
import struct
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pytest_browserml.browser import transport
from pytest_browserml.golden import store as goldens
from pytest_browserml.golden.compare import Tolerance, compare, compare_outputs

FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)
ORT_NAMES = sorted(transport.NUMPY_TYPES)


# --- the tensor transport -------------------------------------------------------------

ANY_DTYPE = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(endianness="?"),
    hnp.unsigned_integer_dtypes(endianness="?"),
    hnp.floating_dtypes(endianness="?", sizes=(16, 32, 64, 128)),
    hnp.complex_number_dtypes(endianness="?"),
    hnp.datetime64_dtypes(endianness="?"),
    hnp.timedelta64_dtypes(endianness="?"),
    hnp.byte_string_dtypes(max_len=4),
    hnp.unicode_string_dtypes(max_len=4),
    hnp.array_dtypes(allow_subarrays=True, max_size=2),
)
NUMPY_ARRAYS = st.builds(
    lambda array, flip: array[::-1] if flip and array.ndim else array,  # non-contiguous views too
    hnp.arrays(ANY_DTYPE, SHAPES),
    st.booleans(),
)
OBJECT_ARRAYS = st.lists(st.one_of(st.text(max_size=3), st.binary(max_size=3), st.integers(), st.none()),
                         max_size=4).map(lambda values: np.array(values + [None], dtype=object)[:-1])
PYTHON_VALUES = st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=3),
                          st.lists(st.one_of(st.integers(), st.lists(st.integers(), max_size=2)), max_size=3))


@FUZZ
@given(st.dictionaries(st.text(max_size=6), st.one_of(NUMPY_ARRAYS, OBJECT_ARRAYS, PYTHON_VALUES), max_size=4))
def test_encoding_any_tensors_round_trips_or_raises_transport_error(tensors):
    try:
        specs, parts = transport.encode(tensors)
    except transport.TransportError:
        return
    assert all(spec.get("offset", 0) % transport.ALIGNMENT == 0 for spec in specs)
    decoded = transport.decode(specs, bytearray(b"".join(bytes(part) for part in parts)))
    assert list(decoded) == list(tensors)
    for name, value in tensors.items():
        sent, received = np.asarray(value), decoded[name]
        assert received.shape == sent.shape
        if received.dtype != object:  # numbers: the very bytes, in native byte order
            native = sent.astype(sent.dtype.newbyteorder("="))
            assert received.dtype == native.dtype and received.tobytes() == native.tobytes()


SPEC_FIELDS = {
    "name": st.text(max_size=4),
    "dtype": st.sampled_from([*ORT_NAMES, "string", "bfloat16", "int4", "", "float"]),
    "shape": st.lists(st.one_of(st.integers(-2, 6), st.integers(2**31, 2**63)), max_size=4),
    "offset": st.one_of(st.integers(-16, 300), st.integers(2**62, 2**64)),
    "nbytes": st.one_of(st.integers(-16, 300), st.integers(2**62, 2**64)),
    "values": st.lists(st.one_of(st.text(max_size=2), st.integers(), st.none()), max_size=6),
}
JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4)),
                    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner,
                                                                                           max_size=3)), max_leaves=8)
SPECS = st.lists(st.one_of(
    st.fixed_dictionaries({key: SPEC_FIELDS[key] for key in ("name", "dtype", "shape", "offset", "nbytes")}),
    st.fixed_dictionaries({}, optional={**SPEC_FIELDS, "shape": st.one_of(SPEC_FIELDS["shape"], JSON),
                                        "offset": st.one_of(SPEC_FIELDS["offset"], JSON)}),
    JSON,
), max_size=4)


@FUZZ
@given(SPECS, st.binary(max_size=300))
def test_decoding_any_specs_and_payload_gives_arrays_or_raises_transport_error(specs, payload):
    try:
        tensors = transport.decode(specs, bytearray(payload))
    except transport.TransportError:
        return
    for spec in specs:
        array = tensors[spec["name"]]
        assert list(array.shape) == [int(d) for d in spec["shape"]]


@FUZZ
@given(st.dictionaries(st.text(max_size=4), hnp.arrays(st.sampled_from([transport.NUMPY_TYPES[n] for n in ORT_NAMES]),
                                                        SHAPES), min_size=1, max_size=3),
       st.sampled_from(["shape", "offset", "nbytes", "dtype"]), st.integers(-9, 9), st.integers(0, 16))
def test_decoding_a_tampered_encoding_raises_transport_error_or_matches_its_specs(tensors, field, change, cut):
    specs, parts = transport.encode(tensors)
    payload = b"".join(bytes(part) for part in parts)
    spec = specs[-1]
    if field == "shape":
        spec["shape"] = [*spec["shape"], abs(change)] if change % 2 else spec["shape"][:-1]
    elif field == "dtype":
        spec["dtype"] = ORT_NAMES[change % len(ORT_NAMES)]
    else:
        spec[field] += change
    try:
        decoded = transport.decode(specs, bytearray(payload[:len(payload) - cut]))
    except transport.TransportError:
        return
    array = decoded[spec["name"]]
    assert array.nbytes == spec["nbytes"] and list(array.shape) == spec["shape"]


# --- the golden reader -------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """One file that every example overwrites (hypothesis runs examples inside one test call)."""
    return tmp_path_factory.mktemp("fuzz") / "golden.npz"


def valid_golden() -> bytes:
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as folder:
        files = goldens.GoldenFiles(Path(folder) / "g.npz")
        goldens.write_golden(files, {"y": np.arange(12, dtype=np.float32).reshape(3, 4), "label": np.array(7),
                                     "mask": np.array([True, False])}, {})
        buffer.write(files.npz.read_bytes())
    return buffer.getvalue()


VALID_GOLDEN = valid_golden()


def read_or_golden_error(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        arrays = goldens.read_golden(path)
    except goldens.GoldenError as error:
        assert str(path) in str(error)
        return
    assert all(isinstance(array, np.ndarray) and array.dtype.kind in "biufcmMSUV" for array in arrays.values())


@FUZZ
@given(st.one_of(st.binary(max_size=600), st.binary(max_size=600).map(lambda tail: b"PK\x03\x04" + tail)))
def test_reading_random_bytes_as_a_golden_raises_golden_error(scratch, data):
    read_or_golden_error(scratch, data)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID_GOLDEN) - 1), st.integers(0, 255)), max_size=6),
       st.integers(0, len(VALID_GOLDEN)), st.binary(max_size=8))
def test_reading_a_mutated_golden_raises_golden_error_or_gives_arrays(scratch, flips, keep, inserted):
    data = bytearray(VALID_GOLDEN)
    for position, value in flips:
        data[position] = value
    read_or_golden_error(scratch, bytes(data[:keep]) + inserted + bytes(data[keep:]) if inserted else bytes(data[:keep]))


def npy_entry(descr: str, fortran: bool, shape: tuple, body: bytes, version: int) -> bytes:
    """An .npy member with any header numpy's parser accepts, and any body."""
    header = repr({"descr": descr, "fortran_order": fortran, "shape": shape}).encode("latin1")
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    length = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header + body


NPY_ENTRIES = st.builds(
    npy_entry,
    st.sampled_from(["<f4", ">f8", "|b1", "<i8", "|O", "<U3", "|V8", "|S2", "<c8", "<M8[s]", "garbage", "[('a', '<f4')]"]),
    st.booleans(),
    st.lists(st.one_of(st.integers(0, 4), st.integers(2**20, 2**62), st.integers(-3, -1)), max_size=3).map(tuple),
    st.binary(max_size=64),
    st.sampled_from([1, 2]),
)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["y.npy", "b.npy", "x.txt", "../up.npy", "d/"]), NPY_ENTRIES,
                          st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])), max_size=3))
def test_reading_a_zip_of_arbitrary_npy_headers_raises_golden_error_or_gives_arrays(scratch, members):
    """Huge or negative shapes, pickled objects and odd dtypes, inside a well-formed zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names are part of the test
        for name, entry, method in members:
            archive.writestr(zipfile.ZipInfo(name), entry, compress_type=method)
    read_or_golden_error(scratch, buffer.getvalue())


def test_a_golden_whose_header_claims_more_than_it_holds_is_refused_without_allocating(scratch):
    """A header claiming 2**40 float64 would make numpy allocate 8 TiB before reading."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("y.npy", npy_entry("<f8", False, (2**40,), b"\0" * 64, 1))
    scratch.write_bytes(buffer.getvalue())
    with pytest.raises(goldens.GoldenError, match=r"golden\.npz is truncated or corrupt: output 'y' claims shape "
                                                  r"\(1099511627776,\) of float64, which its 64 bytes of data cannot hold"):
        goldens.read_golden(scratch)


# --- the ONNX .pb tensor reader ----------------------------------------------------------------


def valid_tensor_pb() -> bytes:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "x").SerializeToString()


VALID_PB = valid_tensor_pb()


@FUZZ
@given(st.one_of(
    st.binary(max_size=200),
    st.tuples(st.lists(st.tuples(st.integers(0, len(VALID_PB) - 1), st.integers(0, 255)), max_size=5),
              st.integers(0, len(VALID_PB))).map(lambda mutation: _mutated(VALID_PB, *mutation)),
))
def test_reading_any_bytes_as_an_onnx_tensor_raises_onnx_case_error_or_gives_an_array(scratch, data):
    from pytest_browserml.onnx_suite import OnnxCaseError, _parse, _values

    pb = scratch.with_suffix(".pb")
    pb.write_bytes(data)
    try:
        tensor = _parse(pb, pb.name)
        array = _values(tensor, pb.name)
    except OnnxCaseError as error:
        assert pb.name in str(error)
        return
    assert isinstance(tensor.name, str) and isinstance(array, np.ndarray)


def _mutated(data: bytes, flips: list[tuple[int, int]], keep: int) -> bytes:
    mutable = bytearray(data)
    for position, value in flips:
        mutable[position] = value
    return bytes(mutable[:keep])


# --- the comparison -------------------------------------------------------------------------------

COMPARED_DTYPES = st.one_of(hnp.boolean_dtypes(), hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(),
                            hnp.floating_dtypes(sizes=(16, 32, 64)))
ODD_DTYPES = st.one_of(hnp.complex_number_dtypes(), hnp.unicode_string_dtypes(max_len=2),
                       hnp.floating_dtypes(sizes=(128,)), hnp.datetime64_dtypes())
SPECIAL_FLOATS = st.sampled_from([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45, 6.1e-5, 65504.0, 3.4e38, 1.8e308])


def float_elements(dtype: np.dtype):
    """Any float of the dtype's width, and the edges: zeros, subnormals, the largest finite, NaN, Inf."""
    return st.one_of(st.floats(width=min(dtype.itemsize * 8, 64), allow_nan=True, allow_infinity=True),
                     SPECIAL_FLOATS.map(lambda value: _rounded(value, dtype)))


def _rounded(value: float, dtype: np.dtype) -> float:
    with np.errstate(over="ignore"):  # 1.8e308 becomes inf in float16 and float32: wanted
        return float(np.array(value).astype(dtype))


@st.composite
def array_pairs(draw):
    """Obtained and expected: mostly one dtype and shape, sometimes not; NaN, Inf, zero-size included."""
    dtype = draw(st.one_of(COMPARED_DTYPES, ODD_DTYPES) if draw(st.integers(0, 9)) == 0 else COMPARED_DTYPES)
    shape = draw(SHAPES)
    elements = float_elements(dtype) if dtype.kind == "f" else None
    expected = draw(hnp.arrays(dtype, shape, elements=elements))
    if draw(st.integers(0, 4)) == 0:  # another dtype or shape
        other = draw(st.one_of(COMPARED_DTYPES, ODD_DTYPES))
        obtained = draw(hnp.arrays(other, draw(SHAPES), elements=float_elements(other) if other.kind == "f" else None))
    elif draw(st.booleans()):  # nearby values: drift, offsets, permutations
        obtained = draw(hnp.arrays(dtype, shape, elements=elements))
    else:
        obtained = expected.copy()
        if obtained.size and dtype.kind == "f":
            flat = obtained.reshape(-1)
            index = draw(st.integers(0, flat.size - 1))
            flat[index] = draw(float_elements(dtype))
    return obtained, expected


TOLERANCES = st.builds(
    Tolerance,
    atol=st.none() | st.floats(0, 1e3),
    rtol=st.none() | st.floats(0, 10),
    ulp=st.none() | st.integers(0, 2**40),
    cosine=st.none() | st.floats(-1, 1),
    topk=st.none() | st.integers(1, 6),
    topk_axis=st.integers(-4, 4),
    mismatch_fraction=st.floats(0, 1),
    nan_equal=st.booleans(),
    exact=st.booleans(),
)


@FUZZ
@given(array_pairs(), TOLERANCES)
def test_compare_never_raises_and_reports_consistently(pair, tolerance):
    obtained, expected = pair
    with warnings.catch_warnings():  # a RuntimeWarning is noise in every report, and an error under -W error
        warnings.simplefilter("error")
        result = compare("y", obtained, expected, tolerance)
    assert result.passed in (True, False) and 0 <= result.mismatched <= max(result.size, 0)
    assert result.size == math.prod(expected.shape)
    if result.problems:
        assert not result.passed
    assert result.format().startswith("output 'y'")


@FUZZ
@given(st.dictionaries(st.sampled_from("abcd"), array_pairs(), max_size=4), st.sets(st.sampled_from("abcd")),
       TOLERANCES)
def test_compare_outputs_never_raises_and_accounts_for_every_output(pairs, only_obtained, tolerance):
    obtained = {name: pair[0] for name, pair in pairs.items()}
    expected = {name: pair[1] for name, pair in pairs.items() if name not in only_obtained}
    results = compare_outputs(obtained, expected, lambda name, dtype: tolerance)
    assert sorted(result.name for result in results) == sorted(set(obtained) | set(expected))
    for result in results:
        result.format()
