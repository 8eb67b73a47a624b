"""Inputs the benchmarks feed the app, with numpy alone: a fresh interpreter that measures the lean
runtime imports them without importing torch."""

from __future__ import annotations

import numpy as np


def canvas_drawing(size: int = 280) -> np.ndarray:
    """A transparent canvas with a black stroke, as the drawing widget returns it (the ink is in alpha)."""
    yy, xx = np.indices((size, size))
    ring = np.abs(np.hypot(yy - size * 0.45, xx - size * 0.55) - size * 0.22) < size * 0.03
    stem = (np.abs(xx - size * 0.35) < size * 0.03) & (yy > size * 0.2) & (yy < size * 0.85)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 3] = ((ring | stem) * 255).astype(np.uint8)
    return rgba
