"""Image preprocessing shared by data preparation and the app.

Every digit, whether it comes from a dataset file or a browser canvas, goes through `prepare_digit`:
find the ink, crop to it, fit the long side to 20 px keeping the aspect ratio, and place it in a
28x28 field so that its centre of mass sits at the centre (the MNIST convention).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..api_checks import is_tensor
from ..config import IMAGE_FIT, IMAGE_SIZE
from ..errors import InputError

MAX_IMAGE_SIDE = 4096
MAX_IMAGE_BYTES = 20 * 1024 * 1024
INK_THRESHOLD = 0.1  # fraction of full ink below which a pixel counts as background when cropping
MIN_INK = 0.05  # an image whose strongest ink is weaker than this is treated as empty
INTEGER_PIXEL_BITS = (8, 16, 32, 64)
# The formats an uploaded file may be in; every other PIL parser (EPS runs Ghostscript, for one) is kept
# away from bytes a stranger sent.
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
NOT_AN_IMAGE = "These bytes are not a readable image; please give a PNG or JPEG file (GIF, BMP and WebP also work)."
ALPHA_MODES = ("LA", "La", "PA", "RGBa")  # LAB's "A" band is a colour, not alpha
DIRECT_MODES = ("1", "L", "RGB", "RGBA", "I", "F")  # np.asarray reads these as numbers as they are


def decode_image_bytes(data: bytes) -> np.ndarray:
    if len(data) > MAX_IMAGE_BYTES:
        raise InputError(f"The image file is {len(data) / 1e6:.1f} MB; please use one under "
                         f"{MAX_IMAGE_BYTES // 2**20} MB.")
    try:
        img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as exc:  # PIL refuses it while reading the header
        raise InputError(f"The image is far too large; please use one at most {MAX_IMAGE_SIDE} px a side.") from exc
    except Exception as exc:  # noqa: BLE001 - PIL's parsers answer crafted headers with many exception types
        raise InputError(NOT_AN_IMAGE) from exc
    with img:
        return pil_to_array(img, NOT_AN_IMAGE)


def pil_to_array(img: Image.Image, unreadable: str | None = None) -> np.ndarray:
    """A PIL image as an array of numbers, its size checked from the header before any pixel is decoded: a
    lazily opened 12,000 px PNG is refused at once rather than after seconds and gigabytes."""
    try:
        width, height = img.size
        mode = img.mode
    except Exception as exc:  # noqa: BLE001 - a half-built Image object
        raise InputError("This PIL image has no usable size or mode; please give a PNG or JPEG file, or an array.") \
            from exc
    if max(width, height) > MAX_IMAGE_SIDE:
        raise InputError(f"The image is {width}x{height} px; please use one at most {MAX_IMAGE_SIDE} px a side.")
    try:
        if mode in DIRECT_MODES or mode.startswith("I;16"):
            pass  # I, I;16 and F keep their numbers: integer_full_scale reads their white level
        elif mode in ALPHA_MODES or mode == "P":  # a palette may hold transparency
            # La (premultiplied alpha) converts only to LA; the others go straight to RGBA.
            img = (img.convert("LA") if mode == "La" else img).convert("RGBA")
        else:
            img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX: colour the way PIL shows it
        return np.asarray(img)
    except Image.DecompressionBombError as exc:
        raise InputError(f"The image is far too large; please use one at most {MAX_IMAGE_SIDE} px a side.") from exc
    except Exception as exc:  # noqa: BLE001 - decoding: truncated files, closed images, modes PIL cannot convert
        raise InputError(unreadable or f"This PIL image (mode {mode!r}) cannot be read: {exc}. Please give a PNG or "
                         "JPEG file, or an image in mode 'L', 'RGB' or 'RGBA'.") from exc


def to_array(image) -> np.ndarray:
    """Any accepted image form (array, PIL image, PNG/JPEG bytes) as a numpy array, unconverted: an array
    or a view keeps its dtype and declared shape, so that `ink_map` checks them before any copy."""
    if isinstance(image, memoryview):
        if image.nbytes > MAX_IMAGE_BYTES:  # before bytes(): a strided view may declare any size
            raise InputError(f"The image file is {image.nbytes / 1e6:.1f} MB; please use one under "
                             f"{MAX_IMAGE_BYTES // 2**20} MB.")
        image = image.tobytes()
    if isinstance(image, (bytes, bytearray)):
        return decode_image_bytes(bytes(image))
    if isinstance(image, Image.Image):
        return pil_to_array(image)
    if is_tensor(image):
        image_shape(tuple(image.shape))  # before .numpy(), which may copy it off a GPU
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ma.MaskedArray):  # np.asarray would drop the mask and read the hidden pixels
        raise InputError("An image must be a plain array, not a masked one; fill the masked pixels first "
                         "(array.filled(0)).")
    if not isinstance(image, np.ndarray):
        raise InputError(f"An image must be a numpy array, a PIL image or PNG/JPEG bytes, not {type(image).__name__}.")
    return np.asarray(image)  # np.matrix and other subclasses as plain arrays: a view, not a copy


def image_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The layout of an image from its shape alone, before its pixels are read; (H, W, 1) reads as (H, W)."""
    if len(shape) == 3 and shape[2] == 1:
        shape = shape[:2]
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (3, 4)):
        raise InputError(f"An image must be H x W (grey), H x W x 3 (RGB) or H x W x 4 (RGBA); got shape {shape}.")
    if min(shape[:2]) < 1:
        raise InputError(f"The image is empty (shape {shape}).")
    if max(shape[:2]) > MAX_IMAGE_SIDE:
        raise InputError(f"The image is {shape[1]}x{shape[0]} px; please use one at most {MAX_IMAGE_SIDE} px a side.")
    return shape


