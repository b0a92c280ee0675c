"""pytest-browserml: test ONNX models in a real browser on onnxruntime-web's execution providers."""

from .results import Environment, Latency, Memory, ModelRunError, PlacedNode, Placement, RunResult
from .runner import BrowserML

__all__ = ["BrowserML", "Environment", "Latency", "Memory", "ModelRunError", "PlacedNode", "Placement", "RunResult"]
