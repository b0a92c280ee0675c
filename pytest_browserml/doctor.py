"""`browserml doctor`: which EPs work on this machine, and why not.

For each EP it starts the browser the tests would use, asks the page what the
EP needs (WebGPU adapter, WebNN contexts) and runs a one-node model on it, so
"works" means a model really ran there, not only that an API exists.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .browser.gpu_info import GpuStatus
from .browser.launch import BrowserSetupError, ExecutionProvider
from .browser.launch_plan import LaunchPlan
from .browser.provision import ProvisionError
from .results import Adapter, Environment
from .runner import ModelRunError, Runtime, Settings


@dataclass(frozen=True)
class EpReport:
    ep: str
    works: bool
    reason: str | None  # the browser's or ORT's own error text when it does not work
    adapter: Adapter | None = None
    webnn_devices: dict | None = None
    placement: dict | None = None
    environment: Environment | None = None
    gpu: GpuStatus | None = None  # webgpu: what the browser's GPU process says


@dataclass(frozen=True)
class DoctorReport:
    ort_web_version: str
    browser: str | None
    browser_version: str | None
    eps: list[EpReport] = field(default_factory=list)
    setup_error: str | None = None
    webgpu_plan: LaunchPlan | None = None

    @property
    def ok(self) -> bool:
        return self.setup_error is None and all(ep.works for ep in self.eps)

    def format(self) -> str:
        lines = [f"onnxruntime-web {self.ort_web_version}"]
        if self.setup_error:
            return "\n".join([*lines, f"setup failed: {self.setup_error}"])
        lines.append(f"browser: {self.browser} (version {self.browser_version})")
        for ep in self.eps:
            lines.append(f"  {ep.ep:<11} {'works' if ep.works else 'DOES NOT WORK'}")
            if ep.environment:
                lines.append(f"      bundle: {ep.environment.ort_web_bundle}")
            if ep.reason:
                lines.append(f"      why: {ep.reason}")
            if ep.adapter:
                warning = "" if ep.adapter.shader_f16 else ": float16 models cannot run on WebGPU here"
                lines.append(f"      adapter: {ep.adapter.describe()}{warning}")
            if ep.ep.startswith("webgpu"):
                lines += [f"      {line}" for line in _gpu_section(ep, self.webgpu_plan)]
            if ep.webnn_devices:
                devices = ", ".join(f"{name} {status}" for name, status in ep.webnn_devices.items())
                lines.append(f"      WebNN device types: {devices}")
            if ep.placement:
                lines.append(f"      placement: {ep.placement}")
        return "\n".join(lines)


def diagnose(settings: Settings) -> DoctorReport:
    runtime = Runtime(settings)
    try:
        runtime.start()
    except (ProvisionError, BrowserSetupError) as error:
        return DoctorReport(settings.ort_web_version, None, None, setup_error=str(error))
    try:
        with tempfile.TemporaryDirectory() as folder:
            model = runtime.model_files(_tiny_model(Path(folder) / "doctor.onnx"))
            reports = [_check(runtime, ep, model) for ep in settings.eps]
        environment = next((report.environment for report in reports if report.environment), None)
        return DoctorReport(
            ort_web_version=environment.ort_web_version if environment else settings.ort_web_version,
            browser=environment.browser if environment else runtime.device,
            browser_version=environment.browser_version if environment else None,
            eps=reports,
            webgpu_plan=settings.webgpu_plan,
        )
    finally:
        runtime.close()


def _check(runtime: Runtime, ep: ExecutionProvider, model) -> EpReport:
    try:
        ep_browser = runtime.browser_for(ep)
        probe = ep_browser.probe()
    except BrowserSetupError as error:
        return EpReport(ep.id, False, str(error))
    details = {"adapter": Adapter.from_probe(probe.get("adapter")), "webnn_devices": probe.get("webnnDevices"),
               "environment": ep_browser.environment(),
               "gpu": ep_browser.gpu_status() if ep.name == "webgpu" else None}
    if not probe["ok"]:
        return EpReport(ep.id, False, probe["reason"], **details)
    try:
        result = ep_browser.run(model, {"x": np.ones((2, 3), np.float32)}, warmup=0, iterations=1)
    except ModelRunError as error:
        return EpReport(ep.id, False, str(error), **details)
    if not np.array_equal(result.outputs["y"], np.full((2, 3), 2, np.float32)):
        return EpReport(ep.id, False, f"1 + 1 gave {result.outputs['y'].ravel().tolist()}", **details)
    return EpReport(ep.id, True, None, placement=result.placement.nodes_per_provider, **details)


def _gpu_section(ep: EpReport, plan: LaunchPlan | None) -> list[str]:
    """The GPU lines of a webgpu EP: the launch plan, what the GPU process says, the adapter's features and
    limits, and why it fell back when it did."""
    lines = [f"GPU plan: {plan.describe()}" if plan else "GPU plan: none (a remote browser: its machine decides)"]
    if plan and plan.hardware:
        lines.append("Vulkan drivers: " + dict(plan.env).get("VK_DRIVER_FILES", "?"))
    if ep.gpu:
        lines.append(f"GPU process: {ep.gpu.why_not()}")
        lines += [f"GPU device: {device}" for device in ep.gpu.devices]
    adapter = ep.adapter
    if adapter:
        lines.append(f"adapter: vendor {adapter.vendor or '?'}, architecture {adapter.architecture or '?'}, "
                     f"description {adapter.description or '?'}, driver {adapter.driver or '?'}, "
                     f"backend {adapter.backend or '?'}; shader-f16 {'yes' if adapter.shader_f16 else 'no'}, "
                     f"subgroups {'yes' if adapter.subgroups else 'no'}")
        if adapter.limits:
            lines.append("limits: " + ", ".join(f"{name} {_size(value)}" for name, value in adapter.limits.items()))
        if adapter.is_fallback:
            reason = (plan.fallback_reason if plan and not plan.hardware else
                      f"the GPU was aimed at, but the browser says: {ep.gpu.why_not()}" if ep.gpu else None)
            lines.append(f"fell back to SwiftShader: {reason or 'asked for (--webgpu-adapter swiftshader)'}")
    return lines


def _size(value) -> str:
    if isinstance(value, int) and value >= 2**20:
        return f"{value / 2**30:.3g} GiB" if value >= 2**30 else f"{value / 2**20:.3g} MiB"
    return str(value)


def _tiny_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    info = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [2, 3]) for name in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "doctor", info[:1], info[1:])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path
