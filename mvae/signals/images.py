"""Image preprocessing shared by data preparation and the app.

Every digit, whether it comes from a dataset file or a browser canvas, goes through `prepare_digit`:
find the ink, crop to it, fit the long side to 20 px keeping the aspect ratio, and place it in a
28x28 field so that its centre of mass sits at the centre (the MNIST convention).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..config import IMAGE_FIT, IMAGE_SIZE
from ..errors import InputError

MAX_IMAGE_SIDE = 4096
MAX_IMAGE_BYTES = 20 * 1024 * 1024
INK_THRESHOLD = 0.1  # fraction of full ink below which a pixel counts as background when cropping
MIN_INK = 0.05  # an image whose strongest ink is weaker than this is treated as empty
INTEGER_PIXEL_BITS = (8, 16, 32, 64)


def decode_image_bytes(data: bytes) -> np.ndarray:
    if len(data) > MAX_IMAGE_BYTES:
        raise InputError(f"The image file is {len(data) / 1e6:.1f} MB; please use one under "
                         f"{MAX_IMAGE_BYTES // 2**20} MB.")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if max(img.size) > MAX_IMAGE_SIDE:
                raise InputError(f"The image is {img.size[0]}x{img.size[1]} px; please use one at most "
                                 f"{MAX_IMAGE_SIDE} px a side.")
            return pil_to_array(img)
    except Image.DecompressionBombError as exc:  # PIL refuses it while reading the header
        raise InputError(f"The image is far too large; please use one at most {MAX_IMAGE_SIDE} px a side.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError("These bytes are not a readable image; please give a PNG or JPEG file.") from exc


def pil_to_array(img: Image.Image) -> np.ndarray:
    if img.mode not in ("L", "RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in img.getbands() or img.mode == "P" else "RGB")
    return np.asarray(img)


def to_array(image) -> np.ndarray:
    """Any accepted image form (array, PIL image, PNG/JPEG bytes) as a numpy array."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image_bytes(bytes(image))
    if isinstance(image, Image.Image):
        return pil_to_array(image)
    if hasattr(image, "detach"):  # a torch tensor
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise InputError(f"An image must be a numpy array, a PIL image or PNG/JPEG bytes, not {type(image).__name__}.")
    return image


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
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float32)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"Image pixels must be numbers, not {arr.dtype}.")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InputError(
            f"An image must be H x W (grey), H x W x 3 (RGB) or H x W x 4 (RGBA); got shape {arr.shape}."
        )
    if min(arr.shape[:2]) < 1:
        raise InputError(f"The image is empty (shape {arr.shape}).")
    if max(arr.shape[:2]) > MAX_IMAGE_SIDE:
        raise InputError(f"The image is {arr.shape[1]}x{arr.shape[0]} px; please use one at most "
                         f"{MAX_IMAGE_SIDE} px a side.")
    if np.issubdtype(arr.dtype, np.floating):
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
