"""What the browser's GPU process says of itself (CDP `SystemInfo.getInfo`): GL renderer, Skia backend,
WebGPU's feature status. It tells why WebGPU got SwiftShader when a GPU was aimed at."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GpuStatus:
    gl_renderer: str  # e.g. "ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero) ...))"
    skia_backend: str  # e.g. GaneshVulkan; "None" when GPU rasterization is off
    webgpu_status: str  # e.g. enabled, unavailable_software
    devices: tuple[str, ...] = ()  # each GPU as vendor/device strings, with its driver
    feature_status: dict = field(default_factory=dict, compare=False)
    error: str | None = None  # the CDP call failed (e.g. a remote browser that does not allow it)

    @classmethod
    def from_cdp(cls, info: dict) -> "GpuStatus":
        gpu = info.get("gpu", {})
        aux = gpu.get("auxAttributes", {})
        devices = tuple(f"{device.get('deviceString') or device.get('vendorString') or '?'} "
                        f"(driver {device.get('driverVendor') or '?'} {device.get('driverVersion') or '?'})"
                        for device in gpu.get("devices", []))
        return cls(aux.get("glRenderer") or (gpu.get("devices") or [{}])[0].get("deviceString", "?"),
                   str(aux.get("skiaBackendType", "?")), gpu.get("featureStatus", {}).get("webgpu", "?"),
                   devices, gpu.get("featureStatus", {}))

    def why_not(self) -> str:
        """Why WebGPU may have fallen back: on Linux Chromium gives WebGPU a real adapter only when GL is not
        SwiftShader and Skia runs on Vulkan."""
        if self.error:
            return f"no GPU information ({self.error})"
        return f"WebGPU status {self.webgpu_status}, GL renderer {self.gl_renderer}, Skia backend {self.skia_backend}"


def gpu_status(browser) -> GpuStatus:
    """The GPU status of a Playwright browser (local or remote); never raises."""
    try:
        session = browser.new_browser_cdp_session()
        try:
            return GpuStatus.from_cdp(session.send("SystemInfo.getInfo"))
        finally:
            session.detach()
    except Exception as error:  # CDP refused or the browser went away: doctor still reports the rest
        return GpuStatus("?", "?", "?", error=str(error).splitlines()[0])
