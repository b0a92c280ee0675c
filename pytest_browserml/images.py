"""Image files as model inputs, the way image models are usually fed.

The image is converted to RGB, resized with bilinear filtering to `size`
(width, height) ignoring aspect ratio, scaled to [0, 1], normalised per
channel with `(x - mean) / std`, and laid out with a leading batch of one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

LAYOUTS = ("NCHW", "NHWC")


def image_input(path: Path, size: tuple[int, int] | None = None, layout: str = "NCHW",
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                dtype: str = "float32") -> np.ndarray:
    from PIL import Image

    if layout not in LAYOUTS:
        raise ValueError(f"image_input layout={layout!r}: choose NCHW or NHWC")
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        if size is not None:
            rgb = rgb.resize(tuple(size), Image.Resampling.BILINEAR)
        pixels = np.asarray(rgb, dtype=np.float32) / 255.0  # H, W, C
    if mean is not None:
        pixels = pixels - np.asarray(mean, dtype=np.float32)
    if std is not None:
        pixels = pixels / np.asarray(std, dtype=np.float32)
    if layout == "NCHW":
        pixels = pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels[np.newaxis]).astype(dtype)
