"""The error contract of the facade, hunted by Hypothesis: every public call of the shipped model (as the app
runs it: `mvae.load()`, the lean numpy runtime) given generated hostile inputs either answers or raises
`mvae.InputError`, within the time and memory bounds of tests/contract.py.

Images come as arrays of every dtype, shape, stride and declared size (broadcast views), as matrix and masked
arrays, nested lists, PIL images of every mode, and the bytes of every format, truncated or corrupted; the other
arguments as hostile values of every type. The model is sound, so a `CheckpointError` here would blame it
for the caller's input: that fails too. Speech files are tests/test_contract_audio.py's; here speech only
gets values of the wrong type.

The number of examples is the profile's (tests/conftest.py): MVAE_HYPOTHESIS=thorough for a longer hunt.
"""

from __future__ import annotations

import io
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst
from PIL import Image

import mvae
from mvae import api_checks as arguments
from mvae.signals.images import MAX_IMAGE_SIDE
from tests.contract import within_contract

# Sides that matter to the checks: empty, one, a canvas, the largest allowed, one past it, and absurd ones
# that only a broadcast view can declare.
SIDES = (0, 1, 2, 3, 4, 5, 28, 280, MAX_IMAGE_SIDE, MAX_IMAGE_SIDE + 1, 10**5, 10**9)
MAX_DECLARED = 2**62  # numpy's own limit on an array's element count, less a margin
PIL_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "I",
             "I;16", "I;16L", "I;16B", "I;16N", "F")
# Formats PIL can write; the facade reads a few of them, and every one of them must be refused in words.
FILE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "ICO", "PPM", "TGA", "PCX", "SGI", "IM", "MSP",
                "DIB", "QOI", "SPIDER", "EPS", "PDF", "XBM")
MODALITIES = ("farsi", "kannada", "speech", "label")


@pytest.fixture(scope="module")
def pipe():
    return mvae.load()


def answered(call, *args, **kwargs):
    """`within_contract`, and no blame on the shipped model: with a sound model, a fault is the caller's."""
    outcome = within_contract(call, *args, **kwargs)
    assert not isinstance(outcome, mvae.CheckpointError), f"the sound shipped model was blamed: {outcome}"
    return outcome


# -- arrays ------------------------------------------------------------------------------------------------------
DTYPES = st.one_of(
    npst.scalar_dtypes(),  # bool, every int and uint, float16..64, complex, datetime64, timedelta64
    st.sampled_from([np.dtype(np.longdouble), np.dtype(np.clongdouble), np.dtype(object), np.dtype("V8"),
                     np.dtype([("a", "u1"), ("b", "f4")]), np.dtype(">u2"), np.dtype("<i8"), np.dtype(">f8")]),
    npst.byte_string_dtypes(max_len=4), npst.unicode_string_dtypes(max_len=4),
)


def elements_for(dtype: np.dtype):
    if dtype.kind == "O":
        return st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=3), st.just([1, 2]))
    if dtype.kind == "V" and dtype.fields is None:
        return st.binary(min_size=dtype.itemsize, max_size=dtype.itemsize)
    return None  # Hypothesis' own, which include the extremes, NaN and infinities


@st.composite
def small_arrays(draw, max_dims: int = 4, max_side: int = 40):
    dtype = draw(DTYPES)
    shape = draw(npst.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side))
    if math.prod(shape) > 6000:  # generated element by element: keep it quick
        shape = shape[:2]
    try:
        return draw(npst.arrays(dtype, shape, elements=elements_for(dtype)))
    except Exception:  # noqa: BLE001 - a dtype Hypothesis cannot fill: an empty one of that dtype instead
        return np.empty(shape, dtype)


@st.composite
def broadcast_views(draw):
    """A tiny array declared as a huge one: no memory behind it, so only a check before conversion holds."""
    base = draw(small_arrays(max_dims=1, max_side=1))
    shape = tuple(draw(st.lists(st.sampled_from(SIDES), min_size=1, max_size=4)))
    while declared(shape) * max(base.dtype.itemsize, 1) >= MAX_DECLARED:  # numpy's limit on a view's bytes
        shape = shape[:-1]
    return np.broadcast_to(base.reshape(-1)[:1].reshape(()) if base.size else np.zeros((), base.dtype), shape)


def declared(shape: tuple[int, ...]) -> int:
    """What a shape costs to walk: an empty side still leaves the others' rows (tolist() of a (10^9, 0) view
    is 10^9 empty lists)."""
    return math.prod(max(side, 1) for side in shape)


