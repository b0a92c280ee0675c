"""Which browser to start for an execution provider, and how.

One browser per EP configuration, because each EP wants its own switches
(WebGPU's unsafe adapter, WebNN's feature flag) and a crash on one EP must not
take the others down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import launch_plan, provision
from .launch_plan import AdapterUnavailable, LaunchPlan

EP_NAMES = ("wasm", "webgpu", "webnn")
WEBNN_DEVICE_TYPES = ("cpu", "gpu", "npu")
# onnxruntime-web 1.30 has two WebGPU implementations, each in its own bundle (both register as "webgpu"):
# the native WebGPU EP (`import 'onnxruntime-web/webgpu'`, ORT's recommendation since 1.29) and JSEP
# (`import 'onnxruntime-web'`, ort.all, deprecated by ORT). wasm and webnn run from ort.all, as before.
NATIVE_WEBGPU_BUNDLE = "ort.webgpu.min.mjs"
ALL_BUNDLE = "ort.all.min.mjs"
WEBGPU_IMPLEMENTATIONS = ("jsep",)

# Without these Chromium keeps trying to reach the internet.
QUIET_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--enable-precise-memory-info",  # performance.memory in bytes, not coarse buckets
]


class BrowserSetupError(RuntimeError):
    """A browser or EP setting that cannot work; the text names the setting."""


@dataclass(frozen=True)
class ExecutionProvider:
    """An EP as given to --browser-ep: `wasm`, `webgpu` (native WebGPU EP), `webgpu:jsep`, `webnn` or `webnn:gpu`."""

    name: str
    device_type: str | None = None  # webnn's deviceType
    jsep: bool = False  # webgpu through JSEP (the ort.all bundle) instead of the native WebGPU EP

    @classmethod
    def parse(cls, text: str) -> "ExecutionProvider":
        name, _, variant = text.strip().partition(":")
        if name not in EP_NAMES:
            raise BrowserSetupError(f"--browser-ep {text!r}: unknown execution provider; choose from "
                                    f"{', '.join(EP_NAMES)}, webgpu:jsep, webnn:gpu, webnn:npu")
        if name == "webgpu" and variant:
            if variant not in WEBGPU_IMPLEMENTATIONS:
                raise BrowserSetupError(f"--browser-ep {text!r}: only webnn takes a device type; webgpu is the "
                                        "native WebGPU EP and webgpu:jsep WebGPU through JSEP")
            return cls(name, jsep=True)
        if variant and (name != "webnn" or variant not in WEBNN_DEVICE_TYPES):
            raise BrowserSetupError(
                f"--browser-ep {text!r}: only webnn takes a device type ({', '.join(WEBNN_DEVICE_TYPES)})"
            )
        return cls(name, variant or None)

    @property
    def id(self) -> str:
        variant = "jsep" if self.jsep else self.device_type
        return f"{self.name}:{variant}" if variant else self.name

    @property
    def bundle(self) -> str:
        """The onnxruntime-web bundle the page loads for this EP."""
        return NATIVE_WEBGPU_BUNDLE if self.name == "webgpu" and not self.jsep else ALL_BUNDLE

    @property
    def section_keys(self) -> tuple[str, ...]:
        """The tolerance and budget sections that apply to this EP, least specific first: webnn:gpu reads
        the webnn section, then the webnn:gpu one."""
        return (self.name, self.id) if self.device_type else (self.name,)

    def to_js(self) -> dict:
        return {"name": self.name, "deviceType": self.device_type}

    def provider_names(self) -> tuple[str, ...]:
        """The names ORT's placement log uses for this EP."""
        return {
            "wasm": ("CPUExecutionProvider",),
            "webgpu": ("JsExecutionProvider",) if self.jsep else ("WebGpuExecutionProvider",),
            "webnn": ("WebNNExecutionProvider",),
        }[self.name]

    def launch_args(self, webgpu: LaunchPlan | None = None) -> list[str]:
        if self.name == "webgpu":
            return list(webgpu.args if webgpu else launch_plan.SOFTWARE_ARGS)
        if self.name == "webnn":
            return ["--enable-features=WebMachineLearningNeuralNetwork"]
        return []


