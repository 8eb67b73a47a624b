"""The layers of the networks, in numpy: the lean runtime's only arithmetic.

A network is a list of steps, written by `mvae.model.export` from the torch model when a checkpoint is
saved: each step names its operation, the tensors it reads (by their names in the checkpoint) and its
settings. `run` takes the steps bound: each step's tensors as arrays (`LeanMVAE` binds them once). Every
batch is float32, batch first, laid out as torch lays it out (channels before rows).

`infer` gives what a step does to a batch's shape, and what it costs, from the shapes of its tensors alone
(the same rules numpy applies in `run`), so that a checkpoint's program is sized before any of its tensor
bytes are read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def silu(x):
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x < -88, and x / inf is the right 0
        return x / (np.float32(1) + np.exp(-x))


def sigmoid(x):
    with np.errstate(over="ignore"):
        return np.float32(1) / (np.float32(1) + np.exp(-x))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def logsumexp(x, axis):
    top = x.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(x - top).sum(axis=axis, keepdims=True))).squeeze(axis)


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


def conv_transpose1d(x, weight, bias=None, stride=1, padding=0):
    """(B, C, L) with weight (C, O, k) -> (B, O, L'), as torch's ConvTranspose1d."""
    b, _, length = x.shape
    out_channels, k = weight.shape[1:]
    stamps = np.tensordot(x, weight, axes=([1], [0])).transpose(0, 2, 3, 1)  # (B, O, k, L)
    full = np.zeros((b, out_channels, (length - 1) * stride + k), np.float32)
    for i in range(k):
        full[:, :, i:i + stride * length:stride] += stamps[:, :, i]
    y = full[:, :, padding:full.shape[2] - padding]
    return y + bias[:, None] if bias is not None else y


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
        elif op == "conv_transpose1d":
            x = conv_transpose1d(x, t["weight"], t.get("bias"), step["stride"], step["padding"])
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
       "conv_transpose1d": ("weight", "bias"),
       "batchnorm": ("mean", "var", "weight", "bias"), "embedding": ("weight",), "flatten": (), "unflatten": (),
       "add_channel": (), "drop_channel": ()}  # each operation and the tensors it may read
SETTINGS = {"conv2d": ("stride", "padding"), "conv_transpose2d": ("stride", "padding"),
            "conv_transpose1d": ("stride", "padding"), "batchnorm": ("eps",),
            "unflatten": ("shape",)}  # each operation's settings, all of them required
# numpy as `mvae.runtime.forward` calls it (torch's spelling, which numpy shares but for three functions): the
# array library of the shared forward pass in the lean runtime, as the `torch` module is in the torch model.
NUMPY = SimpleNamespace(concatenate=np.concatenate, stack=np.stack, where=np.where, zeros_like=np.zeros_like,
                        ones_like=np.ones_like, broadcast_to=np.broadcast_to, sigmoid=sigmoid, softmax=softmax,
                        logsumexp=logsumexp)


# -- sizing a step without running it ------------------------------------------------------------------------

MAX_ITEM_RANK = 4  # one item's dimensions; the exporter's deepest is a conv's (channels, rows, columns)
# A transposed conv adds its kernel's stamps one by one (kh x kw numpy calls, whatever the batch): the
# recipe's kernels are 4 x 4 and 3 x 3, so 16 leaves four times that on a side.
MAX_KERNEL_SIDE = 16
ELEMENTWISE_PASSES = {"silu": 4, "batchnorm": 3}  # numpy passes over the batch: exp, add, divide, negate...


class ShapeError(ValueError):
    """A step that cannot run on what reaches it; the message says why."""


@dataclass(frozen=True)
class Size:
    """What a batch looks like between two steps: one item's shape, and whether it holds integers (class
    indices, which only an embedding turns into numbers)."""

    item: tuple[int, ...]
    integer: bool = False


@dataclass(frozen=True)
class Cost:
    macs: int  # multiply-adds; an elementwise pass counts one per element
    elements: int  # numbers held at once while the step runs: its input, its scratch, its output


def _tensor(shapes: dict, role: str, rank: int, op: str) -> tuple[int, ...]:
    shape = shapes.get(role)
    if shape is None or len(shape) != rank:
        raise ShapeError(f"{op} needs a {rank}-d {role}, not {list(shape) if shape is not None else 'none'}")
    return shape


def _bias(shapes: dict, channels: int, op: str) -> None:
    if "bias" in shapes and tuple(shapes["bias"]) != (channels,):
        raise ShapeError(f"{op}'s bias has shape {list(shapes['bias'])}, not [{channels}]")


def infer(step: dict, shapes: dict[str, tuple], size: Size, batch: int, classes: int) -> tuple[Size, Cost]:
    """The size `step` gives a batch of `batch` items of `size`, and its cost; ShapeError when numpy could not
    run it. `shapes` holds its tensors' shapes by role; `classes` is how many values an integer input takes."""
    out, cost = _infer(step, {role: tuple(shape) for role, shape in shapes.items()}, size, batch, classes)
    if len(out.item) > MAX_ITEM_RANK:
        raise ShapeError(f"{step['op']} makes items of {len(out.item)} dimensions; at most {MAX_ITEM_RANK} are run")
    return out, cost