def restrided(arr: np.ndarray, how: str) -> np.ndarray:
    if arr.ndim == 0:
        return arr
    if how == "reversed":
        return arr[::-1]
    if how == "every other":
        return arr[::2]
    if how == "transposed":
        return arr.T
    return arr


@st.composite
def hostile_arrays(draw):
    """Arrays of every dtype, shape and layout, and the array-likes built from them."""
    arr = draw(st.one_of(small_arrays(), broadcast_views(), canvases()))
    arr = restrided(arr, draw(st.sampled_from(["as is", "reversed", "every other", "transposed"])))
    form = draw(st.sampled_from(["array", "matrix", "masked", "list", "tuple", "memoryview"]))
    size = declared(arr.shape)
    if form == "matrix" and arr.ndim <= 2 and size <= 10**6:
        with warnings.catch_warnings():  # numpy asks for plain arrays; callers still pass matrices
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            return np.asmatrix(arr)
    if form == "masked" and size <= 10**6:
        return np.ma.masked_array(arr, mask=draw(st.booleans()))
    if form in ("list", "tuple") and size <= 10**4:
        return arr.tolist() if form == "list" else tuple(arr.tolist()) if arr.ndim else arr.tolist()
    if form == "memoryview" and arr.dtype.kind in "biuf" and size <= 10**6:
        return memoryview(np.ascontiguousarray(arr))
    return arr


@st.composite
def canvases(draw):
    """Plausible canvases: a ring of ink at a random place, in a random layout and dtype."""
    size = draw(st.sampled_from([1, 8, 28, 64, 280]))
    yy, xx = np.ogrid[:size, :size]
    cy, cx = draw(st.floats(0, 1)), draw(st.floats(0, 1))
    ring = np.abs(np.hypot(yy - cy * size, xx - cx * size) - 0.2 * size) < max(1.0, 0.05 * size)
    layout = draw(st.sampled_from(["grey", "rgb", "rgba", "alpha", "hw1"]))
    ink = ring.astype(np.uint8) * 255
    arr = {"grey": ink, "hw1": ink[..., None], "rgb": np.dstack([ink] * 3),
           "rgba": np.dstack([ink] * 3 + [np.full_like(ink, 255)]),
           "alpha": np.dstack([np.zeros_like(ink)] * 3 + [ink])}[layout]
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.int64, np.uint64, np.float16, np.float32, np.float64,
                                  np.bool_]))
    return arr.astype(dtype)


# -- PIL images and files ----------------------------------------------------------------------------------------
@st.composite
def pil_images(draw):
    mode = draw(st.sampled_from(PIL_MODES))
    width, height = draw(st.integers(0, 64)), draw(st.integers(0, 64))
    if draw(st.booleans()) and width and height:  # random pixels, which may be anything the mode holds
        size = len(Image.new(mode, (1, 1)).tobytes()) * width * height
        image = Image.frombytes(mode, (width, height), draw(st.binary(min_size=size, max_size=size)))
    else:
        image = Image.new(mode, (width, height))
    if mode == "P" and draw(st.booleans()):
        image.info["transparency"] = draw(st.integers(0, 255))
    return image


def header_only_png(width: int, height: int) -> bytes:
    """A PNG header declaring any size, with no pixels behind it."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def saved(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    try:
        image.save(buf, format=fmt)
    except Exception:  # noqa: BLE001 - a mode this format cannot hold: as RGB, which most can
        buf = io.BytesIO()
        try:
            image.convert("RGB").save(buf, format=fmt)
        except Exception:  # noqa: BLE001 - a writer that needs a program not installed (EPS needs Ghostscript)
            return b""
    return buf.getvalue()


@st.composite
def image_files(draw):
    """The bytes of an image in every format PIL writes: whole, truncated, corrupted or declaring any size."""
    kind = draw(st.sampled_from(["whole", "truncated", "corrupted", "header", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=512))
    if kind == "header":
        return header_only_png(draw(st.sampled_from(SIDES[1:])), draw(st.sampled_from(SIDES[1:])))
    data = saved(draw(pil_images()), draw(st.sampled_from(FILE_FORMATS)))
    if kind == "truncated" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "corrupted" and data:
        at = draw(st.integers(0, len(data) - 1))
        return data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
    return data


@st.composite
def lazy_pil_images(draw):
    """PIL images as Image.open gives them: header read, pixels not yet decoded (and maybe missing)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(draw(image_files())))
        except Exception:  # noqa: BLE001 - bytes PIL will not open at all: a blank image instead
            return Image.new("L", (1, 1))


