"""Fetch, verify and cache onnxruntime-web and the pinned Chromium.

Both come from the npm registry through the machine's own `npm` (so its
registry, proxy and auth settings apply and no host is written here). Each
tarball is checked against the registry's published `dist.integrity` hash
before it is unpacked, and every package lands in a folder of its own version
under the cache, renamed into place only when complete, under a file lock so
that pytest-xdist workers never unpack over each other.

The completion marker holds a manifest of every unpacked file (size, mtime,
sha256). Each use checks it: a file whose size differs is damaged at once; one
whose mtime moved is hashed (once per process). A damaged folder is fetched
again when fetching is allowed, else the error names the file and the command
that repairs it. Folders unpacked before manifests existed are not checked.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ORT_WEB_VERSION = "1.30.0"
CHROMIUM_PACKAGE = "@sparticuz/chromium"
CHROMIUM_VERSION = "153.0.0"
COMPLETE_MARKER = ".browserml-complete"
NOT_INSTALLED = "not installed"
_HASHED: dict[Path, tuple[int, int]] = {}  # files whose sha256 matched this process, at (size, mtime_ns)


class ProvisionError(RuntimeError):
    """Something needed is missing or could not be fetched; the text says how to fix it."""


def cache_dir() -> Path:
    """`BROWSERML_CACHE`, else the platform's user cache folder."""
    if env := os.environ.get("BROWSERML_CACHE"):
        return Path(env).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "pytest-browserml"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "pytest-browserml" / "Cache"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pytest-browserml"


@dataclass(frozen=True)
class OrtWeb:
    version: str
    dist: Path  # folder holding ort.*.mjs and ort-wasm-*.{mjs,wasm}


@dataclass(frozen=True)
class PinnedChromium:
    version: str
    executable: Path
    library_dir: Path  # holds the SwiftShader Vulkan/GL libraries; goes on LD_LIBRARY_PATH


def ort_web_dir(version: str) -> Path:
    return cache_dir() / "onnxruntime-web" / version


def chromium_dir(version: str = CHROMIUM_VERSION) -> Path:
    return cache_dir() / "chromium" / version


def ort_web(version: str = ORT_WEB_VERSION, *, fetch: bool = True, progress=None) -> OrtWeb:
    """The cached onnxruntime-web of `version`, fetched first (or again, if damaged) when allowed."""
    folder = ort_web_dir(version)
    damage = _damage(folder)
    if damage:
        if not fetch:
            command = f"browserml install --ort-web-version {version}"
            if damage == NOT_INSTALLED:
                raise ProvisionError(f"onnxruntime-web {version} is not in the cache ({folder}). "
                                     f"Run `{command}` to fetch it.")
            raise ProvisionError(f"onnxruntime-web {version} in the cache is damaged: {damage}. "
                                 f"Run `{command}` to fetch it again.")
        _install(folder, f"onnxruntime-web@{version}", _unpack_ort_web, progress)
    return OrtWeb(version, folder / "dist")


def pinned_chromium(*, fetch: bool = True, progress=None) -> PinnedChromium:
    """The pinned headless Chromium (runs wasm, webgpu on SwiftShader and webnn on Linux x86-64)."""
    folder = chromium_dir()
    damage = _damage(folder)
    if damage:
        if not (sys.platform.startswith("linux") and os.uname().machine == "x86_64"):
            raise ProvisionError(
                "the pinned Chromium exists for Linux x86-64 only; pass --browser-executable "
                "or --browser-channel chrome on this platform"
            )
        if not fetch:
            if damage == NOT_INSTALLED:
                raise ProvisionError(f"the pinned Chromium {CHROMIUM_VERSION} is not in the cache ({folder}). "
                                     "Run `browserml install` to fetch it, or pass --browser-executable.")
            raise ProvisionError(f"the pinned Chromium {CHROMIUM_VERSION} in the cache is damaged: {damage}. "
                                 "Run `browserml install` to fetch it again, or pass --browser-executable.")
        _install(folder, f"{CHROMIUM_PACKAGE}@{CHROMIUM_VERSION}", _unpack_chromium, progress)
    return PinnedChromium(CHROMIUM_VERSION, folder / "chromium", folder)