def is_ep_section(key: object) -> bool:
    """Whether a key of a tolerance or budget table names an EP section (wasm, webgpu, webnn, webnn:gpu ...):
    one rule for both, the one --browser-ep follows."""
    try:
        return isinstance(key, str) and ExecutionProvider.parse(key).id == key
    except BrowserSetupError:
        return False


EP_SECTIONS_TEXT = (f"EP sections {', '.join(EP_NAMES)} (webnn also with a device: "
                    f"{', '.join(f'webnn:{d}' for d in WEBNN_DEVICE_TYPES)}; webgpu:jsep for JSEP alone)")


def webgpu_plan(mode: str, executable: str | None, channel: str | None) -> LaunchPlan:
    """The launch plan of WebGPU browsers on this machine (see launch_plan.py); cheap, no browser started."""
    pinned = not (executable or channel)
    library_dir = provision.chromium_dir()
    swiftshader = library_dir / "vk_swiftshader_icd.json" if pinned else None
    try:
        return launch_plan.plan(mode, launch_plan.gather(swiftshader, (library_dir,) if pinned else ()),
                                pinned=pinned)
    except (ValueError, AdapterUnavailable) as error:
        raise BrowserSetupError(str(error)) from None


@dataclass(frozen=True)
class BrowserChoice:
    """Where the browser comes from: an executable, a Playwright channel, or the pinned Chromium."""

    executable: Path | None = None
    channel: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    extra_args: tuple[str, ...] = ()
    webgpu: LaunchPlan | None = None  # flags and environment of WebGPU browsers; None: SwiftShader's flags

    @classmethod
    def resolve(cls, executable: str | None, channel: str | None, *, fetch: bool, progress=None,
                webgpu: LaunchPlan | None = None) -> "BrowserChoice":
        if executable:
            path = Path(executable).expanduser().absolute()  # Path drops "./": "chrome" alone is looked up on PATH
            if not path.is_file():
                raise BrowserSetupError(f"--browser-executable {executable}: no such file")
            return cls(executable=path, webgpu=webgpu)
        if channel:
            return cls(channel=channel, webgpu=webgpu)
        pinned = provision.pinned_chromium(fetch=fetch, progress=progress)
        library_path = os.pathsep.join(filter(None, [str(pinned.library_dir), os.environ.get("LD_LIBRARY_PATH")]))
        return cls(
            executable=pinned.executable,
            env=(("LD_LIBRARY_PATH", library_path), ("FONTCONFIG_PATH", str(pinned.library_dir))),
            extra_args=("--no-zygote",),
            webgpu=webgpu,
        )

    def describe(self) -> str:
        return str(self.executable) if self.executable else f"Playwright channel {self.channel}"

    def launch(self, playwright, ep: ExecutionProvider, engine_args: tuple[str, ...] = ()):
        """`engine_args`: the wasm engine's switches (wasm_engine.launch_args)."""
        kwargs = {"args": [*QUIET_ARGS, *self.extra_args, *ep.launch_args(self.webgpu), *engine_args],
                  "headless": True}
        if self.executable:
            kwargs["executable_path"] = str(self.executable)
        if self.channel:
            kwargs["channel"] = self.channel
        env = (*self.env, *(self.webgpu.env if self.webgpu and ep.name == "webgpu" else ()))
        if env:
            kwargs["env"] = {**os.environ, **dict(env)}
        try:
            return playwright.chromium.launch(**kwargs)
        except Exception as error:
            missing = self.webgpu.missing if self.webgpu else ()
            hint = f"\nmissing libraries: {'; '.join(missing)}" if missing else ""
            raise BrowserSetupError(
                f"the browser for {ep.id} did not start ({self.describe()} {' '.join(kwargs['args'])}):{hint}\n{error}"
            ) from error
