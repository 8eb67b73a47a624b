"""The error contract for speech, hunted by Hypothesis: `Pipeline.predict({"speech": ...})` of the shipped model
(as the app runs it: `mvae.load()`, the lean numpy runtime) and the front end's own calls, given generated
hostile audio, either answer or raise `mvae.InputError`, within the time and memory bounds of
tests/contract.py (5 s, 1.5 GB traced). The model is sound, so a `CheckpointError` here would blame it for
the caller's input: that fails too.

Files come in every container libsndfile writes (the accepted ones and the rest), at odd rates and channel
counts, then truncated at random points, with bytes flipped, junk before or after, or with headers written
by hand that declare anything (channels, rates, lengths, bit depths). Waveforms come in every dtype, shape
and stride, as broadcast views that declare billions of samples, masked arrays, matrices, nested lists
(thousands deep among them) and tensors, with rates of every type and size.

The number of examples is the profile's (tests/conftest.py): MVAE_HYPOTHESIS=thorough for a longer hunt.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from fractions import Fraction

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import assume, example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst

import mvae
from mvae.signals.resampling import resample
from mvae.signals.waveform import MAX_INPUT_SAMPLES
from tests.contract import within_contract

# Rates that matter to the checks and the resampler: too low, the model's, odd ones, common ones, the highest
# allowed and one past it; then anything at all.
RATES = (1, 3999, 4000, 4001, 7999, 8000, 8001, 11025, 16000, 22050, 22051, 44100, 44101, 48000, 96000, 192000,
         383999, 384000, 384001, 10**6)
# What libsndfile writes: (container, subtype); the first five containers are accepted, the rest refused.
WRITABLE = [("WAV", "PCM_U8"), ("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "PCM_32"), ("WAV", "FLOAT"),
            ("WAV", "DOUBLE"), ("WAV", "ULAW"), ("WAV", "ALAW"), ("WAV", "IMA_ADPCM"), ("WAV", "MS_ADPCM"),
            ("WAV", "GSM610"), ("WAVEX", "PCM_16"), ("WAVEX", "FLOAT"), ("FLAC", "PCM_S8"), ("FLAC", "PCM_16"),
            ("FLAC", "PCM_24"), ("OGG", "VORBIS"), ("OGG", "OPUS"), ("MP3", "MPEG_LAYER_III"),
            ("MP3", "MPEG_LAYER_II"), ("AIFF", "PCM_16"), ("AU", "FLOAT"), ("CAF", "ALAC_16"), ("W64", "PCM_16"),
            ("RF64", "PCM_16"), ("VOC", "PCM_16"), ("MAT5", "DOUBLE"), ("NIST", "PCM_16"), ("IRCAM", "FLOAT"),
            ("SVX", "PCM_16"), ("HTK", "PCM_16"), ("WVE", "ALAW"), ("MPC2K", "PCM_16"), ("XI", "DPCM_16")]
SIDES = (0, 1, 2, 7, 8, 9, 400, 4000, 10**5, 10**8, 10**9, 10**12)
MAX_DECLARED = 2**50  # numpy's own limit on an array's size in bytes (2**63), for 16-byte samples, less a margin
NUMERIC_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
                  "float64", "longdouble", ">i2", ">f4", "<u4")
ODD_DTYPES = ("bool", "complex64", "complex128", "object", "V4", "S4", "U2", "datetime64[s]", "timedelta64[ms]")


@pytest.fixture(scope="module")
def pipe():
    return mvae.load()


@pytest.fixture(scope="module")
def fe(pipe):
    return pipe.front_end


def answered(call, *args, **kwargs):
    """`within_contract`, and no blame on the shipped model: with a sound model, a fault is the caller's.
    What is accepted is finite."""
    outcome = within_contract(call, *args, **kwargs)
    assert not isinstance(outcome, mvae.CheckpointError), f"the sound shipped model was blamed: {outcome}"
    if hasattr(outcome, "inputs"):
        assert np.isfinite(outcome.inputs["speech"]).all() and 0 <= outcome.label <= 9
    elif isinstance(outcome, np.ndarray):
        assert outcome.dtype == np.float32 and np.isfinite(outcome).all()
    return outcome


# -- signals ----------------------------------------------------------------------------------------------------
@st.composite
def signals(draw, max_seconds: float = 1.5):
    """(float64 samples on the [-1, 1] scale, shaped (n,) or (n, channels), and their rate): voice-like tones
    in silence, noise, silence, a DC offset, clipping, or samples that no recording has."""
    rate = draw(st.sampled_from([r for r in RATES if 4000 <= r <= 96000]))
    n = draw(st.integers(0, int(max_seconds * rate)))
    channels = draw(st.sampled_from([None, 1, 2, 3, 8, 9]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = np.arange(n) / rate
    kind = draw(st.sampled_from(["tone", "tone", "noise", "silence", "dc", "clipped", "click", "nan", "inf", "huge",
                                 "tiny"]))
    wave = np.zeros(n)
    if kind in ("tone", "dc", "clipped", "nan", "inf", "huge", "tiny") and n:
        start, length = sorted(rng.integers(0, n + 1, 2))
        wave[start:length] = 0.5 * np.sin(2 * np.pi * draw(st.floats(60, 3900)) * t[start:length])
    if kind == "noise":
        wave = rng.normal(0, draw(st.floats(1e-6, 1.0)), n)
    wave = {"dc": wave * 0.4 + draw(st.floats(-0.6, 0.6)), "clipped": np.clip(wave * 20, -1, 1),
            "tiny": wave * 1e-5, "huge": wave * draw(st.sampled_from([1e6, 1e13, 1e300]))}.get(kind, wave)
    if kind == "click" and n:
        wave[rng.integers(0, n)] = 0.9
    if kind in ("nan", "inf") and n:
        wave[rng.integers(0, n)] = np.nan if kind == "nan" else -np.inf
    if channels is not None:
        gains = rng.uniform(-1, 1, channels)
        wave = wave[:, None] * gains[None, :]
    return wave, rate


def as_dtype(wave: np.ndarray, dtype: str) -> np.ndarray:
    """The signal as PCM of `dtype`: integers at their full scale (unsigned centred on half of it), floats as
    they are; values out of range wrap or saturate as a careless converter would."""
    dtype = np.dtype(dtype)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # casts of NaN and overflowing values warn; they are the point
        if dtype.kind in "iu":
            bits = 8 * dtype.itemsize
            scaled = np.nan_to_num(wave, nan=0.0, posinf=1.0, neginf=-1.0) * (2.0 ** (bits - 1) - 1)
            if dtype.kind == "u":
                scaled = scaled + 2.0 ** (bits - 1)
            return np.clip(scaled, np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)
        if dtype.kind == "f":
            return wave.astype(dtype)
        if dtype.kind == "O":
            return wave.astype(object)
        if dtype.kind in "SUV":
            return np.zeros(wave.shape, dtype)
        return wave.astype(dtype)


def reshaped(arr: np.ndarray, how: str) -> np.ndarray:
    if arr.ndim == 0:
        return arr
    return {"reversed": lambda a: a[::-1], "every other": lambda a: a[::2], "transposed": lambda a: a.T,
            "fortran": np.asfortranarray, "strided channels": lambda a: a[:, ::-1] if a.ndim == 2 else a,
            "extra axis": lambda a: a[None], "as is": lambda a: a}[how](arr)


class Nested(list):
    """A list nested `depth` deep, shown by its depth: Hypothesis' printer recurses into lists."""

    def __repr__(self) -> str:
        depth, inner = 0, self
        while isinstance(inner, list) and inner:
            depth, inner = depth + 1, inner[0]
        return f"<a list nested {depth} deep around {inner!r}>"