def _linear(step: dict, shapes: dict, size: Size, batch: int, classes: int) -> tuple[Size, Cost]:
    out, inp = _tensor(shapes, "weight", 2, "linear")
    _bias(shapes, out, "linear")
    if size.item != (inp,):
        raise ShapeError(f"linear takes {inp} numbers per item, not shape {list(size.item)}")
    return Size((out,)), Cost(batch * inp * out + batch * out, batch * inp + 2 * batch * out)


def _elementwise(step: dict, shapes: dict, size: Size, batch: int, classes: int) -> tuple[Size, Cost]:
    n = batch * math.prod(size.item)
    return size, Cost(ELEMENTWISE_PASSES[step["op"]] * n, 3 * n)


def _batchnorm(step: dict, shapes: dict, size: Size, batch: int, classes: int) -> tuple[Size, Cost]:
    if not size.item:
        raise ShapeError("batchnorm needs a channel axis")
    for role in OPS["batchnorm"]:
        if tuple(shapes.get(role, ())) != (size.item[0],):
            raise ShapeError(f"batchnorm's {role} must have shape [{size.item[0]}]")
    return _elementwise(step, shapes, size, batch, classes)


def _conv_settings(step: dict, shapes: dict, size: Size) -> tuple[tuple[int, ...], int, int]:
    """A convolution's weight shape, stride and padding, checked against what reaches it."""
    op = step["op"]
    sides = 1 if op.endswith("1d") else 2
    weight = _tensor(shapes, "weight", 2 + sides, op)
    if len(size.item) != 1 + sides:
        raise ShapeError(f"{op} takes (channels, {'length' if sides == 1 else 'rows, columns'}) per item, not "
                         f"shape {list(size.item)}")
    stride, pad = step["stride"], step["padding"]
    if stride < 1:
        raise ShapeError(f"{op}'s stride is {stride}; it must be 1 or more")
    kernel = weight[2:]
    if max(kernel) > MAX_KERNEL_SIDE:
        raise ShapeError(f"{op}'s kernel is {' x '.join(map(str, kernel))}; at most {MAX_KERNEL_SIDE} on a side is "
                         "run")
    return weight, stride, pad