def _install(folder: Path, spec: str, unpack, progress) -> None:
    say = progress or (lambda message: None)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _lock(folder.parent / f".{folder.name}.lock"):
        damage = _damage(folder)
        if not damage:  # another worker finished it meanwhile
            return
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}-") as tmp:
            if damage != NOT_INSTALLED:
                say(f"the cached {spec} is damaged ({damage}); fetching it again")
            say(f"fetching {spec} with npm")
            tarball = _npm_pack(spec, Path(tmp))
            integrity = _verify_integrity(spec, tarball)
            say(f"verified {spec} ({integrity[:20]}...); unpacking")
            staging = Path(tmp) / "staging"
            staging.mkdir()
            unpack(tarball, staging)
            files = _manifest(staging)
            (staging / COMPLETE_MARKER).write_text(json.dumps({"package": spec, "integrity": integrity, "files": files}))
            if folder.exists():  # an incomplete or damaged earlier install: moved aside, deleted with tmp
                folder.rename(Path(tmp) / "replaced")
            staging.rename(folder)
            say(f"installed {spec} in {folder}")


def _manifest(folder: Path) -> dict[str, dict]:
    """Size, mtime and sha256 of every file under `folder`, by POSIX path relative to it."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            files[path.relative_to(folder).as_posix()] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                                                          "sha256": file_sha256(path)}
    return files


def _damage(folder: Path) -> str | None:
    """What is wrong with an installed folder (NOT_INSTALLED if it is not there), or None if it is whole.

    Cheap on every call: sizes and mtimes against the manifest; a file is hashed only when its
    mtime differs from the manifest's, and then once per process for that size and mtime.
    """
    marker = folder / COMPLETE_MARKER
    try:
        record = json.loads(marker.read_text())
        files = record.get("files", {})  # none: unpacked before manifests existed, nothing to check
        expected = {name: (int(entry["size"]), int(entry["mtime_ns"]), str(entry["sha256"]))
                    for name, entry in files.items()}
    except FileNotFoundError:
        return NOT_INSTALLED
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        return f"its completion marker {marker} is unreadable ({type(error).__name__}: {error})"
    for name, (size, mtime_ns, sha256) in expected.items():
        path = folder / name
        try:
            stat = path.stat()
        except OSError:
            return f"{path} is missing"
        if stat.st_size != size:
            return f"{path} has {stat.st_size} bytes, {size} when installed"
        if stat.st_mtime_ns == mtime_ns or _HASHED.get(path) == (stat.st_size, stat.st_mtime_ns):
            continue
        if file_sha256(path) != sha256:
            return f"{path} differs from the file installed (sha256 mismatch)"
        _HASHED[path] = (stat.st_size, stat.st_mtime_ns)
    return None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _lock(path: Path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _npm(*args: str, cwd: Path) -> str:
    if shutil.which("npm") is None:
        raise ProvisionError("npm is not on PATH; install Node.js and npm, then run `browserml install`")
    done = subprocess.run(["npm", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ProvisionError(f"`npm {' '.join(args)}` failed:\n{done.stderr.strip()}")
    return done.stdout


def _npm_pack(spec: str, into: Path) -> Path:
    packed = json.loads(_npm("pack", spec, "--json", "--pack-destination", str(into), cwd=into))
    return into / packed[0]["filename"]


def _verify_integrity(spec: str, tarball: Path) -> str:
    """Check the tarball against the registry's `dist.integrity` (sha512, base64)."""
    published = json.loads(_npm("view", spec, "dist.integrity", "--json", cwd=tarball.parent))
    algorithm, _, expected = published.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
    if actual != expected:
        raise ProvisionError(
            f"integrity check failed for {spec}: the registry publishes {published}, "
            f"the downloaded {tarball.name} hashes to {algorithm}-{actual}"
        )
    return published


def _unpack_ort_web(tarball: Path, into: Path) -> None:
    """Keep only the ES-module bundles and the wasm files they load."""
    dist = into / "dist"
    dist.mkdir()
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            name = member.name.removeprefix("package/dist/")
            if member.isfile() and member.name.startswith("package/dist/") and "/" not in name and (
                name.endswith(".mjs") or name.endswith(".wasm")
            ):
                (dist / name).write_bytes(archive.extractfile(member).read())
    package = json.loads(_read_member(tarball, "package/package.json"))
    (into / "package.json").write_text(json.dumps({"name": package["name"], "version": package["version"]}))


def _unpack_chromium(tarball: Path, into: Path) -> None:
    """Decompress the Brotli executable and SwiftShader libraries into a versioned folder of our own."""
    import brotli

    executable = into / "chromium"
    executable.write_bytes(brotli.decompress(_read_member(tarball, "package/bin/chromium.br")))
    executable.chmod(0o755)
    for name in ("swiftshader", "fonts"):
        raw = brotli.decompress(_read_member(tarball, f"package/bin/{name}.tar.br"))
        with tarfile.open(fileobj=io.BytesIO(raw)) as archive:
            archive.extractall(into, filter="data")


def _read_member(tarball: Path, name: str) -> bytes:
    with tarfile.open(tarball) as archive:
        return archive.extractfile(name).read()