def nested(value, depth: int):
    for _ in range(depth - 1):
        value = [value]
    return Nested([value])


@st.composite
def waveforms(draw):
    """A waveform in any of the forms a caller may hand over."""
    choice = draw(st.sampled_from(["signal"] * 6 + ["elements", "view", "deep"]))
    if choice == "deep":  # numpy's discovery raises ValueError past 64 levels; 20,000 was the probe's
        return nested(0.5, draw(st.sampled_from([3, 33, 65, 20_000])))
    if choice == "view":
        base = as_dtype(np.array(draw(st.sampled_from([0.0, 0.3, 0.9, -1.0, np.nan]))),
                        draw(st.sampled_from(NUMERIC_DTYPES)))
        shape = tuple(draw(st.lists(st.sampled_from(SIDES), min_size=0, max_size=3)))
        if math.prod(max(side, 1) for side in shape) >= MAX_DECLARED:  # numpy counts past an empty side
            shape = shape[:1]
        arr = np.broadcast_to(base, shape)
    elif choice == "elements":
        dtype = draw(st.sampled_from(NUMERIC_DTYPES + ODD_DTYPES))
        shape = draw(npst.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=40))
        try:
            arr = draw(npst.arrays(np.dtype(dtype), shape))
        except Exception:  # noqa: BLE001 - a dtype Hypothesis cannot fill: an empty one of that dtype instead
            arr = np.empty(shape, dtype)
    else:
        wave, _ = draw(signals())
        arr = as_dtype(wave, draw(st.sampled_from(NUMERIC_DTYPES + ODD_DTYPES)))
    # What a caller can hold, as a list too (10**12 empty rows are no samples, and 10**12 lists): anything
    # bigger is a view, and only views of it are made.
    small = arr.size <= 10**5 and max(arr.shape, default=0) <= 10**5
    arr = reshaped(arr, draw(st.sampled_from(["as is"] * 6 + ["reversed", "every other", "transposed",
                                              "strided channels", "extra axis"] + ["fortran"] * small)))
    form = draw(st.sampled_from(["array", "array", "masked", "matrix", "list", "tuple", "tensor", "memoryview"]))
    if form == "masked" and small:
        mask = draw(st.sampled_from(["none", "all", "some"]))
        return np.ma.masked_array(arr, mask={"none": False, "all": True,
                                             "some": np.random.default_rng(0).random(arr.shape) < 0.1}[mask])
    if form == "matrix" and small and arr.ndim <= 2:
        with warnings.catch_warnings():  # numpy asks for plain arrays; callers still pass matrices
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            return np.asmatrix(arr)
    if form in ("list", "tuple") and small:
        listed = arr.tolist()
        return tuple(listed) if form == "tuple" and isinstance(listed, list) else listed
    if form == "tensor" and small and arr.dtype.isnative and (arr.dtype.kind in "ifb" or arr.dtype == np.uint8) \
            and arr.dtype.itemsize <= 8:
        return torch.from_numpy(np.array(arr, order="C", copy=True))
    if form == "memoryview" and small and arr.dtype.kind in "iuf" and arr.flags.c_contiguous and arr.size:
        return memoryview(arr)
    return arr