def integer_full_scale(arr: np.ndarray) -> float:
    """The white level of integer pixels, read from their values rather than from the array's dtype.

    A canvas is 8-bit whatever array holds it, so 0..255 in int16, int32 or int64 is read as 8-bit;
    larger values are read on the narrowest of 16, 32 or 64 bits that holds them (a 16-bit PNG, say).
    Negative values count as black.
    """
    peak = int(arr.max(initial=0))
    bits = next(b for b in INTEGER_PIXEL_BITS if peak < 1 << b)
    return float((1 << bits) - 1)


def ink_map(image) -> np.ndarray:
    """The ink of an image as float32 in [0, 1], whatever its layout and polarity.

    A canvas with a transparent background keeps its strokes in the alpha channel; otherwise the ink
    is whatever differs from the background, which is read off the border so that both light-on-dark
    and dark-on-light drawings work.
    """
    arr = to_array(image)
    # Dtype and shape first, read from the array's header: a broadcast view may declare 10^10 pixels,
    # and nothing may be converted before that is refused.
    if arr.dtype.kind not in "biuf":  # timedelta is an integer subclass to numpy, but not a pixel
        raise InputError(f"Image pixels must be numbers, not {arr.dtype}.")
    arr = arr.reshape(image_shape(arr.shape))  # (H, W, 1) -> (H, W): a view
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float32)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise InputError("The image contains NaN or infinite values; pixels must be finite numbers.")
        scale = 255.0 if arr.max(initial=0.0) > 1.0 else 1.0
    else:
        scale = integer_full_scale(arr)

    def unit(channel: np.ndarray) -> np.ndarray:
        """One channel in [0, 1], converted in place: a 4096 px RGBA canvas then needs 64 MB floats at a
        time rather than several whole-canvas temporaries of 256 MB each."""
        out = channel.astype(np.float32)
        out /= scale
        return np.clip(out, 0.0, 1.0, out=out)

    if arr.ndim == 3 and arr.shape[2] == 4:
        alpha = unit(arr[:, :, 3])
        if alpha.max() - alpha.min() > MIN_INK:
            return alpha
        del alpha
    if arr.ndim == 2:
        grey = unit(arr)
    else:
        grey = unit(arr[:, :, 0])
        grey += unit(arr[:, :, 1])
        grey += unit(arr[:, :, 2])
        grey /= 3
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    background = float(np.median(border))
    grey -= background
    ink = np.abs(grey, out=grey)
    peak = ink.max()
    if peak > 0:
        ink /= peak
    return ink


def fit_and_center(ink: np.ndarray, size: int = IMAGE_SIZE, fit: int = IMAGE_FIT) -> np.ndarray:
    """Crop to the ink, fit the long side to `fit` px, and centre by centre of mass in `size`."""
    mask = ink > INK_THRESHOLD * ink.max()
    rows, cols = np.nonzero(mask)
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    scale = fit / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = Image.fromarray(crop.astype(np.float32), mode="F").resize((new_w, new_h), Image.Resampling.BILINEAR)
    patch = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)

    total = patch.sum()
    ys, xs = np.indices(patch.shape)
    cy = (ys * patch).sum() / total if total > 0 else (new_h - 1) / 2
    cx = (xs * patch).sum() / total if total > 0 else (new_w - 1) / 2
    centre = size / 2  # where MNIST, Kannada-MNIST and the prepared Hoda sets put it, in pixel indices
    top = int(np.clip(round(centre - cy), 0, size - new_h))
    left = int(np.clip(round(centre - cx), 0, size - new_w))
    out = np.zeros((size, size), dtype=np.float32)
    out[top : top + new_h, left : left + new_w] = patch
    return out


def prepare_digit(image) -> np.ndarray:
    """Any accepted image form -> a 28x28 float32 digit in [0, 1], white ink on black."""
    ink = ink_map(image)
    if ink.max(initial=0.0) < MIN_INK or not np.any(ink > INK_THRESHOLD):
        # A canvas inked all over has no contrast either, so it cannot be told from a blank one.
        raise InputError("The canvas is empty (or one colour all over): draw a single digit.")
    coverage = float((ink > 0.5).mean())
    if coverage > 0.9 and min(ink.shape) > 8:
        raise InputError("The whole canvas is ink; clear it and draw a single digit.")
    return fit_and_center(ink)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
