"""The golden store: reference outputs on disk, next to the tests that use them.

Layout follows pytest-regressions and syrupy so that goldens are easy to find,
review and commit::

    <golden_dir>/<test module stem>/<test name>.npz                    shared by every EP
    <golden_dir>/<test module stem>/<test name>[<ep>].npz              one EP's own golden
    <golden_dir>/<test module stem>/<test name>[<ep>].obtained.npz     what a failing run on <ep> produced
    ... .json              metadata sidecar (pretty, sorted keys: small diffs)

golden_names.py decides the names; this module reads and writes the files.

Goldens are committed files that pytest may rewrite (``--update-goldens``) while
other workers read them, so every write is atomic (temporary file in the same
directory, fsync, ``os.replace``) and every read refuses pickled data: a golden
from an untrusted pull request must never execute code when a test loads it.
This module is pure numpy and the standard library, without pytest or a browser.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Mapping

import numpy as np

from .compare import flat_blocks

__all__ = [
    "GoldenError",
    "GoldenFiles",
    "OutputChange",
    "changes",
    "find_goldens",
    "is_store_sidecar",
    "read_golden",
    "read_sidecar",
    "remove",
    "same_model",
    "sidecar_or_none",
    "used_by",
    "write_golden",
    "write_sidecar",
]

_NPZ = ".npz"
OBTAINED_NPZ = ".obtained.npz"  # beside a golden: a failed comparison's outputs, for review
_ENTRY = ".npy"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members; an empty zip
# bool, signed and unsigned integers, floats: what ONNX outputs hold and
# compare.py compares.  Anything else (object, str, structured) either pickles
# or cannot be compared, so it is refused before it reaches the disk.
_STORABLE_KINDS = "biuf"
# NotImplementedError: a zip feature (version, compression) that zipfile lacks.
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError)
# A temporary file not written to for this long, whose writer's pid is gone, is an orphan.
_ORPHAN_AGE_S = 60.0
# Room for an .npy header (format 2.0 allows more than 64 KiB) on top of an output's data.
_HEADER_ROOM = 1 << 20
# The sidecar fields this store always writes: how its own files are told from data kept beside them.
_SIDECAR_KINDS = ("reference", "per-EP")


def _default_file_mode() -> int:
    """The mode ``open()`` would give a new file; temporary files are created 0600."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _default_file_mode()


class GoldenError(Exception):
    """A golden or sidecar file is missing, unreadable, unsafe or cannot be written.

    The message always names the file and what is wrong with it.
    """


@dataclass(frozen=True)
class GoldenFiles:
    """An ``.npz`` of tensors and its ``.json`` sidecar: a golden, or a failing run's obtained outputs."""

    npz: Path

    def __post_init__(self) -> None:
        if not self.npz.name.endswith(_NPZ):
            raise ValueError(f"a golden file name must end in {_NPZ}, got {self.npz}")

    @property
    def sidecar(self) -> Path:
        return self.npz.with_name(self.npz.name[: -len(_NPZ)] + ".json")