def _conv2d(step: dict, shapes: dict, size: Size, batch: int, classes: int) -> tuple[Size, Cost]:
    (out_c, in_c, kh, kw), stride, pad = _conv_settings(step, shapes, size)
    channels, rows, cols = size.item
    if in_c != channels:
        raise ShapeError(f"conv2d takes {in_c} channels, not {channels}")
    if kh > rows + 2 * pad or kw > cols + 2 * pad:
        raise ShapeError(f"conv2d's {kh} x {kw} kernel is larger than its padded {rows} x {cols} input")
    _bias(shapes, out_c, "conv2d")
    out = (out_c, (rows + 2 * pad - kh) // stride + 1, (cols + 2 * pad - kw) // stride + 1)
    padded = batch * channels * (rows + 2 * pad) * (cols + 2 * pad)
    windows = batch * out[1] * out[2] * channels * kh * kw  # tensordot copies the sliding windows
    outs = batch * math.prod(out)
    return Size(out), Cost(windows * out_c + outs, batch * math.prod(size.item) + padded + windows + 2 * outs)


def _conv_transpose2d(step: dict, shapes: dict, size: Size, batch: int, classes: int) -> tuple[Size, Cost]:
    (in_c, out_c, kh, kw), stride, pad = _conv_settings(step, shapes, size)
    channels, rows, cols = size.item
    if in_c != channels:
        raise ShapeError(f"conv_transpose2d takes {in_c} channels, not {channels}")
    full = (out_c, (rows - 1) * stride + kh, (cols - 1) * stride + kw)
    out = (out_c, full[1] - 2 * pad, full[2] - 2 * pad)
    if min(out) < 1:
        raise ShapeError(f"conv_transpose2d's padding {pad} leaves nothing of its {full[1]} x {full[2]} output")
    _bias(shapes, out_c, "conv_transpose2d")
    stamps = batch * rows * cols * out_c * kh * kw  # every input pixel's k x k stamp, held at once
    fulls, outs = batch * math.prod(full), batch * math.prod(out)
    return Size(out), Cost(stamps * channels + stamps + outs, batch * math.prod(size.item) + stamps + fulls + outs)


def _conv_transpose1d(step: dict, shapes: dict, size: Size, batch: int, classes: int) -> tuple[Size, Cost]:
    (in_c, out_c, k), stride, pad = _conv_settings(step, shapes, size)
    channels, length = size.item
    if in_c != channels:
        raise ShapeError(f"conv_transpose1d takes {in_c} channels, not {channels}")
    full = (out_c, (length - 1) * stride + k)
    out = (out_c, full[1] - 2 * pad)
    if out[1] < 1:
        raise ShapeError(f"conv_transpose1d's padding {pad} leaves nothing of its {full[1]} outputs")
    _bias(shapes, out_c, "conv_transpose1d")
    stamps = batch * length * out_c * k
    fulls, outs = batch * math.prod(full), batch * math.prod(out)
    return Size(out), Cost(stamps * channels + stamps + outs, batch * math.prod(size.item) + stamps + fulls + outs)


def _embedding(step: dict, shapes: dict, size: Size, batch: int, classes: int) -> tuple[Size, Cost]:
    rows, dim = _tensor(shapes, "weight", 2, "embedding")
    if not size.integer:
        raise ShapeError("embedding takes class indices, not numbers")
    if rows != classes:
        raise ShapeError(f"embedding has {rows} rows, not one per class ({classes})")
    out = (*size.item, dim)
    return Size(out), Cost(batch * math.prod(out), batch * math.prod(size.item) + batch * math.prod(out))


def _reshape(step: dict, shapes: dict, size: Size, batch: int, classes: int) -> tuple[Size, Cost]:
    op, item = step["op"], size.item
    if op == "flatten":
        out = (math.prod(item),)
    elif op == "unflatten":
        out = tuple(step["shape"])
        if math.prod(out) != math.prod(item):
            raise ShapeError(f"unflatten cannot make {list(item)} into {list(out)}")
    elif op == "add_channel":
        out = (1, *item)
    else:
        if not item:
            raise ShapeError("drop_channel needs a channel axis")
        out = item[1:]
    n = batch * math.prod(item)
    return Size(out, size.integer), Cost(n, 2 * n)  # a reshape may copy


# How each operation changes a batch's size, and what it costs; only an embedding and a reshape take indices.
SIZERS = {"linear": _linear, "silu": _elementwise, "conv2d": _conv2d, "conv_transpose2d": _conv_transpose2d,
          "conv_transpose1d": _conv_transpose1d,
          "batchnorm": _batchnorm, "embedding": _embedding, "flatten": _reshape, "unflatten": _reshape,
          "add_channel": _reshape, "drop_channel": _reshape}
TAKE_INDICES = ("embedding", "flatten", "unflatten", "add_channel", "drop_channel")


def _infer(step: dict, shapes: dict[str, tuple], size: Size, batch: int, classes: int) -> tuple[Size, Cost]:
    op = step["op"]
    if op not in SIZERS:
        raise ShapeError(f"unknown operation {op!r:.40}")
    if size.integer and op not in TAKE_INDICES:
        raise ShapeError(f"{op} would run on class indices; an embedding must come first")
    return SIZERS[op](step, shapes, size, batch, classes)
