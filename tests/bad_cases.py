"""The odd inputs every entry point must survive: canvases, recordings and API arguments.

They live here, apart from the tests, so that a child process can run all of them without importing the
app (see `run_all`): memory is measured as the process's peak RSS, which counts torch's allocations.

    python -m tests.bad_cases          # a JSON line per case: outcome, seconds, peak RSS before and after it
    python -m tests.bad_cases NAME...  # only the cases named
"""

from __future__ import annotations

import io
import json
import resource
import struct
import sys
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
import torchaudio
from PIL import Image

import mvae
from mvae import api_checks as arguments
from tests.helpers import tone

MP3 = "MP3" in sf.available_formats()
MAX_RSS_MB = 1536  # no case may take the process past 1.5 GB


# -- inputs ------------------------------------------------------------------------------------------------
def ring(size: int = 280, alpha: bool = False) -> np.ndarray:
    """A digit-like ring, off-centre: white ink on an opaque black canvas, or black ink in alpha only."""
    yy, xx = np.ogrid[:size, :size]
    distance = np.hypot(yy - 0.6 * size, xx - 0.45 * size)  # in place from here: the 4000 px case stays small
    distance -= 0.2 * size
    ink = (np.abs(distance, out=distance) < 0.03 * size).astype(np.uint8) * np.uint8(255)
    rgba = np.zeros((size, size, 4), np.uint8)
    if alpha:
        rgba[..., 3] = ink  # a transparent canvas with a black stroke: the ink is only in alpha
    else:
        rgba[..., :3] = ink[..., None]
        rgba[..., 3] = 255
    return rgba


def dot(size: int = 280, width: int = 3) -> np.ndarray:
    canvas = np.zeros((size, size, 4), np.uint8)
    canvas[..., 3] = 255
    canvas[140:140 + width, 100:100 + width, :3] = 255
    return canvas


def inked(size: int = 280, margin: int = 0) -> np.ndarray:
    """A transparent canvas inked all over (but a margin): black strokes everywhere."""
    canvas = np.zeros((size, size, 4), np.uint8)
    canvas[margin:size - margin, margin:size - margin, 3] = 255
    return canvas


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def png_bomb() -> bytes:
    """A PNG of a few bytes whose header claims 30000×30000 pixels, which decoders must not allocate."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)  # 8-bit grey
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 30001)) \
        + chunk(b"IEND", b"")


def big_png(side: int = 12_000) -> bytes:
    """A real grey PNG of side x side black pixels (144 M for 12,000 px) that compresses to about 150 KB:
    decoding it whole costs seconds and gigabytes, so it must be refused from its size."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row, packer = bytes(side + 1), zlib.compressobj(9)  # each row: filter byte 0, then the pixels
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def lazily_opened(data: bytes) -> Image.Image:
    """A PIL image as `Image.open` gives it: the header read, no pixel decoded yet."""
    with warnings.catch_warnings():  # PIL warns of a possible bomb past 89 M pixels; refusing it is the test
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data))


# Every PIL mode a caller may hand over, and the mode of the ring it is converted from: each must read as the
# ring does. La (premultiplied alpha) cannot be converted to from RGB(A), so it comes from LA.
PIL_MODES = {"1": "RGBA", "L": "RGBA", "LA": "RGBA", "La": "LA", "P": "RGBA", "PA": "RGBA", "RGB": "RGBA",
             "RGBA": "RGBA", "RGBa": "RGBA", "RGBX": "RGBA", "CMYK": "RGBA", "YCbCr": "RGBA", "LAB": "RGBA",
             "HSV": "RGBA", "I": "RGBA", "I;16": "RGBA", "I;16B": "RGBA", "F": "RGBA"}


def pil_in(mode: str) -> Image.Image:
    source = Image.fromarray(ring())
    return (source.convert("LA") if PIL_MODES[mode] == "LA" else source).convert(mode)


def palette_with_transparency() -> Image.Image:
    """A palette image whose ink is only in its transparency: index 0 transparent, 1 opaque black."""
    image = Image.fromarray((ring(alpha=True)[..., 3] > 0).astype(np.uint8), "L").convert("P")
    image.putpalette([0, 0, 0] * 256)
    image.info["transparency"] = 0
    return image