ODD_RATES = st.one_of(
    st.sampled_from(RATES),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.fractions(max_denominator=7),
    st.sampled_from([np.int64(16000), np.float32(8000.0), np.uint8(200), np.float64(8000.5), np.int16(-8000),
                     Fraction(16000, 2), 10**400, None, True, "8000", b"8000", [8000], np.array(8000), 8000j]),
)


@given(wave=waveforms(), rate=ODD_RATES)
@example(wave=nested(0.5, 20_000), rate=8000)
@example(wave=np.broadcast_to(np.float32(0.1), (10**8, 64)), rate=8000)
@example(wave=np.broadcast_to(np.float32(0.1), (10**9,)), rate=16000)
@example(wave=np.broadcast_to(np.float64(0.3), (MAX_INPUT_SAMPLES,)), rate=384000)
def test_predict_on_any_waveform_answers_or_refuses_in_words(pipe, wave, rate):
    answered(pipe.predict, {"speech": (wave, rate)})


@given(wave=waveforms(), rate=ODD_RATES)
def test_the_front_end_on_any_waveform_answers_or_refuses_in_words(fe, wave, rate):
    answered(fe.to_mono, wave, rate)
    answered(fe.prepare, wave, rate)


# -- files ------------------------------------------------------------------------------------------------------
ACCEPTED = [(fmt, subtype) for fmt, subtype in WRITABLE if fmt in ("WAV", "WAVEX", "FLAC", "OGG", "MP3")]


