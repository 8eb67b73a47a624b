"""Resampling in numpy: scipy's `resample_poly` (a Kaiser-windowed sinc) for a whole signal, and the same
filter applied to a signal that arrives in blocks, so that the app needs no scipy (140 MB); tests hold both
to scipy's result."""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np

from ..errors import InputError

# Resampling ratios are rounded to a fraction whose terms are at most MAX_RATIO_TERM. A polyphase
# resampler's filter grows with the terms of the reduced ratio (torchaudio's took 6.5 GB for 8000/44101
# exactly; scipy's is 20 taps per term), while 119/656 costs next to nothing. Every rate in common
# use (8, 11.025, 16, 22.05, 32, 44.1, 48, 88.2, 96, 176.4, 192, 352.8, 384 kHz) reduces to terms within
# the bound and is resampled exactly; any other rate ends up off by less than 1/MAX_RATIO_TERM (0.1 %)
# in speed and pitch, far less than one speaker varies from one take to the next.
MAX_RATIO_TERM = 1000
MAX_RESAMPLE_FACTOR = 64  # keeps both terms >= 1 after rounding, and the filter short
# Outputs whose DC correction `StreamResampler.finish` computes at a time: a few MB of indices.
MEAN_BLOCK_OUTPUTS = 2**16


def resample_ratio(ratio) -> Fraction:
    """`ratio` (new rate / old rate) as the nearest fraction whose terms are both at most MAX_RATIO_TERM."""
    ratio = Fraction(ratio)
    if not 1 / MAX_RESAMPLE_FACTOR <= ratio <= MAX_RESAMPLE_FACTOR:
        raise InputError(f"Cannot resample by a factor of {float(ratio):.4g}; "
                         f"the factor must lie between 1/{MAX_RESAMPLE_FACTOR} and {MAX_RESAMPLE_FACTOR}.")
    if ratio > 1:
        return 1 / (1 / ratio).limit_denominator(MAX_RATIO_TERM)
    return ratio.limit_denominator(MAX_RATIO_TERM)