# -- everything else a caller can pass ---------------------------------------------------------------------------
class Lying:
    """A sequence that claims an absurd length."""

    def __len__(self):
        return 10**12

    def __getitem__(self, i):
        return 0.0


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-3, 300), st.floats(), st.floats(-5, 5),
    st.complex_numbers(), st.text(max_size=5), st.binary(max_size=5), st.fractions(),
    st.sampled_from([Fraction(10**400, 3), 10**400, -(10**400), float("nan"), float("inf"), np.float16(65504),
                     np.longdouble("1e4000"), np.int64(-1), np.uint64(2**64 - 1), np.bool_(True), np.float32(3.0),
                     np.datetime64("2020-01-01"), np.timedelta64(3, "s"), np.complex64(1j), object(), Lying(),
                     range(10**20), [3], (3,), {3}, {"n": 3}, np.array(3), np.array([3, 4]), slice(3), Ellipsis]),
)
ANYTHING = st.one_of(SCALARS, hostile_arrays(), st.lists(SCALARS, max_size=4))
IMAGES = st.one_of(hostile_arrays(), pil_images(), lazy_pil_images(), image_files(), SCALARS)


def latent_like(d: int):
    """Latents of the right length (so that the deeper checks are reached), and anything else."""
    return st.one_of(
        npst.arrays(np.float64, d, elements=st.one_of(st.floats(-2000, 2000), st.sampled_from([np.nan, np.inf]))),
        npst.arrays(np.float32, st.tuples(st.integers(1, 4), st.just(d)), elements=st.floats(-3, 3, width=32)),
        st.lists(st.floats(-3, 3), min_size=d, max_size=d),
        ANYTHING,
    )


D = 64  # the shipped model's full latent: checked against the fixture below


def test_the_strategies_fit_the_shipped_model(pipe):
    assert pipe.latent_dim == D and set(pipe.model.names) == set(MODALITIES)


# -- the cases the issue measured, run on every run whatever Hypothesis draws ------------------------------------
class Built:
    """An explicit example built when it runs, under a short name: Hypothesis prints every example it runs,
    and a 20,000-deep list or a fresh lazily opened image must be neither printed nor shared."""

    def __init__(self, name: str, make):
        self.name, self.make = name, make

    def __repr__(self):
        return self.name


def built(value):
    return value.make() if isinstance(value, Built) else value


def nested(depth: int) -> list:
    value: list = [0.0]
    for _ in range(depth - 1):
        value = [value]
    return value


def quietly(make):
    def run():
        with warnings.catch_warnings():  # numpy's matrix and PIL's bomb warnings: the cases are on purpose
            warnings.simplefilter("ignore", (PendingDeprecationWarning, Image.DecompressionBombWarning))
            return make()
    return run


STROKE = np.zeros((280, 280), np.uint8)
STROKE[100:180, 100:110] = 255
KNOWN_IMAGES = [
    Built("np.matrix", quietly(lambda: np.asmatrix(STROKE))),
    Built("masked array", lambda: np.ma.masked_array(STROKE, mask=STROKE == 0)),
    Built("PIL La", lambda: Image.fromarray(np.dstack([STROKE, np.full_like(STROKE, 255)]), "LA").convert("La")),
    Built("lazily opened 12000 px PNG", quietly(lambda: Image.open(io.BytesIO(header_only_png(12_000, 12_000))))),
    Built("broadcast 10^10 bool pixels", lambda: np.broadcast_to(True, (10**5, 10**5))),
    Built("20000-deep list", lambda: nested(20_000)),
]
HUGE_VALUES = Built("broadcast 10^9 values", lambda: np.broadcast_to(0.0, (10**9,)))
HUGE_LATENTS = Built("broadcast 10^8 x 64 latents", lambda: np.broadcast_to(np.float32(0), (10**8, 64)))
MANY_ROWS = Built("list of 10^6 rows", lambda: [[0.0] * 64] * 10**6)
DEEP = Built("20000-deep list", lambda: nested(20_000))


def with_known_images(test):
    for image in KNOWN_IMAGES:
        test = example(image=image, script="kannada")(test)
    return test


# -- the properties ----------------------------------------------------------------------------------------------
@with_known_images
@given(image=IMAGES, script=st.sampled_from(["farsi", "kannada"]))
def test_predict_an_image(pipe, image, script):
    answered(pipe.predict, {script: built(image)})


@given(inputs=st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(MODALITIES + ("handwriting", "")), SCALARS.filter(
        lambda k: k.__hash__ is not None)), st.one_of(SCALARS, canvases()), max_size=4),
    ANYTHING,
))
def test_predict_any_mapping(pipe, inputs):
    answered(pipe.predict, inputs)