def encode(wave: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def resample(wave: np.ndarray, rate: int, to: int) -> np.ndarray:
    return torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(wave, np.float32)), rate, to).numpy()


def fourier_resample(wave: np.ndarray, rate: int, to: int) -> np.ndarray:
    """Band-limited resampling by the FFT, whatever the ratio: an odd rate that no polyphase filter is
    asked to make, so the front end's resampler is checked against something independent of it."""
    n = len(wave)
    m = round(n * to / rate)
    return (np.fft.irfft(np.fft.rfft(np.asarray(wave, np.float64)), m) * (m / n)).astype(np.float32)


def variants(wave: np.ndarray, rate: int) -> dict[str, bytes]:
    """The same spoken digit in every format and condition the matrix needs that should still work."""
    peak = float(np.abs(wave).max())
    w44 = resample(wave, rate, 44100)
    out = {
        "192 kHz WAV": encode(resample(wave, rate, 192000), 192000, subtype="PCM_16"),
        "stereo 44.1 kHz WAV": encode(np.stack([w44, 0.8 * w44], 1), 44100, subtype="PCM_16"),
        "44,101 Hz WAV": encode(fourier_resample(wave, rate, 44101), 44101, subtype="PCM_16"),
        "8-bit WAV": encode(wave, rate, subtype="PCM_U8"),
        "24-bit WAV": encode(wave, rate, subtype="PCM_24"),
        "float32 WAV": encode(wave, rate, subtype="FLOAT"),
        "flac": encode(wave, rate, "FLAC"),
        "ogg": encode(wave, rate, "OGG", "VORBIS"),
        "clipping": encode(np.clip(wave * 2 / peak, -1, 1), rate, subtype="PCM_16"),
        "DC offset": encode(0.5 * wave / peak + 0.3, rate, subtype="PCM_16"),
    }
    if MP3:
        out["mp3"] = encode(resample(wave, rate, 16000), 16000, "MP3")
    return out


def reference_tone() -> np.ndarray:
    return tone(3, np.random.default_rng(0))


def ten_minute_wav() -> bytes:
    wave = np.zeros(8000 * 600, np.int16)
    wave[:4800] = (reference_tone() * 30000).astype(np.int16)
    return encode(wave, 8000, subtype="PCM_16")


