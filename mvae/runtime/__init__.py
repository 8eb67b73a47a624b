"""The lean runtime: the trained model's forward pass in numpy, for the app and `mvae.load()` (no torch)."""

from .model import LeanMVAE

__all__ = ["LeanMVAE"]