@example(value=3.5)
@example(value="digit.wav")
@given(value=st.one_of(SCALARS, hostile_arrays(), st.lists(st.floats(-1, 1), max_size=20)))
def test_speech_of_the_wrong_type(pipe, value):
    """Not bytes and not a (waveform, rate) tuple: refused in words (files themselves are the audio suite's)."""
    if isinstance(value, (bytes, bytearray, memoryview, tuple)):
        value = [value]
    outcome = answered(pipe.predict, {"speech": value})
    assert value is None or isinstance(outcome, mvae.InputError), outcome


@example(label=3, n=Fraction(10**400, 3), temperature=1.0, seed=None)
@example(label=3, n=2, temperature=Fraction(10**400, 3), seed=Fraction(10**400, 3))
@given(label=SCALARS, n=st.one_of(st.integers(0, arguments.MAX_SAMPLES + 1), SCALARS),
       temperature=st.one_of(st.floats(0, arguments.MAX_TEMPERATURE), SCALARS), seed=SCALARS)
def test_generate(pipe, label, n, temperature, seed):
    answered(pipe.generate, label, n=n, temperature=temperature, seed=seed)


@example(latent=np.zeros(D), dims=[0], values=HUGE_VALUES)
@example(latent=np.zeros(D), dims=HUGE_VALUES, values=[0.0])
@example(latent=HUGE_LATENTS, dims=[0], values=[0.0])
@example(latent=np.zeros(D), dims=range(10**20), values=range(10**9))
@given(latent=latent_like(D), dims=st.one_of(st.lists(st.integers(-2, D + 1), max_size=D + 2), ANYTHING),
       values=st.one_of(st.lists(st.floats(-1e4, 1e4), max_size=arguments.MAX_TRAVERSE_VALUES + 2), ANYTHING))
def test_traverse(pipe, latent, dims, values):
    answered(pipe.traverse, built(latent), built(dims), built(values))


@example(start=HUGE_VALUES, end=np.zeros(D), steps=8)
@example(start=np.zeros(D), end=DEEP, steps=10**5000)
@given(start=latent_like(D), end=latent_like(D), steps=st.one_of(st.integers(0, 70), SCALARS))
def test_interpolate(pipe, start, end, steps):
    answered(pipe.interpolate, built(start), built(end), steps=steps)


@example(latent=np.zeros(D), keep=None, n=2, seed=0)
@example(latent=np.zeros(D), keep=3, n=2, seed=0)
@example(latent=np.zeros(D), keep=[["farsi"]], n=2, seed=0)
@example(latent=np.zeros(D), keep=Built("broadcast 10^9 names", lambda: np.broadcast_to(np.str_("farsi"), (10**9,))),
         n=2, seed=0)
@given(latent=latent_like(D), keep=st.one_of(st.lists(st.sampled_from(MODALITIES + ("shared",)), max_size=5),
                                             st.sampled_from(MODALITIES), ANYTHING),
       n=st.one_of(st.integers(0, arguments.MAX_SAMPLES + 1), SCALARS), seed=SCALARS)
def test_restyle(pipe, latent, keep, n, seed):
    answered(pipe.restyle, latent, keep=built(keep), n=n, seed=seed)


@example(latents=HUGE_LATENTS)
@example(latents=MANY_ROWS)
@example(latents=DEEP)
@example(latents=Built("16384 x 16384 empty lists", lambda: [[[]] * 2**14] * 2**14))
@example(latents=np.ma.masked_array(np.zeros(D)))
@given(latents=st.one_of(latent_like(D), npst.arrays(np.float32, st.tuples(st.integers(0, 300), st.just(D)),
                                                     elements=st.just(0.5)), broadcast_views()))
def test_decode(pipe, latents):
    answered(pipe.decode, built(latents))


@example(latent=np.zeros(D), target=["farsi"])
@example(latent=np.zeros(D), target=np.array(["farsi", "kannada"]))
@example(latent=HUGE_VALUES, target="farsi")
@given(latent=latent_like(D), target=st.one_of(st.sampled_from(MODALITIES), ANYTHING))
def test_dimension_effects(pipe, latent, target):
    answered(pipe.dimension_effects, built(latent), target)


# -- the check itself catches what it must -------------------------------------------------------------------------
def test_the_contract_check_fails_on_other_exceptions():
    with pytest.raises(AssertionError, match="TypeError outside the contract"):
        answered(lambda: None + 1)
    with pytest.raises(AssertionError, match="the sound shipped model was blamed"):
        answered(lambda: (_ for _ in ()).throw(mvae.CheckpointError("blamed")))
