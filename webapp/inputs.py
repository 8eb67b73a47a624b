"""The widgets a visitor gives a digit with: the drawing pad, whose PNG is checked before it is decoded, and
the three ways to give a recording."""

from __future__ import annotations

import io
import warnings

import numpy as np
import streamlit as st
from PIL import Image

import mvae

CANVAS_PX = 280

RECORDER_ICON = "#E4572E"  # the theme's primary colour: enough contrast on white and on near-black


def _clear(key: str) -> None:
    st.session_state[f"{key}-clears"] = st.session_state.get(f"{key}-clears", 0) + 1


def canvas_key(key: str) -> str:
    """The session-state key of a drawing pad; clearing gives the pad a fresh key."""
    return f"{key}-{st.session_state.get(f'{key}-clears', 0)}"


def drawing(key: str, stroke_width: int = 18) -> np.ndarray | None:
    """A 280×280 pad, white ink on black, with a clear button: the RGBA pixels, or None while empty."""
    from streamlit_drawable_canvas import st_canvas  # registers its component, which needs a running app

    result = st_canvas(stroke_color="#FFFFFF", background_color="#000000", stroke_width=stroke_width,
                       height=CANVAS_PX, width=CANVAS_PX, drawing_mode="freedraw", return_image_data=True,
                       key=canvas_key(key))
    st.button("Clear", key=f"{key}-clear", on_click=_clear, args=(key,), icon=":material/ink_eraser:")
    if not (result.json_data or {}).get("objects"):
        return None
    try:
        # Not result.image_data: that decodes whatever the browser sent, before any check.
        return canvas_pixels(result.image_bytes)
    except mvae.InputError as exc:
        st.warning(str(exc), icon=":material/block:")
    except (ValueError, TypeError, AttributeError):  # a tampered value that is no base64 data URL at all
        st.warning(UNREADABLE, icon=":material/block:")
    return None


# The pad sends a PNG of exactly CANVAS_PX × CANVAS_PX (fabric's toDataURL, multiplier 1, no retina
# scaling); stored without any compression that is 314 KB. A PNG can unpack to a thousand times its size,
# so its byte count and its header's dimensions are checked before a single pixel is decoded.
MAX_DRAWING_BYTES = 1 << 20

REDRAW = "Clear the pad and draw again."

UNREADABLE = f"The drawing's image could not be read as a PNG. {REDRAW}"


def canvas_pixels(png: bytes | None) -> np.ndarray | None:
    """The RGBA pixels of the drawing pad's PNG; mvae.InputError for anything the pad cannot have sent."""
    if png is None:
        return None
    if len(png) > MAX_DRAWING_BYTES:
        raise mvae.InputError(f"The drawing arrived as {len(png) / 1e6:.1f} MB, more than the pad ever sends "
                              f"({MAX_DRAWING_BYTES / 1e6:.1f} MB at most). {REDRAW}")
    try:
        with warnings.catch_warnings():  # Pillow's decompression-bomb warning: the size is checked below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(png), formats=["PNG"])  # reads the header only
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):  # a damaged or non-PNG image
        raise mvae.InputError(UNREADABLE) from None
    with image:
        if image.size != (CANVAS_PX, CANVAS_PX):
            width, height = image.size
            raise mvae.InputError(f"The drawing is {width}×{height} pixels, but the pad is {CANVAS_PX}×{CANVAS_PX}. "
                                  f"{REDRAW}")
        try:
            return np.asarray(image.convert("RGBA"))
        except (OSError, SyntaxError, ValueError):  # truncated or corrupt pixel data
            raise mvae.InputError(UNREADABLE) from None


def stroke_width(key: str) -> int:
    return st.slider("Stroke width", 6, 40, 18, key=f"{key}-stroke")


def recorder(key: str) -> bytes | None:
    from audio_recorder_streamlit import audio_recorder  # a custom component: needs a running app

    return audio_recorder(text="Click the microphone, say a digit, then wait", neutral_color=RECORDER_ICON,
                          recording_color="#D62728", icon_size="2x", pause_threshold=1.0, key=key)


WAV_HEADER_BYTES = 44

# What the browser's file dialog offers: a convenience for the visitor, not a check. The MIME type makes
# Streamlit skip its own check of the name on the server, which would otherwise raise before the page's
# script runs and show its generic error box instead of words; the content is checked instead (see below).
UPLOAD_TYPES = ["wav", "audio/wav"]

SOURCES = {"mic": "Microphone", "recorder": "Recorder", "upload": "WAV file"}


def speech_input(key: str) -> bytes | None:
    """One of three ways to give a spoken digit; the bytes of the chosen one, or None."""
    source = st.segmented_control("Input", list(SOURCES), format_func=SOURCES.get, default="mic",
                                  key=f"{key}-source") or "mic"
    if source == "mic":
        clip = st.audio_input("Record a spoken digit", sample_rate=8000, key=f"{key}-mic")
        return clip.getvalue() if clip else None
    if source == "recorder":
        take = recorder(f"{key}-recorder")
        if take is not None and len(take) <= WAV_HEADER_BYTES:
            # The recorder sends a bare header when the first buffer it hears is pure silence.
            st.info("There is no recording yet: the recorder heard only silence. Click the microphone and "
                    "start speaking straight away.", icon=":material/mic_off:")
            return None
        return take
    upload = st.file_uploader("A short WAV file with one spoken digit", type=UPLOAD_TYPES, key=f"{key}-upload")
    # Only the bytes go on: a file's name and MIME type are whatever the browser says. The model's front end
    # reads the content itself and refuses, in words, bytes that are not what a .wav name promises.
    return upload.getvalue() if upload else None
