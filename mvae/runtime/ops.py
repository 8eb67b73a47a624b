"""The layers of the networks, in numpy: the lean runtime's only arithmetic.

A network is a list of steps, written by `mvae.model.export` from the torch model when a checkpoint is
saved: each step names its operation, the tensors it reads (by their names in the checkpoint) and its
settings. `run` takes the steps bound: each step's tensors as arrays (`LeanMVAE` binds them once). Every
batch is float32, batch first, laid out as torch lays it out (channels before rows).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def silu(x):
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x < -88, and x / inf is the right 0
        return x / (np.float32(1) + np.exp(-x))


def sigmoid(x):
    with np.errstate(over="ignore"):
        return np.float32(1) / (np.float32(1) + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def linear(x, weight, bias=None):
    y = x @ weight.T
    return y + bias if bias is not None else y


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """(B, C, H, W) * (O, C, k, k) -> (B, O, H', W'), as torch's Conv2d (cross-correlation)."""
    kh, kw = weight.shape[-2:]
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]  # (B, C, H', W', k, k)
    y = np.tensordot(windows, weight, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)  # (B, O, H', W')
    return y + bias[:, None, None] if bias is not None else y


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0):
    """(B, C, H, W) with weight (C, O, k, k) -> (B, O, H', W'), as torch's ConvTranspose2d: each input
    pixel adds its k x k stamp, `stride` apart, and `padding` is cut from every edge."""
    b, _, h, w = x.shape
    out_channels, kh, kw = weight.shape[1:]
    stamps = np.tensordot(x, weight, axes=([1], [0])).transpose(0, 3, 4, 5, 1, 2)  # (B, O, k, k, H, W)
    full = np.zeros((b, out_channels, (h - 1) * stride + kh, (w - 1) * stride + kw), np.float32)
    for i in range(kh):
        for j in range(kw):
            full[:, :, i:i + stride * h:stride, j:j + stride * w:stride] += stamps[:, :, i, j]
    y = full[:, :, padding:full.shape[2] - padding, padding:full.shape[3] - padding]
    return y + bias[:, None, None] if bias is not None else y


def batchnorm(x, mean, var, weight, bias, eps):
    """Batch norm as evaluated: the running statistics of training, per channel (axis 1)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = (weight / np.sqrt(var + np.float32(eps))).reshape(shape)
    return (x - mean.reshape(shape)) * scale + bias.reshape(shape)


def embedding(x, weight):
    return weight[x]


def run(steps: list[dict], x: np.ndarray) -> np.ndarray:
    """One network's forward pass over a batch; each step's "tensors" maps its roles to arrays."""
    for step in steps:
        op, t = step["op"], step.get("tensors", {})
        if op == "linear":
            x = linear(x, t["weight"], t.get("bias"))
        elif op == "silu":
            x = silu(x)
        elif op == "conv2d":
            x = conv2d(x, t["weight"], t.get("bias"), step["stride"], step["padding"])
        elif op == "conv_transpose2d":
            x = conv_transpose2d(x, t["weight"], t.get("bias"), step["stride"], step["padding"])
        elif op == "batchnorm":
            x = batchnorm(x, t["mean"], t["var"], t["weight"], t["bias"], step["eps"])
        elif op == "embedding":
            x = embedding(x, t["weight"])
        elif op == "flatten":
            x = x.reshape(len(x), -1)
        elif op == "unflatten":
            x = x.reshape(len(x), *step["shape"])
        elif op == "add_channel":
            x = x[:, None]
        elif op == "drop_channel":
            x = x[:, 0]
        else:
            raise ValueError(f"unknown operation {op!r}")
    return x


OPS = {"linear": ("weight", "bias"), "silu": (), "conv2d": ("weight", "bias"), "conv_transpose2d": ("weight", "bias"),
       "batchnorm": ("mean", "var", "weight", "bias"), "embedding": ("weight",), "flatten": (), "unflatten": (),
       "add_channel": (), "drop_channel": ()}  # each operation and the tensors it may read
SETTINGS = {"conv2d": ("stride", "padding"), "conv_transpose2d": ("stride", "padding"), "batchnorm": ("eps",),
            "unflatten": ("shape",)}  # each operation's settings, all of them required
OUTPUTS = {"sigmoid": sigmoid, "identity": lambda x: x, "softmax": softmax}