@st.composite
def written_files(draw, containers=tuple(WRITABLE)):
    """A signal written by libsndfile in one of its containers, or, where it cannot write that combination,
    as 16-bit WAV."""
    wave, rate = draw(signals(max_seconds=1.0))
    fmt, subtype = draw(st.sampled_from(containers))
    buf = io.BytesIO()
    try:
        with np.errstate(all="ignore"):
            # Only float containers hold what no recording has (NaN, 1e300); encoders get sane samples.
            sf.write(buf, wave if subtype in ("FLOAT", "DOUBLE") else np.nan_to_num(np.clip(wave, -1, 1)), rate,
                     format=fmt, subtype=subtype)
    except (RuntimeError, TypeError, ValueError):  # a rate or channel count this container cannot hold
        buf = io.BytesIO()
        sf.write(buf, np.nan_to_num(np.clip(wave, -1, 1)), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def le(fmt: str, value: int) -> bytes:
    """`value` packed little-endian as `fmt`, wrapped into its range (a hostile header says anything)."""
    bits = 8 * struct.calcsize(fmt)
    return struct.pack("<" + fmt.upper(), value % (1 << bits))


@st.composite
def crafted_wavs(draw):
    """A WAV whose header is written by hand: any format tag, channel count, rate, bit depth and sizes, over
    however many payload bytes."""
    fields = dict(tag=draw(st.sampled_from([1, 3, 6, 7, 0xFFFE, 0x55, 2, 0, 0x1234])),
                  channels=draw(st.sampled_from([0, 1, 2, 8, 9, 255, 65535])),
                  rate=draw(st.sampled_from(RATES + (0, 2**31, 2**32 - 1))),
                  bits=draw(st.sampled_from([0, 1, 8, 12, 16, 24, 32, 64, 65535])))
    payload = draw(st.binary(max_size=4096))
    declared = draw(st.sampled_from([len(payload), 0, 2**32 - 1, 2**31, len(payload) * 1000, len(payload) // 2]))
    block = max(fields["channels"] * fields["bits"] // 8, 0)
    fmt = (le("h", fields["tag"]) + le("h", fields["channels"]) + le("i", fields["rate"])
           + le("i", fields["rate"] * block) + le("h", block) + le("h", fields["bits"]))
    body = b"WAVE" + b"fmt " + le("i", len(fmt)) + fmt + b"data" + le("i", declared) + payload
    riff_size = draw(st.sampled_from([len(body), 0, 2**32 - 1]))
    return b"RIFF" + le("i", riff_size) + body


@st.composite
def crafted_flacs(draw):
    """A real FLAC whose STREAMINFO is rewritten: any rate, channel count, bit depth and total length."""
    wave, rate = draw(signals(max_seconds=0.5))
    buf = io.BytesIO()
    wave = wave[:, :8] if wave.ndim == 2 else wave  # FLAC holds at most 8 channels; the header may say more
    sf.write(buf, np.nan_to_num(np.clip(wave, -1, 1)), rate, format="FLAC", subtype="PCM_16")
    data = bytearray(buf.getvalue())
    info = int.from_bytes(data[18:26], "big")  # rate (20 bits), channels-1 (3), bits-1 (5), total samples (36)
    new_rate = draw(st.sampled_from([0, 1, 4000, 8000, 48000, 384000, 655350, 2**20 - 1])) if draw(st.booleans()) \
        else info >> 44
    new_channels = draw(st.integers(0, 7)) if draw(st.booleans()) else (info >> 41) & 7
    new_bits = draw(st.integers(0, 31)) if draw(st.booleans()) else (info >> 36) & 31
    total = draw(st.sampled_from([0, 1, 23_040_000, 184_320_000, 2**36 - 1])) if draw(st.booleans()) \
        else info & (2**36 - 1)
    data[18:26] = (new_rate << 44 | new_channels << 41 | new_bits << 36 | total).to_bytes(8, "big")
    return bytes(data)


@st.composite
def mutated(draw, files):
    """A file as it may arrive: whole, truncated anywhere, bytes flipped, junk around it, two files spliced."""
    data = draw(files)
    how = draw(st.sampled_from(["whole", "truncated", "truncated", "flipped", "header flipped", "junk after",
                                "junk before", "spliced", "repeated"]))
    if how == "truncated" and data:
        return data[:draw(st.integers(0, len(data) - 1))]
    if how in ("flipped", "header flipped") and data:
        data = bytearray(data)
        top = min(len(data), 96) if how == "header flipped" else len(data)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, top - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if how == "junk after":
        return data + draw(st.binary(min_size=1, max_size=2048))
    if how == "junk before":
        return draw(st.binary(min_size=1, max_size=64)) + data
    if how == "spliced":
        other = draw(files)
        return data[:draw(st.integers(0, len(data)))] + other[draw(st.integers(0, len(other))):]
    if how == "repeated":
        return data * draw(st.integers(2, 4))
    return data


FILES = st.one_of(mutated(written_files()), mutated(written_files()), mutated(written_files()),
                  mutated(crafted_wavs()), mutated(crafted_flacs()), st.binary(max_size=4096))


@given(data=FILES)
def test_predict_on_any_file_answers_or_refuses_in_words(pipe, data):
    answered(pipe.predict, {"speech": data})


@given(data=FILES, form=st.sampled_from([bytes, bytearray, memoryview]))
def test_the_front_end_on_any_file_answers_or_refuses_in_words(fe, data, form):
    decoded = answered(fe.decode, form(data))
    if isinstance(decoded, tuple):
        wave, rate = decoded
        assert rate == fe.cfg.sample_rate and wave.ndim == 1
    answered(fe.prepare_bytes, data)


@given(data=written_files(tuple(ACCEPTED)))
def test_what_decodes_is_the_same_read_whole_or_in_blocks(fe, data):
    """The streamed decoding hears what reading the whole file, mixing and resampling it did (the front end
    before it streamed), wherever it answers."""
    streamed = answered(fe.decode, data)
    assume(isinstance(streamed, tuple))
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    whole = resample(mono - mono.mean(), Fraction(fe.cfg.sample_rate, rate))
    # A container's length may be rounded to whole frames by its decoder (MP3); compare what both hold.
    n = min(len(whole), len(streamed[0]))
    assert abs(len(whole) - len(streamed[0])) <= 2 * math.ceil(1152 * fe.cfg.sample_rate / rate)
    # float32 rounding, which grows with the samples (float WAVs hold values far past full scale).
    np.testing.assert_allclose(streamed[0][:n], whole[:n], atol=1e-4 * max(1.0, float(np.abs(whole).max(initial=0))))