def read_golden(path: Path, limits: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    """Every array in the golden, fully loaded; pickled entries are refused, never unpickled.

    ``limits`` caps the bytes of data each output may declare (an output not named
    there: the largest cap); it is checked against the zip's declared sizes before
    anything is inflated, so a small deflated file cannot expand to gigabytes.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_ZIP_MAGICS[0]))
            if not head:
                raise GoldenError(f"{path} is empty; a golden is an .npz file")
            if head not in _ZIP_MAGICS:
                kind = "a single .npy array" if head.startswith(b"\x93NUM") else "no zip header"
                raise GoldenError(f"{path} is not an .npz file ({kind})")
            fh.seek(0)
            with zipfile.ZipFile(fh) as archive:
                arrays: dict[str, np.ndarray] = {}
                for info in archive.infolist():
                    name = _entry_name(path, info)
                    if limits is not None:
                        _check_declared_size(path, name, info, limits)
                    if name in arrays:
                        raise GoldenError(f"{path} holds output {name!r} twice; which one is the golden?")
                    arrays[name] = _read_entry(path, archive, info)
                return arrays
    except FileNotFoundError:
        raise GoldenError(f"{path} does not exist") from None
    except _CORRUPT as exc:
        raise GoldenError(f"{path} is truncated or corrupt: {exc}") from None
    except OSError as exc:
        raise GoldenError(f"{path} cannot be read: {exc}") from None


def _entry_name(path: Path, info: zipfile.ZipInfo) -> str:
    if not info.filename.endswith(_ENTRY):
        raise GoldenError(f"{path} is not a golden: entry {info.filename!r} is not an .npy array")
    return info.filename[: -len(_ENTRY)]


def _check_declared_size(path: Path, name: str, info: zipfile.ZipInfo, limits: Mapping[str, int]) -> None:
    limit = limits.get(name, max(limits.values(), default=0))
    if info.file_size > limit + _HEADER_ROOM:
        raise GoldenError(
            f"{path}: output {name!r} declares {info.file_size} bytes uncompressed, more than the run's "
            f"outputs can need ({limit} bytes of data); refused before inflating it (a zip bomb, or the golden "
            "of another model)"
        )


def _read_entry(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """Check the entry's header for objects before numpy reads the data."""
    name = info.filename[: -len(_ENTRY)]
    if info.flag_bits & 0x1:
        raise GoldenError(f"{path}: output {name!r} is encrypted; goldens are plain zip files")
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise GoldenError(
                    f"{path}: output {name!r} uses .npy format version {version[0]}.{version[1]}; "
                    "goldens use 1.0 or 2.0"
                )
            data_size = info.file_size - member.tell()
        if dtype.hasobject:
            raise GoldenError(f"{path}: output {name!r} holds pickled objects; refused without unpickling")
        # numpy allocates the whole array before reading: a lying header must not cost terabytes
        claimed = math.prod(shape) * dtype.itemsize
        if claimed > data_size or any(dimension < 0 for dimension in shape):
            raise GoldenError(
                f"{path} is truncated or corrupt: output {name!r} claims shape {shape} of {dtype}, "
                f"which its {data_size} bytes of data cannot hold"
            )
        with archive.open(info) as member:
            return np.lib.format.read_array(member, allow_pickle=False)
    except _CORRUPT as exc:
        raise GoldenError(f"{path} is truncated or corrupt (output {name!r}): {exc}") from None


def read_sidecar(path: Path) -> dict | None:
    """The metadata next to a golden, or None when the golden has none."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise GoldenError(f"{path} cannot be read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GoldenError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise GoldenError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def sidecar_or_none(path: Path) -> dict | None:
    """The sidecar, or None when there is none or it cannot be read: an unreadable sidecar says nothing of
    its golden (which is compared, replaced on update, and never deleted as unused)."""
    try:
        return read_sidecar(path)
    except GoldenError:
        return None


def is_store_sidecar(data: object) -> bool:
    """Whether a sidecar is one this store wrote: only such goldens may ever be deleted."""
    return (isinstance(data, dict) and data.get("format") == 1 and data.get("kind") in _SIDECAR_KINDS
            and isinstance(data.get("outputs"), dict) and isinstance(data.get("test"), str))


def used_by(sidecar: dict | None) -> set[str]:
    """The ids of the tests that wrote a golden, as its sidecar lists them (none when it lists none)."""
    tests = sidecar.get("used_by") if isinstance(sidecar, dict) else None
    return {test for test in tests if isinstance(test, str)} if isinstance(tests, list) else set()


def same_model(recorded: object, model: str) -> bool:
    """Whether a sidecar's model is this one: its path under the rootdir, or for a model outside it
    (a temporary folder) its file name. An updated model file at the same path is the same model."""
    if not isinstance(recorded, str):
        return True  # nothing recorded: nothing to contradict
    if Path(recorded).is_absolute() or Path(model).is_absolute():
        return Path(recorded).name == Path(model).name
    return recorded == model


def write_golden(files: GoldenFiles, arrays: Mapping[str, np.ndarray], metadata: Mapping) -> None:
    """Atomically replace the ``.npz`` and then its sidecar; creates missing folders."""
    _write(files.npz, files.sidecar, arrays, metadata)


def write_sidecar(files: GoldenFiles, metadata: Mapping) -> None:
    """Atomically replace the sidecar alone (the tensors did not change)."""
    text = _sidecar_text(files.sidecar, metadata)
    _atomic_write(files.sidecar, lambda fh: fh.write(text))


def remove(files: GoldenFiles) -> None:
    """Delete the pair (e.g. obtained files of an earlier failure, once the test passes)."""
    for path in (files.npz, files.sidecar):
        path.unlink(missing_ok=True)


def _sidecar_text(sidecar: Path, metadata: Mapping) -> bytes:
    try:
        return (json.dumps(dict(metadata), indent=2, sort_keys=True) + "\n").encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise GoldenError(f"{sidecar}: metadata cannot be written as JSON: {exc}") from None


def _write(npz: Path, sidecar: Path, arrays: Mapping[str, np.ndarray], metadata: Mapping) -> None:
    """Validate everything first, so a refused golden leaves both files untouched."""
    checked = {}
    for name, value in arrays.items():
        array = np.asarray(value)
        if array.dtype.kind not in _STORABLE_KINDS:
            raise GoldenError(
                f"{npz}: output {name!r} has dtype {array.dtype}; goldens hold only bool, integer and "
                "float tensors (object arrays would be pickled)"
            )
        checked[str(name)] = array
    text = _sidecar_text(sidecar, metadata)

    def write_npz(fh: IO[bytes]) -> None:
        # What np.savez does, minus its keyword arguments: an output named
        # "file" or "allow_pickle" would clash with them.
        with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as archive:
            for name, array in checked.items():
                with archive.open(name + _ENTRY, "w", force_zip64=True) as member:
                    _write_npy(member, array)

    _atomic_write(npz, write_npz)
    _atomic_write(sidecar, lambda fh: fh.write(text))


def _write_npy(member: IO[bytes], array: np.ndarray) -> None:
    """What np.lib.format.write_array writes for a C-ordered array, from block views.

    numpy would copy 16 MiB at a time; a block of a contiguous array is written
    straight from the array's memory.  Any array is stored in C order.
    """
    header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False, "shape": array.shape}
    try:
        np.lib.format.write_array_header_1_0(member, header)
    except ValueError:  # a header over 64 KiB (thousands of dimensions) needs format 2.0, as with np.save
        np.lib.format.write_array_header_2_0(member, header)
    for _, (block,) in flat_blocks(array):
        member.write(block.view(np.uint8))


def _atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write to a temporary file in the target folder, fsync, then rename over the target.

    The rename is atomic on one file system, so concurrent readers see the old
    file or the new one, never a prefix.  The temporary name ends in ``.tmp``,
    so :func:`find_goldens` never mistakes a leftover for a golden, and holds the
    writer's pid, so that a later write can delete what a killed writer left.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    temporary: Path | None = None
    try:
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", delete=False
        ) as fh:
            temporary = Path(fh.name)
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(temporary, _FILE_MODE)
        os.replace(temporary, path)
        temporary = None
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)


def _remove_orphans(path: Path) -> None:
    """Delete temporaries of ``path`` whose writer died mid-write (kill -9 runs no cleanup).

    One is an orphan when the pid in its name is not running here and it has not
    been written to for a while: a live writer on another host sharing the folder
    keeps its file fresh.  Nothing is deleted where pids cannot be probed safely.
    """
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return
    prefix = f".{path.name}."
    now = time.time()
    with os.scandir(path.parent) as entries:
        for entry in entries:
            if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
                continue
            pid = entry.name[len(prefix):].partition("-")[0]
            try:
                stale = now - entry.stat(follow_symlinks=False).st_mtime > _ORPHAN_AGE_S
            except FileNotFoundError:  # its writer renamed it, or another cleaner deleted it
                continue
            if stale and not (pid.isdigit() and _running(int(pid))):
                Path(entry.path).unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


@dataclass(frozen=True)
class OutputChange:
    """How one output differs between the old golden and the new one.

    ``detail`` holds the "before -> after" text for shape and dtype changes.
    """

    name: str
    kind: str  # "new", "removed", "shape changed", "dtype changed", "changed", "unchanged"
    max_abs_change: float | None
    detail: str = ""

    def describe(self) -> str:
        parts = [self.detail] if self.detail else []
        if self.kind in ("changed", "dtype changed") and self.max_abs_change is not None:
            parts.append(f"max abs change {self.max_abs_change:.6g}")
        if not parts:
            parts.append(self.kind)
        return f"{self.name}: {', '.join(parts)}"


def changes(old: Mapping[str, np.ndarray] | None, new: Mapping[str, np.ndarray]) -> list[OutputChange]:
    """What ``--update-goldens`` changed, one entry per output: new outputs' order, then removed ones."""
    old = old or {}
    result = []
    for name, value in new.items():
        after = np.asarray(value)
        if name not in old:
            result.append(OutputChange(name, "new", None))
            continue
        before = np.asarray(old[name])
        if before.shape != after.shape:
            detail = f"shape {before.shape} -> {after.shape}"
            if before.dtype != after.dtype:
                detail += f", dtype {before.dtype} -> {after.dtype}"
            result.append(OutputChange(name, "shape changed", None, detail))
            continue
        largest = _max_abs_change(before, after)
        if before.dtype != after.dtype:
            result.append(OutputChange(name, "dtype changed", largest, f"dtype {before.dtype} -> {after.dtype}"))
        elif _equal(before, after):
            result.append(OutputChange(name, "unchanged", 0.0))
        else:
            result.append(OutputChange(name, "changed", largest))
    result += [OutputChange(name, "removed", None) for name in old if name not in new]
    return result


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Equality in the arrays' own dtype: float64 would merge large int64 neighbours."""
    equal_nan = a.dtype.kind == "f"
    return all(np.array_equal(x, y, equal_nan=equal_nan) for _, (x, y) in flat_blocks(a, b))


def _max_abs_change(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| in float64; equal values (NaN and NaN, inf and inf) count 0, NaN against a number inf."""
    largest = 0.0
    for _, (a_block, b_block) in flat_blocks(a, b):
        a64 = a_block.astype(np.float64)
        b64 = b_block.astype(np.float64)
        same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.abs(a64 - b64)
        diff = np.where(same, 0.0, np.where(np.isnan(diff), np.inf, diff))
        largest = max(largest, float(diff.max(initial=0.0)))
    return largest


def find_goldens(golden_dir: Path) -> list[Path]:
    """Every golden under golden_dir (obtained files excluded), sorted; empty if the folder is missing."""
    return sorted(
        path
        for path in Path(golden_dir).rglob("*" + _NPZ)
        if path.is_file() and not path.name.endswith(OBTAINED_NPZ)
    )