def truncated_wav() -> bytes:
    data = encode(reference_tone(), 8000, subtype="PCM_16")
    return data[: len(data) // 2]  # the header still promises every frame


def random_bytes() -> bytes:
    return np.random.default_rng(1).integers(0, 256, 8000, dtype=np.uint8).tobytes()


def click() -> bytes:
    wave = np.zeros(8000, np.float32)
    wave[4000:4010] = 0.9
    return encode(wave, 8000, subtype="PCM_16")


def nan_wav() -> bytes:
    wave = reference_tone().copy()
    wave[500] = np.nan
    return encode(wave, 8000, subtype="FLOAT")


# -- the matrix ----------------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    inputs: Callable[[], dict]
    refused: str | None = None  # a regex the InputError must match; None: a prediction must come back
    like: Callable[[], dict] | None = None  # what the model should see instead: the same input, done right
    tolerance: float = 0.05  # mean absolute difference allowed from `like`'s model input


def canvas(value):
    return lambda: {"kannada": value() if callable(value) else value}


def speech(value):
    return lambda: {"speech": value() if callable(value) else value}


EMPTY = r"canvas is empty \(or one colour all over\): draw a single digit"
SHAPE = r"An image must be H x W \(grey\), H x W x 3 \(RGB\) or H x W x 4 \(RGBA\); got shape"
NOT_FINITE = "NaN or infinite values; pixels must be finite numbers"
NOT_AUDIO = r"not readable audio; please give a WAV, FLAC or OGG file"
REF_WAV = lambda: encode(reference_tone(), 8000, subtype="PCM_16")  # noqa: E731
TONE_VARIANTS = variants(reference_tone(), 8000)
# Lossy changes move the log-mel more; None: only the voiced span is compared here, and the trained
# model below judges whether the digit survives.
LOSSY = {"8-bit WAV": None, "clipping": None, "ogg": 0.5, "mp3": 0.5}

CASES = [
    # canvases
    Case("empty transparent canvas", canvas(np.zeros((280, 280, 4), np.uint8)), EMPTY),
    Case("empty black canvas", canvas(lambda: np.dstack([np.zeros((280, 280, 3), np.uint8),
                                                         np.full((280, 280), 255, np.uint8)])), EMPTY),
    Case("fully inked canvas", canvas(inked), EMPTY),
    Case("fully inked white canvas", canvas(np.full((280, 280, 4), 255, np.uint8)), EMPTY),
    Case("inked all but a margin", canvas(lambda: inked(margin=3)), "whole canvas is ink; clear it"),
    Case("single dot", canvas(dot)),
    Case("single pixel", canvas(lambda: dot(width=1))),
    Case("1x1 canvas", canvas(np.zeros((1, 1, 4), np.uint8)), EMPTY),
    Case("1x1 inked pixel", canvas(np.full((1, 1), 255, np.uint8)), EMPTY),
    Case("0x0 canvas", canvas(np.zeros((0, 0), np.uint8)), r"image is empty \(shape"),
    Case("4000x4000 canvas", canvas(lambda: ring(4000)), like=canvas(ring)),
    Case("5000x5000 canvas", canvas(lambda: np.zeros((5000, 5000), np.uint8)), "please use one at most 4096 px a side"),
    Case("NaN floats", canvas(lambda: np.where(ring()[..., 0] > 0, np.nan, 0.0)), NOT_FINITE),
    Case("inf floats", canvas(lambda: np.where(ring()[..., 0] > 0, np.inf, 0.0).astype(np.float32)), NOT_FINITE),
    Case("-inf floats", canvas(lambda: np.where(ring()[..., 0] > 0, -np.inf, 0.0)), NOT_FINITE),
    Case("1-D array", canvas(np.zeros(784, np.uint8)), SHAPE),
    Case("4-D array", canvas(np.zeros((1, 28, 28, 4), np.uint8)), SHAPE),
    Case("two channels", canvas(np.zeros((28, 28, 2), np.uint8)), SHAPE),
    Case("a scalar", canvas(np.array(7.0)), SHAPE),
    Case("bool canvas", canvas(lambda: ring()[..., 0] > 0), like=canvas(ring)),
    Case("ink only in alpha", canvas(lambda: ring(alpha=True)), like=canvas(ring)),
    Case("complex pixels", canvas(lambda: ring()[..., 0].astype(complex)), "pixels must be numbers, not complex"),
    Case("PNG bytes", canvas(lambda: png(ring(alpha=True))), like=canvas(ring)),
    Case("PNG decompression bomb", canvas(png_bomb), "far too large; please use one at most 4096 px"),
    Case("truncated PNG", canvas(lambda: png(ring())[:100]), "not a readable image; please give a PNG or JPEG"),
    # recordings
    Case("silence", speech(lambda: encode(np.zeros(16000, np.float32), 8000, subtype="PCM_16")),
         "silent: check that the microphone is on"),
    Case("44-byte header-only WAV", speech(lambda: encode(np.zeros(0, np.float32), 44100, subtype="PCM_16")),
         "no recording: the audio file holds no samples"),
    Case("10-minute WAV", speech(ten_minute_wav), r"600\.0 s long; please keep it under 60 s"),
    *[Case(name, speech(data), like=speech(REF_WAV), tolerance=LOSSY.get(name, 0.05))
      for name, data in TONE_VARIANTS.items()],
    Case("truncated WAV", speech(truncated_wav), r"WAV file is truncated: it holds only 50% of its audio"),
    Case("WAV cut inside its header", speech(lambda: REF_WAV()[:30]), NOT_AUDIO),
    Case("random bytes", speech(random_bytes), NOT_AUDIO),
    Case("a PNG renamed .wav", speech(lambda: png(ring())), NOT_AUDIO),
    Case("NaN samples", speech(nan_wav), "NaN or infinite samples"),
    Case("2 kHz WAV", speech(lambda: encode(reference_tone()[::4], 2000, subtype="PCM_16")),
         "record at 4000 Hz or more"),
    Case("nine channels", speech(lambda: encode(np.stack([reference_tone()] * 9, 1), 8000, subtype="PCM_16")),
         "9 channels; please use mono or stereo"),
    Case("a click", speech(click), "louder than the background; please speak the digit clearly"),
    Case("10 ms recording", speech(lambda: encode(reference_tone()[800:880], 8000, subtype="PCM_16")),
         "only 10 ms long; please record at least"),
    Case("sample rate as text", speech(lambda: (reference_tone(), "8000")), "whole number of samples per second"),
    Case("a file name", speech("digit.wav"), "WAV/FLAC/OGG bytes or a \\(waveform, sample_rate\\) tuple"),
]


# -- rates that are not a small fraction of 8 kHz, and integers wider than the data -----------------------------
ODD_RATES = (4001, 8001, 22051, 44101, 96001, 383999)


def at_rate(rate: int) -> bytes:
    """The reference tone sampled at `rate` from its formula, so that no resampler has to make it."""
    return encode(tone(3, np.random.default_rng(0), rate=rate), rate, subtype="PCM_16")


def long_at_rate(rate: int, seconds: float = 59.0) -> bytes:
    """Just under a minute, the longest recording accepted, at `rate`: the tone, then digital silence."""
    wave = np.zeros(int(seconds * rate), np.int16)
    voiced = tone(3, np.random.default_rng(0), rate=rate)
    wave[:len(voiced)] = np.round(voiced * 30000).astype(np.int16)
    return encode(wave, rate, subtype="PCM_16")


def pcm(dtype, full_scale: int = 2**15 - 1) -> np.ndarray:
    return np.round(reference_tone() * full_scale).astype(dtype)


ODD_RATE_CASES = {f"WAV at {rate} Hz" for rate in ODD_RATES} | {"59 s WAV at 383999 Hz"}
CASES += [
    Case("59 s WAV at 383999 Hz", speech(lambda: long_at_rate(383_999)), like=speech(REF_WAV)),
    # Below 8 kHz the recording has nothing above its own Nyquist frequency, which the reference has.
    *[Case(f"WAV at {rate} Hz", speech(lambda rate=rate: at_rate(rate)), like=speech(REF_WAV),
           tolerance=0.05 if rate > 8000 else 0.1) for rate in ODD_RATES],
    Case("stereo WAV at 44101 Hz",
         speech(lambda: encode(np.stack([tone(3, np.random.default_rng(0), rate=44101)] * 2, 1),
                                                         44101, subtype="PCM_16")), like=speech(REF_WAV)),
    Case("int32 waveform of 16-bit samples", speech(lambda: (pcm(np.int32), 8000)), like=speech(REF_WAV)),
    Case("int64 waveform of 16-bit samples", speech(lambda: (pcm(np.int64), 8000)), like=speech(REF_WAV)),
    Case("waveform as a list of ints", speech(lambda: (pcm(np.int16).tolist(), 8000)), like=speech(REF_WAV)),
    Case("int32 waveform, full scale", speech(lambda: (pcm(np.int32, 2**31 - 1), 8000)), like=speech(REF_WAV)),
    Case("int64 waveform of 24-bit samples", speech(lambda: (pcm(np.int64, 2**23 - 1), 8000)), like=speech(REF_WAV)),
    Case("uint16 waveform", speech(lambda: ((pcm(np.int32) + 2**15).astype(np.uint16), 8000)), like=speech(REF_WAV)),
    *[Case(f"{np.dtype(t).name} transparent canvas", canvas(lambda t=t: ring(alpha=True).astype(t)), like=canvas(ring))
      for t in (np.int16, np.int32, np.int64, np.uint16, np.uint32, np.uint64)],
    Case("int32 opaque canvas", canvas(lambda: ring().astype(np.int32)), like=canvas(ring)),
    Case("16-bit grey image", canvas(lambda: ring()[..., 0].astype(np.uint16) * 257), like=canvas(ring)),
    Case("non-string input names", lambda: {1: ring(), "farsi": ring()},
         r"Input names must be strings such as 'farsi', 'kannada' or 'speech'; got 1 \(int\)"),
    Case("inputs as a list", lambda: [ring()], r"predict takes a dict such as \{'kannada': image\}"),
    # array subclasses, views and dtypes that are checked from their header, before any conversion
    Case("np.matrix canvas", canvas(lambda: np.matrix(ring()[..., 0])), like=canvas(ring)),
    Case("masked-array canvas", canvas(lambda: np.ma.masked_array(ring()[..., 0], mask=ring()[..., 0] == 0)),
         r"not a masked one; fill the masked pixels first"),
    Case("broadcast 100000x100000 canvas", canvas(lambda: np.broadcast_to(np.uint8(255), (100_000, 100_000))),
         "100000x100000 px; please use one at most 4096 px a side"),
    Case("broadcast 100000x100000 bool canvas", canvas(lambda: np.broadcast_to(True, (100_000, 100_000))),
         "100000x100000 px; please use one at most 4096 px a side"),
    Case("timedelta canvas", canvas(lambda: ring()[..., 0].astype("m8[s]")), "pixels must be numbers, not timedelta64"),
    Case("negative-stride canvas", canvas(lambda: ring()[::-1, ::-1][::-1, ::-1]), like=canvas(ring)),
    # PIL images: sized from the header, read in every mode
    Case("lazily opened 12000x12000 PNG", canvas(lambda: lazily_opened(big_png())),
         "12000x12000 px; please use one at most 4096 px a side"),
    Case("12000x12000 PNG bytes", canvas(big_png), "12000x12000 px; please use one at most 4096 px a side"),
    *[Case(f"PIL image in mode {mode}", canvas(lambda mode=mode: pil_in(mode)), like=canvas(ring))
      for mode in PIL_MODES],
    Case("PIL palette image with transparency", canvas(palette_with_transparency), like=canvas(ring)),
    Case("closed PIL image", canvas(lambda: (lambda im: (im.close(), im)[1])(lazily_opened(png(ring())))),
         r"cannot be read.*Please give a PNG or JPEG file"),
    Case("speech as a float", speech(3.5), r"WAV/FLAC/OGG bytes or a \(waveform, sample_rate\) tuple, not float"),
]


# -- the rest of the public API ----------------------------------------------------------------------------------
@dataclass
class Call:
    name: str
    call: Callable[[mvae.Pipeline], object]
    refused: str | None = None  # a regex the InputError must match; None: a result must come back


def zeros(extra: int = 0, value: float = 0.0):
    """A latent of the pipeline's size (plus `extra` numbers), every entry `value`."""
    return lambda p: np.full(p.latent_dim + extra, value, np.float32)


def deep_list(depth: int) -> list:
    """[[[...[0.0]...]]], `depth` lists deep: numpy's own walk of it recurses past Python's limit."""
    nested: list = [0.0]
    for _ in range(depth - 1):
        nested = [nested]
    return nested


NAN, INF = float("nan"), float("inf")
N_RANGE = f"number of samples must be a whole number from 1 to {arguments.MAX_SAMPLES}"
STEPS = (f"number of steps must be a whole number from {arguments.MIN_INTERPOLATE_STEPS} "
         f"to {arguments.MAX_INTERPOLATE_STEPS}")
TEMPERATURE = f"temperature must be a number from 0 to {arguments.MAX_TEMPERATURE:g}"
LABEL = "digit label must be a whole number from 0 to 9"
SEED = r"seed must be a whole number from 0 to 2\*\*128 - 1"
MANY_VALUES = np.linspace(-3, 3, 200_000)

CALLS = [
    Call("generate n=nan", lambda p: p.generate(3, n=NAN), f"{N_RANGE}, not nan"),
    Call("generate n=0", lambda p: p.generate(3, n=0), f"{N_RANGE}, not 0"),
    Call("generate n=257", lambda p: p.generate(3, n=257), f"{N_RANGE}, not 257"),
    Call("generate n=2.5", lambda p: p.generate(3, n=2.5), f"{N_RANGE}, not 2.5"),
    Call("generate n='4'", lambda p: p.generate(3, n="4"), rf"{N_RANGE}, not '4' \(str\)"),
    Call("generate n=10**9", lambda p: p.generate(3, n=10**9), N_RANGE),
    Call("generate seed=-1", lambda p: p.generate(3, seed=-1), f"{SEED}, not -1"),
    Call("generate seed=1.5", lambda p: p.generate(3, seed=1.5), SEED),
    Call("generate seed='x'", lambda p: p.generate(3, seed="x"), SEED),
    Call("generate seed=2**200", lambda p: p.generate(3, seed=2**200), SEED),
    Call("generate temperature=nan", lambda p: p.generate(3, temperature=NAN), f"{TEMPERATURE}, not nan"),
    Call("generate temperature=inf", lambda p: p.generate(3, temperature=INF), f"{TEMPERATURE}, not inf"),
    Call("generate temperature=-1", lambda p: p.generate(3, temperature=-1), TEMPERATURE),
    Call("generate temperature='hot'", lambda p: p.generate(3, temperature="hot"), TEMPERATURE),
    Call("generate temperature=10**400", lambda p: p.generate(3, temperature=10**400), f"{TEMPERATURE}, not inf"),
    Call("generate label=10", lambda p: p.generate(10), f"{LABEL}, not 10"),
    Call("generate label=-1", lambda p: p.generate(-1), f"{LABEL}, not -1"),
    Call("generate label=None", lambda p: p.generate(None), f"{LABEL}, not None"),
    Call("generate label=True", lambda p: p.generate(True), LABEL),
    Call("generate label='3'", lambda p: p.generate("3"), LABEL),
    Call("label_posterior 12", lambda p: p.label_posterior(12), LABEL),
    Call("traverse a latent one too long", lambda p: p.traverse(zeros(1)(p), [0], [0.0]),
         r"latent must hold \d+ numbers, one per latent dimension; got shape"),
    Call("traverse a latent one too short", lambda p: p.traverse(zeros(-1)(p), [0], [0.0]), "latent must hold"),
    Call("traverse a NaN latent", lambda p: p.traverse(zeros(value=NAN)(p), [0], [0.0]),
         "NaN or infinite values in the latent; give finite numbers"),
    Call("traverse a huge latent", lambda p: p.traverse(zeros(value=1e9)(p), [0], [0.0]),
         r"keep them within ±1000 \(the prior's standard deviation is 1\)"),
    Call("traverse a text latent", lambda p: p.traverse("zeros", [0], [0.0]), "must hold real numbers"),
    Call("traverse 200k values", lambda p: p.traverse(zeros()(p), [0], MANY_VALUES),
         f"traversal values must be a list of 1 to {arguments.MAX_TRAVERSE_VALUES} numbers"),
    Call("traverse no values", lambda p: p.traverse(zeros()(p), [0], []), "a list of 1 to"),
    Call("traverse NaN values", lambda p: p.traverse(zeros()(p), [0], [0.0, NAN]),
         "NaN or infinite values in the traversal values"),
    Call("traverse inf values", lambda p: p.traverse(zeros()(p), [0], [INF]), "NaN or infinite values"),
    Call("traverse no dims", lambda p: p.traverse(zeros()(p), [], [0.0]), r"Give from 1 to \d+ latent dimensions"),
    Call("traverse a dim past the end", lambda p: p.traverse(zeros()(p), [p.latent_dim], [0.0]),
         r"latent dimension must be a whole number from 0 to \d+"),
    Call("traverse a negative dim", lambda p: p.traverse(zeros()(p), [-1], [0.0]), "latent dimension must be"),
    Call("traverse a fractional dim", lambda p: p.traverse(zeros()(p), [0.5], [0.0]), "latent dimension must be"),
    Call("traverse dims as text", lambda p: p.traverse(zeros()(p), "0", [0.0]), r"list of indices .* such as \[0, 3\]"),
    Call("traverse more dims than the latent has", lambda p: p.traverse(zeros()(p), [0] * (p.latent_dim + 1), [0.0]),
         "latent dimensions to traverse"),
    Call("traverse too many latents", lambda p: p.traverse(zeros()(p), range(8), np.linspace(-3, 3, 64)),
         f"8 x 64 = 512, more than {arguments.MAX_SAMPLES}; use fewer dimensions or values"),
    Call("interpolate steps=-1", lambda p: p.interpolate(zeros()(p), zeros()(p), steps=-1), f"{STEPS}, not -1"),
    Call("interpolate steps=1", lambda p: p.interpolate(zeros()(p), zeros()(p), steps=1), f"{STEPS}, not 1"),
    Call("interpolate steps=200000", lambda p: p.interpolate(zeros()(p), zeros()(p), steps=200_000), STEPS),
    Call("interpolate steps=nan", lambda p: p.interpolate(zeros()(p), zeros()(p), steps=NAN), STEPS),
    Call("interpolate a short start", lambda p: p.interpolate(zeros(-1)(p), zeros()(p)), "start latent must hold"),
    Call("interpolate a NaN end", lambda p: p.interpolate(zeros()(p), zeros(value=NAN)(p)),
         "NaN or infinite values in the end latent"),
    Call("decode 257 latents", lambda p: p.decode(np.zeros((257, p.latent_dim))),
         f"Decode at most {arguments.MAX_SAMPLES} latents at once, not 257; split them into batches"),
    Call("decode a latent of the wrong size", lambda p: p.decode(zeros(1)(p)),
         r"Latents must be \(\d+,\) or \(N, \d+\)"),
    Call("decode no latents", lambda p: p.decode(np.zeros((0, p.latent_dim))), "Latents must be"),
    Call("decode a ragged list", lambda p: p.decode([[0.0] * p.latent_dim, [0.0]]), "every row the same length"),
    Call("decode inf", lambda p: p.decode(zeros(value=INF)(p)), "NaN or infinite values in the latents"),
    # sizes are read from shapes and lengths, before anything is converted
    Call("decode a broadcast 10^8 x F view", lambda p: p.decode(np.broadcast_to(np.float32(0), (10**8, p.latent_dim))),
         f"Decode at most {arguments.MAX_SAMPLES} latents at once, not 100000000"),
    Call("decode a list of 10^6 rows", lambda p: p.decode([[0.0] * p.latent_dim] * 10**6),
         f"Decode at most {arguments.MAX_SAMPLES} latents of \\d+ numbers at once"),
    Call("decode 16384 x 16384 empty lists", lambda p: p.decode([[[]] * 2**14] * 2**14),
         f"Decode at most {arguments.MAX_SAMPLES} latents of \\d+ numbers at once"),
    Call("decode a 20000-deep nested list", lambda p: p.decode(deep_list(20_000)), "lists nested more than 3 deep"),
    Call("decode an np.matrix", lambda p: p.decode(np.matrix(np.zeros((2, p.latent_dim))))),
    Call("decode a masked array", lambda p: p.decode(np.ma.masked_array(np.zeros(p.latent_dim))),
         "not a masked one; fill the masked entries first"),
    Call("traverse a broadcast 10^9-value view", lambda p: p.traverse(zeros()(p), [0], np.broadcast_to(0.0, (10**9,))),
         r"traversal values must be a list of 1 to \d+ numbers; got shape \(1000000000,\)"),
    Call("traverse range(10**9) values", lambda p: p.traverse(zeros()(p), [0], range(10**9)),
         r"traversal values must be a list of 1 to \d+ numbers; got more"),
    Call("traverse dims as a broadcast 10^9 view",
         lambda p: p.traverse(zeros()(p), np.broadcast_to(0, (10**9,)), [0.0]),
         r"Give from 1 to \d+ latent dimensions to traverse, not 1000000000"),
    Call("traverse dims as range(10**20)", lambda p: p.traverse(zeros()(p), range(10**20), [0.0]), "no usable length"),
    Call("interpolate from a broadcast 10^9 view", lambda p: p.interpolate(np.broadcast_to(0.0, (10**9,)), zeros()(p)),
         r"start latent must hold \d+ numbers, one per latent dimension; got shape \(1000000000,\)"),
    Call("restyle keep=None", lambda p: p.restyle(zeros()(p), keep=None, n=2)),
    Call("restyle keep='farsi'", lambda p: p.restyle(zeros()(p), keep="farsi", n=2)),
    Call("restyle keep=3", lambda p: p.restyle(zeros()(p), keep=3), r"keep must be a list of modality names .* not 3"),
    Call("restyle keep=[['farsi']]", lambda p: p.restyle(zeros()(p), keep=[["farsi"]]),
         r"keep must be a list of modality names .* not \['farsi'\] \(list\)"),
    Call("restyle keep=['handwriting']", lambda p: p.restyle(zeros()(p), keep=["handwriting"]),
         r"keep names modalities this model does not have: \['handwriting'\]"),
    Call("restyle a broadcast 10^9 latent", lambda p: p.restyle(np.broadcast_to(0.0, (10**9,))),
         r"latent must hold \d+ numbers"),
    Call("dimension_effects target=['farsi']", lambda p: p.dimension_effects(zeros()(p), ["farsi"]),
         r"Unknown modality \['farsi'\]"),
    Call("dimension_effects a broadcast 10^9 latent", lambda p: p.dimension_effects(np.broadcast_to(0.0, (10**9,)),
                                                                                     "farsi"), "latent must hold"),
    # the largest calls the bounds allow
    Call("generate 256", lambda p: p.generate(3, n=arguments.MAX_SAMPLES, temperature=arguments.MAX_TEMPERATURE,
                                                seed=2**128 - 1)),
    Call("generate n=2.0", lambda p: p.generate(np.int64(3), n=2.0, seed=np.uint64(7))),
    Call("traverse 4 dims x 64 values", lambda p: p.traverse(zeros()(p), np.arange(4), np.linspace(-3, 3, 64))),
    Call("interpolate 64 steps", lambda p: p.interpolate(zeros(value=-3)(p), zeros(value=3)(p), steps=64)),
    Call("decode 256 latents", lambda p: p.decode(np.zeros((arguments.MAX_SAMPLES, p.latent_dim)))),
]


# -- one process, every case -------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """The peak resident set of this process so far: what the OS saw, torch's buffers included."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _measure(name: str, work: Callable[[], object]) -> dict:
    built = peak_rss_mb()  # building a case's input counts apart from handling it
    started, message = time.perf_counter(), ""
    try:
        work()
        outcome = "result"
    except mvae.InputError as exc:
        outcome, message = "InputError", str(exc)
    except Exception as exc:  # noqa: BLE001 - reported, and the test fails on it
        outcome = f"{type(exc).__name__}: {exc}"
    return {"case": name, "outcome": outcome, "message": message, "seconds": round(time.perf_counter() - started, 3),
            "built_rss_mb": round(built), "peak_rss_mb": round(peak_rss_mb())}


def run_all(pipe: mvae.Pipeline, only: set[str] | None = None):
    """Every predict case, then every API call, each measured once the inputs are built.

    The odd sample rates go first: the peak is the process's, so each of them then shows its own cost
    rather than the 4000 px canvas's.
    """
    odd_rates = [c for c in CASES if c.name in ODD_RATE_CASES]
    for case in odd_rates + [c for c in CASES if c not in odd_rates]:
        if not only or case.name in only:
            inputs = case.inputs()
            yield _measure(case.name, lambda inputs=inputs: pipe.predict(inputs))
    for call in CALLS:
        if not only or call.name in only:
            yield _measure(call.name, lambda call=call: call.call(pipe))


def main(names: list[str]) -> None:
    """Every case, or only those named on the command line (run one per process to see each one's own peak)."""
    torch.set_num_threads(1)  # as the app's server serves one prediction per session thread
    pipe = mvae.load()
    pipe.predict({"speech": REF_WAV()})  # the first prediction pays for lazy initialisation
    print(json.dumps({"case": "(imports, model, one prediction)", "outcome": "result", "seconds": 0.0,
                      "peak_rss_mb": round(peak_rss_mb())}), flush=True)
    known = {c.name for c in CASES} | {c.name for c in CALLS}
    if unknown := set(names) - known:
        raise SystemExit(f"no such case: {sorted(unknown)}")
    for row in run_all(pipe, set(names)):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
