"""What an encoder pass gives, shared by the torch model (`mvae.model`) and the lean runtime (`mvae.runtime`).

Its own module, of the standard library alone, so that neither side reaches into the other for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Encoded:
    """Encoder outputs of the given modalities, numpy arrays in the lean runtime and torch tensors in the torch
    model: shared experts (E, B, D) and each one's style (B, S)."""

    names: tuple[str, ...]
    mu: Any
    logvar: Any
    styles: dict[str, tuple[Any, Any]]
    inputs: dict[str, Any]  # what each encoder was fed: the given data, normalised
