"""How to start a browser so that WebGPU reaches the machine's GPU: `--webgpu-adapter auto|hardware|swiftshader`.

`plan()` is pure: given what was found on the machine (`MachineFacts`: the Vulkan driver files, the
libraries the GPU path loads), it returns the browser's flags and environment and says which adapter
they aim at and why. `gather()` reads those facts from this machine. The recipe (verified on an NVIDIA
H200, see README "WebGPU on a real GPU"):

- pinned headless shell: ANGLE runs GL on SwiftShader's Vulkan (the shell's headless display needs
  `VK_EXT_headless_surface`, which NVIDIA's driver lacks) while Dawn enumerates every driver in
  `VK_DRIVER_FILES` and hands WebGPU the GPU; `ANGLE_PREFERRED_DEVICE` keeps ANGLE on SwiftShader
  (without it the GPU process crashed), and Dawn's `vulkan_enable_f16_on_nvidia` gives `shader-f16`.
- full Chrome (`--browser-channel`, `--browser-executable`): GL on the GPU's Vulkan with
  `--disable-vulkan-surface`; its first `requestAdapter()` of a page returns null, the page retries.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

ADAPTER_MODES = ("auto", "hardware", "swiftshader")
SWIFTSHADER_DEVICE = "SwiftShader Device (Subzero)"  # the Vulkan deviceName ANGLE is steered to
# Where Vulkan loaders look for driver files (ICDs), plus where NVIDIA's container runtime puts them.
ICD_DIRS = ("/etc/vulkan/icd.d", "/usr/share/vulkan/icd.d", "/usr/local/share/vulkan/icd.d",
            "/usr/local/nvidia/share/vulkan/icd.d")
SOFTWARE_DRIVERS = ("swiftshader", "lvp", "lavapipe")  # Vulkan drivers that are CPUs, not GPUs
# What the GPU path loads, and the Debian/Ubuntu package that provides each.
NSS_LIBRARIES = {"libnss3.so": "libnss3", "libnssutil3.so": "libnss3", "libsmime3.so": "libnss3",
                 "libnspr4.so": "libnspr4", "libplc4.so": "libnspr4", "libplds4.so": "libnspr4"}
GLVND_LIBRARY = {"libGLdispatch.so.0": "libglvnd0"}  # NVIDIA's Vulkan driver (libGLX_nvidia) loads only with it
VULKAN_LOADER = {"libvulkan.so.1": "libvulkan1"}  # full Chrome uses the system's loader; the pinned shell has its own
SOFTWARE_ARGS = ("--enable-unsafe-webgpu", "--enable-unsafe-swiftshader", "--enable-features=Vulkan",
                 "--enable-webgpu-developer-features")  # developer features: the adapter's architecture, description


class AdapterUnavailable(RuntimeError):
    """`--webgpu-adapter hardware` cannot be had on this machine; the text says what is missing."""


@dataclass(frozen=True)
class VulkanDriver:
    """One Vulkan driver file (ICD JSON) and the library it names."""

    path: Path
    library: str

    @property
    def software(self) -> bool:
        return any(name in f"{self.path.name} {self.library}".lower() for name in SOFTWARE_DRIVERS)

    @property
    def vendor(self) -> str:
        text = f"{self.path.name} {self.library}".lower()
        return next((vendor for vendor in ("nvidia", "radeon", "amd", "intel") if vendor in text), "GPU")


@dataclass(frozen=True)
class MachineFacts:
    """What `plan()` decides from: found on the machine by `gather()`, or made up by a test."""

    drivers: tuple[VulkanDriver, ...]  # every Vulkan driver file found, software ones included
    swiftshader_icd: Path | None  # the pinned Chromium's own SwiftShader driver file (None for other browsers)
    missing_libraries: tuple[str, ...]  # sonames of NSS_LIBRARIES, GLVND_LIBRARY, VULKAN_LOADER not loadable
    searched: tuple[str, ...] = ICD_DIRS  # where drivers were looked for, for the messages

    @property
    def gpu_drivers(self) -> tuple[VulkanDriver, ...]:
        return tuple(driver for driver in self.drivers if not driver.software)


@dataclass(frozen=True)
class LaunchPlan:
    """Flags and environment of a WebGPU browser, and the adapter they aim at."""

    mode: str  # as asked: auto, hardware, swiftshader
    hardware: bool  # aims at the GPU
    summary: str  # for the header and reports, e.g. "SwiftShader (no GPU found)"
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    fallback_reason: str | None = None  # why not the GPU, when it aims at SwiftShader
    missing: tuple[str, ...] = ()  # libraries the browser needs that are missing, with their packages

    def describe(self) -> str:
        return f"--webgpu-adapter {self.mode}: {self.summary}"


def plan(mode: str, facts: MachineFacts, *, pinned: bool) -> LaunchPlan:
    """The launch plan for `mode` on a machine with `facts`; `pinned` is the pinned headless shell,
    else a full Chrome (channel or executable). Raises AdapterUnavailable for `hardware` without a GPU."""
    if mode not in ADAPTER_MODES:
        raise ValueError(f"--webgpu-adapter {mode!r}: choose from {', '.join(ADAPTER_MODES)}")
    nss = _missing(facts, NSS_LIBRARIES) if pinned else ()
    if mode == "swiftshader":
        return LaunchPlan(mode, False, "SwiftShader (asked for)", SOFTWARE_ARGS, (), missing=nss)
    gpus = facts.gpu_drivers
    needed = {**(GLVND_LIBRARY if any(driver.vendor == "nvidia" for driver in gpus) else {}),
              **({} if pinned else VULKAN_LOADER)}
    blockers = _missing(facts, needed)
    if not gpus:
        reason = f"no Vulkan driver of a GPU found (looked in {', '.join(facts.searched)} and $VK_DRIVER_FILES)"
    elif blockers:
        reason = f"{', '.join(driver.path.name for driver in gpus)} found, but it needs {'; '.join(blockers)}"
    elif pinned and facts.swiftshader_icd is None:
        reason = "the pinned Chromium's SwiftShader driver file (vk_swiftshader_icd.json) is missing"
    else:
        reason = None
    if reason:
        if mode == "hardware":
            raise AdapterUnavailable(f"--webgpu-adapter hardware: {reason}" + (
                "" if gpus else "; this machine's WebGPU would be SwiftShader, a CPU"))
        summary = "SwiftShader (no GPU found)" if not gpus else "SwiftShader (GPU not usable)"
        return LaunchPlan(mode, False, summary, SOFTWARE_ARGS, (), fallback_reason=reason, missing=nss)
    names = ", ".join(f"{driver.vendor} ({driver.path})" for driver in gpus)
    dawn = ("--enable-dawn-features=vulkan_enable_f16_on_nvidia",) if any(d.vendor == "nvidia" for d in gpus) else ()
    if pinned:
        files = [str(facts.swiftshader_icd), *(str(driver.path) for driver in gpus)]
        env = (("VK_DRIVER_FILES", os.pathsep.join(files)), ("ANGLE_PREFERRED_DEVICE", SWIFTSHADER_DEVICE))
        args = (*SOFTWARE_ARGS, "--use-angle=vulkan", *dawn)
    else:
        env = (("VK_DRIVER_FILES", os.pathsep.join(str(driver.path) for driver in gpus)),)
        args = (*SOFTWARE_ARGS, "--use-angle=vulkan", "--disable-vulkan-surface", "--ignore-gpu-blocklist", *dawn)
    return LaunchPlan(mode, True, f"GPU: {names}", args, env, missing=nss)


def _missing(facts: MachineFacts, libraries: dict[str, str]) -> tuple[str, ...]:
    by_package: dict[str, list[str]] = {}
    for soname, package in libraries.items():
        if soname in facts.missing_libraries:
            by_package.setdefault(package, []).append(soname)
    return tuple(f"{', '.join(sonames)} (Debian/Ubuntu package {package})" for package, sonames in by_package.items())


# --- reading the facts of this machine -------------------------------------------------------------------------

def gather(swiftshader_icd: Path | None, library_dirs: tuple[Path, ...] = ()) -> MachineFacts:
    """The Vulkan drivers and libraries of this machine (cheap: a few folders and `ldconfig -p`)."""
    listed = [Path(item) for name in ("VK_DRIVER_FILES", "VK_ICD_FILENAMES")
              for item in os.environ.get(name, "").split(os.pathsep) if item]
    files = listed + [path for folder in ICD_DIRS if Path(folder).is_dir() for path in sorted(Path(folder).glob("*.json"))]
    drivers = tuple(dict.fromkeys(driver for path in files if (driver := _read_driver(path))))
    wanted = (*NSS_LIBRARIES, *GLVND_LIBRARY, *VULKAN_LOADER)
    found = _loadable(wanted, library_dirs)
    return MachineFacts(drivers, swiftshader_icd if swiftshader_icd and swiftshader_icd.is_file() else None,
                        tuple(soname for soname in wanted if soname not in found))


def _read_driver(path: Path) -> VulkanDriver | None:
    try:
        library = json.loads(path.read_text())["ICD"]["library_path"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return VulkanDriver(path.resolve(), str(library))


def _loadable(sonames, library_dirs: tuple[Path, ...]) -> set[str]:
    """The sonames the dynamic loader would find: in LD_LIBRARY_PATH, `library_dirs` or ldconfig's cache."""
    folders = [*library_dirs, *(Path(item) for item in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if item)]
    found = {soname for soname in sonames if any((folder / soname).exists() for folder in folders)}
    try:
        cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        cache = ""
    cached = {line.split()[0] for line in cache.splitlines()[1:] if line.strip()}
    standard = [Path(p) for p in ("/lib", "/usr/lib", "/lib64", "/usr/lib64", "/lib/x86_64-linux-gnu",
                                  "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu")]
    return found | {soname for soname in sonames
                    if soname in cached or (not cache and any((folder / soname).exists() for folder in standard))}