def resample(wave: np.ndarray, ratio) -> np.ndarray:
    """`wave` (time on the last axis) stretched to `ratio` times as many samples: scipy's `resample_poly`
    (a Kaiser-windowed sinc, 20 taps per term of the ratio, beta 5), computed here in numpy so that the app
    needs no scipy (140 MB); tests hold it to scipy's result.

    `ratio` is the new rate over the old one, e.g. Fraction(8000, 44100); it is rounded by
    `resample_ratio`, which bounds the filter's size and so the cost, whatever the rates; the products
    read the input through strided views, so the memory is the input's twice.
    """
    frac = resample_ratio(ratio)
    if frac == 1:
        return wave
    up, down = frac.numerator, frac.denominator
    x = np.asarray(wave, np.float32)
    bank, half = _polyphase_bank(up, down)
    per_phase = bank.shape[1]
    # Output m is the filter centred on input position (m * down - pre) / up, as resample_poly aligns it.
    pre = down - half % down
    first = (half + pre) // down
    n_out = -(-x.shape[-1] * up // down)
    at = np.arange(first, first + min(up, n_out)) * down - pre
    phase, last = at % up, at // up + per_phase  # last: the newest input an output reads, in the padded input
    windows = np.lib.stride_tricks.sliding_window_view(
        np.pad(x, [(0, 0)] * (x.ndim - 1) + [(per_phase, per_phase)]), per_phase, axis=-1)
    out = np.empty((*x.shape[:-1], n_out), np.float32)
    # Outputs up apart share a phase and read inputs down apart: one matrix-vector product each.
    for r in range(len(at)):
        count = len(range(r, n_out, up))
        start = last[r] - per_phase + 1
        out[..., r::up] = windows[..., start:start + down * (count - 1) + 1:down, :] @ bank[phase[r]]
    return out


@functools.lru_cache(maxsize=16)
def _polyphase_bank(up: int, down: int) -> tuple[np.ndarray, int]:
    """resample_poly's filter for up/down split into its `up` phases, each reversed for a dot product with
    the inputs in time order: bank[phase, -1 - i] = taps[phase + i * up]; and the filter's half length."""
    widest = max(up, down)
    half = 10 * widest
    taps = np.sinc(np.arange(-half, half + 1) / widest) * np.kaiser(2 * half + 1, 5.0)
    taps *= up / taps.sum()
    per_phase = -(-len(taps) // up)
    bank = np.zeros(up * per_phase)
    bank[:len(taps)] = taps
    bank = bank.reshape(per_phase, up).T[:, ::-1].astype(np.float32)
    bank.setflags(write=False)  # shared by every call with this ratio
    return bank, half


class StreamResampler:
    """`resample` of a 1-D signal that arrives in blocks, with the same result, holding only the inputs that
    outputs still to come will read.

    Output m is the dot product of one phase of the filter with the `taps` inputs of its window (in the
    input padded with `taps` zeros each side); once a block arrives, every output whose window it
    completes is computed, and the inputs before the next window are let go. `finish` removes a DC offset
    afterwards, exactly: resampling is linear, so resample(x - mean) = resample(x) - mean * resample(ones),
    and resample(ones) is each output's sum of the taps that fall on the signal rather than the padding.
    """

    def __init__(self, ratio, most: int):
        frac = resample_ratio(ratio)
        self.up, self.down, self.most = frac.numerator, frac.denominator, most
        self.out = np.empty(-(-most * self.up // self.down), np.float32)
        self.fed = self.done = 0
        self.bank = None
        if frac != 1:
            self.bank, half = _polyphase_bank(self.up, self.down)
            self.taps = self.bank.shape[1]
            # resample_poly's alignment, as `resample` has it: output m's filter centre is at input
            # ((first + m) * down - pre) / up.
            self.pre = self.down - half % self.down
            self.first = (half + self.pre) // self.down
            self.held = np.zeros(self.taps, np.float32)  # the padded input, from position `base` on
            self.base = 0

    def _window(self, m):
        """(first padded input position, filter phase) of output m; m may be an int or an int array."""
        at = (self.first + m) * self.down - self.pre
        return at // self.up + 1, at % self.up

    def feed(self, x: np.ndarray) -> None:
        if self.fed + len(x) > self.most:
            raise ValueError(f"the resampler was sized for {self.most} samples, not {self.fed + len(x)}")
        self.fed += len(x)
        if self.bank is None:
            self.out[self.done:self.done + len(x)] = x
            self.done += len(x)
            return
        self._advance(np.concatenate([self.held, np.asarray(x, np.float32)]), len(self.out))

    def _advance(self, held: np.ndarray, limit: int) -> None:
        up, down, taps = self.up, self.down, self.taps
        end = self.base + len(held)
        # The last output whose window [start, start + taps) lies within what is held.
        stop = min(limit, ((end - taps) * up - 1 + self.pre) // down - self.first + 1)
        if stop > self.done:
            if down < taps:  # see `_split_bank`: the inputs as rows of `down`, zeros after the last
                rows = np.concatenate([held, np.zeros(down, np.float32)])
            else:
                windows = np.lib.stride_tricks.sliding_window_view(held, taps)
            # Outputs up apart share a phase and read inputs down apart: matrix-vector products.
            for m in range(self.done, min(self.done + up, stop)):
                start, phase = self._window(m)
                count = len(range(m, stop, up))
                start -= self.base
                if down < taps:
                    split = self._split_bank[phase]
                    grid = rows[start:start + down * (count + len(split) - 1)].reshape(-1, down)
                    acc = grid[:count] @ split[0]
                    for i in range(1, len(split)):
                        acc += grid[i:i + count] @ split[i]
                    self.out[m:stop:up] = acc
                else:
                    self.out[m:stop:up] = windows[start:start + down * (count - 1) + 1:down] @ self.bank[phase]
            self.done = stop
        drop = min(int(self._window(self.done)[0]) - self.base, len(held))
        self.held, self.base = held[drop:], self.base + drop

    @functools.cached_property
    def _split_bank(self) -> np.ndarray:
        """(up, q, down): each phase of the filter, zero-padded to q * down taps, in rows of `down`.

        When a filter is longer than the step between outputs (downsampling by at most 20 or so), the
        windows overlap, and a matrix of overlapping rows is multiplied by numpy's own loop, about ten times
        slower than BLAS. Split into rows of `down`, the inputs are a plain (n, down) matrix, and each
        output is the sum of q products of consecutive rows of it with the q pieces of the filter.
        """
        q = -(-self.taps // self.down)
        split = np.zeros((self.up, q * self.down), np.float32)
        split[:, :self.taps] = self.bank
        return split.reshape(self.up, q, self.down)

    def finish(self, mean: float = 0.0) -> np.ndarray:
        """Every output of the samples fed (mean subtracted from the input first), as float32."""
        n_out = -(-self.fed * self.up // self.down)
        if self.bank is None:
            return self.out[:n_out] - np.float32(mean)
        self._advance(np.concatenate([self.held, np.zeros(self.taps, np.float32)]), n_out)
        out = self.out[:n_out]
        if mean:
            sums = np.zeros((self.up, self.taps + 1))
            np.cumsum(self.bank, axis=1, dtype=np.float64, out=sums[:, 1:])
            step = MEAN_BLOCK_OUTPUTS
            for lo in range(0, n_out, step):
                start, phase = self._window(np.arange(lo, min(lo + step, n_out), dtype=np.int64))
                before = np.clip(self.taps - start, 0, self.taps)  # taps that fall before the signal begins
                within = np.clip(self.taps + self.fed - start, 0, self.taps)  # taps before it ends
                out[lo:lo + len(start)] -= (mean * (sums[phase, within] - sums[phase, before])).astype(np.float32)
        return out

