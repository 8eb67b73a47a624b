"""Geometric augmentation of digit images, shared by the MVAE's training and by the judges.

It lives apart from training so that the judges, which must stay independent of the model, need not
import the training loop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment_images(images: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Random rotation, size, aspect ratio, slant, shift and stroke width, like the variety of drawn digits.

    People draw digits wider or narrower than the long-side-fitted training sets: Dig-MNIST's are about
    a third wider for their height than Kannada-MNIST's. At strength 1 the aspect ratio varies by up to
    1.5x each way.
    """
    if strength <= 0:
        return images
    n = images.shape[0]
    u = lambda *shape: torch.rand(*shape, generator=generator) * 2 - 1  # noqa: E731
    angle = u(n) * math.radians(12) * strength
    log_scale = u(n) * 0.12 * strength
    log_aspect = u(n) * 0.2 * strength
    shear = u(n) * 0.15 * strength
    shift = u(n, 2) * 0.12 * strength
    # theta maps output coordinates to input ones, so it is the inverse of the wanted distortion.
    sx, sy = torch.exp(-(log_scale + log_aspect)), torch.exp(-(log_scale - log_aspect))
    cos, sin = torch.cos(angle), torch.sin(angle)
    a, b = cos * sx, (cos * shear - sin) * sx
    c, d = sin * sy, (sin * shear + cos) * sy
    theta = torch.stack([torch.stack([a, b, shift[:, 0]], 1), torch.stack([c, d, shift[:, 1]], 1)], 1)
    x = images.unsqueeze(1)
    grid = F.affine_grid(theta.to(x), x.shape, align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    stroke = torch.rand(n, generator=generator)
    thicker = (stroke < 0.3 * strength).to(x)[:, None, None, None]
    thinner = (stroke > 1 - 0.1 * strength).to(x)[:, None, None, None]
    dilated = F.max_pool2d(x, 3, stride=1, padding=1)
    eroded = -F.max_pool2d(-x, 3, stride=1, padding=1)
    x = thicker * dilated + thinner * eroded + (1 - thicker - thinner) * x
    return x.squeeze(1).clamp(0, 1)
