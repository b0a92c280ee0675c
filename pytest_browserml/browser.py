"""Which browser to start for an execution provider, and how.

One browser per EP configuration, because each EP wants its own switches
(WebGPU's unsafe adapter, WebNN's feature flag) and a crash on one EP must not
take the others down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import provision

EP_NAMES = ("wasm", "webgpu", "webnn")
WEBNN_DEVICE_TYPES = ("cpu", "gpu", "npu")

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
    """An EP as given to --browser-ep: `wasm`, `webgpu`, `webnn` or `webnn:gpu`."""

    name: str
    device_type: str | None = None

    @classmethod
    def parse(cls, text: str) -> "ExecutionProvider":
        name, _, device_type = text.strip().partition(":")
        if name not in EP_NAMES:
            raise BrowserSetupError(f"--browser-ep {text!r}: unknown execution provider; choose from {', '.join(EP_NAMES)}")
        if device_type and (name != "webnn" or device_type not in WEBNN_DEVICE_TYPES):
            raise BrowserSetupError(
                f"--browser-ep {text!r}: only webnn takes a device type ({', '.join(WEBNN_DEVICE_TYPES)})"
            )
        return cls(name, device_type or None)

    @property
    def id(self) -> str:
        return f"{self.name}:{self.device_type}" if self.device_type else self.name

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
            "webgpu": ("JsExecutionProvider", "WebGpuExecutionProvider"),
            "webnn": ("WebNNExecutionProvider",),
        }[self.name]

    def launch_args(self) -> list[str]:
        if self.name == "webgpu":
            return ["--enable-unsafe-webgpu", "--enable-unsafe-swiftshader", "--enable-features=Vulkan"]
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


EP_SECTIONS_TEXT = f"EP sections {', '.join(EP_NAMES)} (webnn also with a device: {', '.join(f'webnn:{d}' for d in WEBNN_DEVICE_TYPES)})"


@dataclass(frozen=True)
class BrowserChoice:
    """Where the browser comes from: an executable, a Playwright channel, or the pinned Chromium."""

    executable: Path | None = None
    channel: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    extra_args: tuple[str, ...] = ()

    @classmethod
    def resolve(cls, executable: str | None, channel: str | None, *, fetch: bool, progress=None) -> "BrowserChoice":
        if executable:
            path = Path(executable).expanduser().absolute()  # Path drops "./": "chrome" alone is looked up on PATH
            if not path.is_file():
                raise BrowserSetupError(f"--browser-executable {executable}: no such file")
            return cls(executable=path)
        if channel:
            return cls(channel=channel)
        pinned = provision.pinned_chromium(fetch=fetch, progress=progress)
        library_path = os.pathsep.join(filter(None, [str(pinned.library_dir), os.environ.get("LD_LIBRARY_PATH")]))
        return cls(
            executable=pinned.executable,
            env=(("LD_LIBRARY_PATH", library_path), ("FONTCONFIG_PATH", str(pinned.library_dir))),
            extra_args=("--no-zygote",),
        )

    def describe(self) -> str:
        return str(self.executable) if self.executable else f"Playwright channel {self.channel}"

    def launch(self, playwright, ep: ExecutionProvider, engine_args: tuple[str, ...] = ()):
        """`engine_args`: the wasm engine's switches (wasm_engine.launch_args)."""
        kwargs = {"args": [*QUIET_ARGS, *self.extra_args, *ep.launch_args(), *engine_args], "headless": True}
        if self.executable:
            kwargs["executable_path"] = str(self.executable)
        if self.channel:
            kwargs["channel"] = self.channel
        if self.env:
            kwargs["env"] = {**os.environ, **dict(self.env)}
        try:
            return playwright.chromium.launch(**kwargs)
        except Exception as error:
            raise BrowserSetupError(
                f"the browser for {ep.id} did not start ({self.describe()} {' '.join(kwargs['args'])}):\n{error}"
            ) from error
