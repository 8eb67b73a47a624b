"""Streamlit pieces shared by the app's pages: the cached model, error display, inputs and plotly figures.

Nothing here computes with the model. Inputs go to the facade (`mvae.load()` and the Pipeline methods),
and what comes back (numpy arrays) is only arranged into widgets and figures. Every facade call that decodes
audio or runs the model holds a slot of the server's one pool (webapp/pool.py) while it runs.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import logging
import os
import warnings
from contextlib import contextmanager
from functools import cached_property

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image
from plotly.subplots import make_subplots

import mvae
from mvae.signals.audio import wav_bytes
from webapp import pool
from webapp.pool import POOL, Busy

LOG = logging.getLogger("mvae.app")
SCRIPTS = {"farsi": "Farsi", "kannada": "Kannada"}
NAMES = {"farsi": "Farsi drawing", "kannada": "Kannada drawing", "speech": "Speech", "prior": "Prior N(0, I)",
         "fused": "Fused (product)"}
# Okabe-Ito colours: distinguishable with colour-blindness, readable on light and dark backgrounds.
COLOURS = {"farsi": "#E69F00", "kannada": "#56B4E9", "speech": "#009E73", "prior": "#999999", "fused": "#D55E00"}
# Tableau 10: ten hues that stay distinct on a white and on a near-black background.
DIGIT_COLOURS = ["#4E79A7", "#F28E2B", "#E15759", "#76B7B2", "#59A14F", "#EDC948", "#B07AA1", "#FF9DA7",
                 "#9C755F", "#BAB0AC"]
# Unicode digits, shown beside the model's own rendering of each class.
GLYPHS = {"farsi": "۰۱۲۳۴۵۶۷۸۹", "kannada": "೦೧೨೩೪೫೬೭೮೯"}
CANVAS_PX = 280
RECORDER_ICON = "#E4572E"  # the theme's primary colour: enough contrast on white and on near-black
APOLOGY = ("Sorry, something went wrong while preparing this part of the page. "
           "Please try again or try another input.")
NOT_EVALUATED = ("This checkpoint has not been evaluated yet, so there is nothing to show here. "
                 "The evaluator writes these results next to the checkpoint; reload the page after it has run.")


# -- the model and errors ----------------------------------------------------------------------------------
@st.cache_resource(show_spinner="Loading the model…")
def _load(path: str) -> mvae.Pipeline:
    return mvae.load(path or None)


def _through_navigation() -> None:
    """Reruns through app.py when a fresh server was entered at a page's URL.

    Streamlit runs a `pages/` script on its own (the pre-`st.navigation` convention) until the main script
    has called `st.navigation` once in the process, so a first visit straight to /draw would miss app.py's
    page config and error guard.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def pipeline() -> mvae.Pipeline:
    """The model, loaded once per process, whose heavy calls each take a slot of the server's pool; a page
    that cannot get it says why and stops."""
    _through_navigation()
    try:
        return PooledPipeline(_load(os.environ.get("MVAE_CHECKPOINT", "")))
    except mvae.CheckpointError as exc:
        st.error(f"The model could not be loaded. {exc}")
        st.stop()


# -- the pool: heavy work from every session goes through webapp.pool's few slots -------------------------
@contextmanager
def heavy():
    """Holds one of the server's heavy-work slots for the block. While every slot is taken the visitor reads
    that the demo is waiting, with the seconds left; `pool.Busy` when the wait is over (`guard` shows it)."""
    notice = None

    def waiting(left: float) -> None:
        nonlocal notice
        notice = notice or st.empty()
        # Writing the notice also lets Streamlit stop this script if its session was closed meanwhile.
        notice.info(f"{pool.WAITING} (at most {left:.0f} s more)…", icon=":material/hourglass_top:")

    try:
        with POOL.slot(waiting):
            if notice is not None:
                notice.empty()
                notice = None
            yield
    finally:
        if notice is not None:
            notice.empty()


def pooled(section):
    """`heavy` for a function, such as a fragment: the whole section runs in one slot."""
    @functools.wraps(section)
    def run(*args, **kwargs):
        with heavy():
            return section(*args, **kwargs)
    return run


class _PooledDecoded(mvae.Decoded):
    """A Decoded whose Griffin-Lim, run when a page first asks for a waveform, takes a slot too."""

    @cached_property
    def speech(self) -> list[mvae.SpeechOutput]:
        with heavy():
            return POOL.call(mvae.Decoded.speech.func, self)


def _pooled_result(value):
    if isinstance(value, mvae.Decoded) and not isinstance(value, _PooledDecoded):
        return _PooledDecoded(**{f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, mvae.Prediction):
        return dataclasses.replace(value, decoded=_pooled_result(value.decoded))
    return value


class PooledPipeline:
    """An mvae.Pipeline whose every call that decodes audio or runs the model holds a slot of the pool, and
    whose results do the same for their lazy Griffin-Lim. The rest (names, settings, the evaluator's files)
    passes straight through. tests/test_app_pool.py checks that every public member of mvae.Pipeline is
    sorted into HEAVY or LIGHT, so that a new model call cannot bypass the pool."""

    HEAVY = frozenset({"prepare", "predict", "decode", "label_posterior", "generate", "traverse", "restyle",
                       "dimension_effects", "interpolate"})
    LIGHT = frozenset({"config", "modalities", "latent_dim", "style_modalities", "latent_layout", "latent_map",
                       "report", "report_table", "sweep_results", "folder", "source", "model", "metadata",
                       "front_end"})

    def __init__(self, pipe: mvae.Pipeline):
        self._pipe = pipe

    def __getattr__(self, name: str):
        value = getattr(self._pipe, name)
        if name not in self.HEAVY:
            return value

        @functools.wraps(value)
        def call(*args, **kwargs):
            with heavy():
                return _pooled_result(POOL.call(value, *args, **kwargs))
        return call


@contextmanager
def guard():
    """Shows what went wrong in words a visitor can act on; a traceback never reaches the page."""
    try:
        yield
    except Busy as exc:
        st.warning(str(exc), icon=":material/hourglass_disabled:")
    except mvae.InputError as exc:
        st.info(str(exc), icon=":material/info:")
    except (mvae.CheckpointError, mvae.DataError) as exc:
        st.error(str(exc), icon=":material/error:")
    except Exception:  # st.stop and st.rerun are BaseExceptions, so they still pass through
        LOG.exception("unexpected error while rendering a page")
        st.error(APOLOGY, icon=":material/sentiment_dissatisfied:")


def guarded(section):
    """`guard` for a function, so that an `st.fragment` rerun, which calls it alone, is covered too."""
    @functools.wraps(section)
    def run(*args, **kwargs):
        with guard():
            return section(*args, **kwargs)
    return run


def report(pipe: mvae.Pipeline, name: str = "eval.json") -> dict | None:
    """One of the evaluator's JSON files, or None when it is absent or unreadable (with a warning)."""
    try:
        return pipe.report(name)
    except (OSError, ValueError):
        st.warning(f"The file {name} next to the checkpoint could not be read; re-run the evaluator.")
        return None


def sweep_results(pipe: mvae.Pipeline) -> dict | None:
    try:
        return pipe.sweep_results()
    except (OSError, ValueError):
        st.warning("The sweep's results.json could not be read; re-run the sweep.")
        return None


# An eval.md written before the evaluator wrote its marks in words: emoji show as empty boxes without an
# emoji font, so they become the words the evaluator writes now.
_EMOJI_MARKS = {" ✅": ", met", " ❌": ", **missed**"}


def eval_markdown(pipe: mvae.Pipeline) -> str | None:
    try:
        table = pipe.report_table()
    except OSError:
        return None
    if table is None:
        return None
    for emoji, words in _EMOJI_MARKS.items():
        table = table.replace(emoji, words)
    return table


# -- names a person reads, for the evaluator's keys ----------------------------------------------------------
MODALITY_NAMES = {"farsi": "Farsi", "kannada": "Kannada", "speech": "speech", "label": "the label"}
EXTRA_SETS = {"kannada/dig": "Dig-MNIST", "farsi/remaining": "Hoda remaining"}
BAR_LINES = {"extra_accuracy/kannada/dig": "accuracy on Dig-MNIST",
             "multimodal_accuracy": "accuracy from two or three inputs",
             # reports written before the bar had one line per generated target
             "label_coherence": "coherence of what the label generates",
             "coherence": "coherence from one modality to another",
             "robustness": "stand-ins for real users"}
BAR_SECTIONS = {"unimodal_accuracy": "accuracy from {} alone", "diversity": "diversity of generated {} digits",
                "halftone": "half-tone share of generated {} digits",
                "frechet": "Fréchet distance of generated {} digits",
                "live_dimensions": "live latent dimensions for {}"}
# The home page's accuracy metrics. Short labels under one heading: a metric cuts its label at the column's
# edge, and "Accuracy from farsi + kannada + speech" did not fit a quarter of the page.
HOME_ACCURACY = {"farsi": "Farsi alone", "kannada": "Kannada alone", "speech": "Speech alone",
                 "farsi+kannada+speech": "All three"}
SWEEP_PARAMS = {"latent_dim": "latent size", "hidden": "width", "label_weight": "label weight",
                "speech_weight": "speech weight", "beta": "β", "beta_warmup_epochs": "β warm-up (epochs)",
                "lr": "learning rate", "aug_strength": "speech augmentation", "image_aug": "digit augmentation"}


def modality_name(name: str) -> str:
    return MODALITY_NAMES.get(name, name)


def inputs_name(key: str) -> str:
    """An input subset or a direction as a person reads it: 'farsi+speech->kannada' is 'Farsi + speech → Kannada'."""
    given, arrow, made = key.partition("->")
    text = " + ".join(modality_name(m) for m in given.split("+"))
    return f"{text} → {modality_name(made)}" if arrow else text


def extra_set_name(key: str) -> str:
    return EXTRA_SETS.get(key, key.replace("/", " "))


def bar_line_name(key: str) -> str:
    """A line of the evaluator's quality bar (a key of eval.json's meets_bar) in words."""
    if key in BAR_LINES:
        return BAR_LINES[key]
    section, _, rest = key.partition("/")
    if section == "label_coherence" and rest:
        return f"coherence of label → {modality_name(rest)}"
    if section == "coherence" and rest:
        return f"coherence of {inputs_name(rest)}"
    if section in BAR_SECTIONS and rest:
        return BAR_SECTIONS[section].format(modality_name(rest))
    return key.replace("_", " ").replace("/", ", ")


def sweep_table(trials: list[dict]) -> list[dict]:
    """The best trials side by side, one row per parameter: nine parameters across did not fit the page.
    Three significant digits, so that a learning rate of 0.0011299721774595118 reads 0.00113."""
    names = list(dict.fromkeys(k for t in trials for k in t.get("params", {})))
    rows = [{"": "objective", **{f"trial {t.get('number')}": f"{t['value']:.2%}" if t.get("value") is not None else "—"
                                  for t in trials}}]
    for name in names:
        rows.append({"": SWEEP_PARAMS.get(name, name),
                     **{f"trial {t.get('number')}": f"{t['params'][name]:.3g}" if name in t.get("params", {}) else "—"
                        for t in trials}})
    return rows


# The sweep's parameters that set the model's shape, and where the shipped model keeps each; the others
# (weights, learning rate, augmentation) change how it is trained, not what it is.
SWEEP_SHAPE = {"latent_dim": lambda cfg: cfg.latent_dim, "hidden": lambda cfg: cfg.hidden}
# Settings of a whole model configuration worth naming when a sweep records the one its trials started from.
SWEEP_BASE_KEYS = {"architecture": "architecture", "style_dim": "style latent size", "image_decoder": "image decoder",
                   "speech_likelihood": "speech likelihood"}


def sweep_differences(sweep: dict, cfg) -> list[str]:
    """How the sweep's models differ from the shipped configuration `cfg`, one phrase per setting: the shape
    parameters its trials tried and the shipped value is not among, then any recorded base setting that differs."""
    trials = sweep.get("best_trials") or sweep.get("trials") or []  # the table shows the best ones
    phrases = []
    for name, shipped in SWEEP_SHAPE.items():
        tried = sorted({t["params"][name] for t in trials if name in t.get("params", {})})
        if tried and shipped(cfg) not in tried:
            own = shipped(cfg)
            if name == "latent_dim" and getattr(cfg, "style_dim", 0):
                own = f"{own} shared + {cfg.style_dim} style per input"
            phrases.append(f"{SWEEP_PARAMS.get(name, name)} {_either(tried)} "
                           f"(shipped: {own})")
    base = sweep.get("model_config") or {}
    for key, words in SWEEP_BASE_KEYS.items():
        if key in base and hasattr(cfg, key) and base[key] != getattr(cfg, key):
            phrases.append(f"{words} {base[key]} (shipped: {getattr(cfg, key)})")
    return phrases


def _either(values: list) -> str:
    words = [f"{v:g}" for v in values]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def sweep_note(sweep: dict, cfg) -> str:
    """A sentence that says whether the sweep's trials are models like the shipped one."""
    differences = sweep_differences(sweep, cfg)
    unknown = ("" if sweep.get("model_config") else " Its results record only the parameters it varied, so the "
               "trials' other settings are not known from them.")
    if not differences:
        return "The sweep's best trials have the shipped model's shape." + unknown
    return ("These trials are not models like the shipped one: " + "; ".join(differences) + ". They show what mattered "
            "among the sweep's own models, not how well the shipped one does." + unknown)


def quality_bar_lines(meets: dict[str, bool]) -> tuple[list[str], list[str]]:
    """The names of the lines of the bar that are met, and of those missed."""
    return ([bar_line_name(k) for k, ok in meets.items() if ok],
            [bar_line_name(k) for k, ok in meets.items() if not ok])


def remember(pred: mvae.Prediction, source: str) -> None:
    """Keeps the latest latent so that the latent explorer can start from it."""
    st.session_state["last_latent"] = {"z": pred.latent_mean, "logvar": pred.latent_logvar,
                                       "source": source, "label": pred.label}


# -- inputs ------------------------------------------------------------------------------------------------
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


# -- display -----------------------------------------------------------------------------------------------
FAINTEST_SHOWN = 0.1  # a peak below this is left as it is rather than stretched into noise


def stretched(image: np.ndarray) -> np.ndarray:
    """Show a generated digit at full ink: where the styles it could be drawn in disagree its ink is faint,
    which says how sure the model is of the stroke, not which digit it is (peak scaling, as the judges do)."""
    image = np.asarray(image, np.float32)
    peak = float(image.max(initial=0.0))
    return image / peak if FAINTEST_SHOWN <= peak < 1 else image


def big(image: np.ndarray, scale: int = 5) -> np.ndarray:
    """Nearest-neighbour enlargement, so that 28×28 pixels stay crisp instead of blurred by the browser."""
    return np.clip(np.repeat(np.repeat(stretched(image), scale, 0), scale, 1), 0, 1)


def show_image(image: np.ndarray, caption: str, scale: int = 5) -> None:
    st.image(big(image, scale), caption=caption, clamp=True, width=28 * scale)


# Two to a row: the player's controls (time, seek bar, volume, menu) need about 300 px; four to a row left
# each less than that beside the sidebar, and the seek bar shrank to nothing.
PLAYERS_PER_ROW = 2


def show_audio(speech: mvae.SpeechOutput) -> None:
    """A player for the spoken digit, with the log-mel it was made from right below it."""
    st.audio(speech.wav_bytes, format="audio/wav")
    show_spectrogram(speech.mel)


# -- spectrograms: what people look at to see whether a sound is speech ---------------------------------------
SPECTROGRAM_CAPTION = "Log-mel: time →, pitch ↑"
# Each mel bin drawn this many pixels high and each frame this many wide: a 64 × 64 log-mel becomes 128 × 192,
# small under a player yet with its harmonics visible. An image, not a plotly chart: a dozen players on one
# page would each bring a whole chart (and its toolbar) to the browser for a picture nobody zooms.
SPECTROGRAM_SCALE = (2, 3)
SPECTROGRAM_PX = 192  # shown width: the picture's own, so that the browser does not blur it
# Viridis, spread over 256 levels: perceptually even, readable in the light and the dark theme, and the same
# scale as the report's heatmaps. Exact colours, so that a test can read the levels back.
SPECTROGRAM_LEVELS = 256


@functools.cache
def spectrogram_colours() -> np.ndarray:
    """(SPECTROGRAM_LEVELS, 3) uint8: the colour of each level of a spectrogram, quietest first."""
    from plotly.colors import hex_to_rgb, sequential

    anchors = np.array([hex_to_rgb(c) for c in sequential.Viridis], np.float32)
    at = np.linspace(0, len(anchors) - 1, SPECTROGRAM_LEVELS)
    return np.stack([np.interp(at, np.arange(len(anchors)), anchors[:, c]) for c in range(3)], 1).round() \
        .astype(np.uint8)


def spectrogram_image(mel: np.ndarray) -> np.ndarray:
    """A log-mel (n_mels, n_frames) as an RGB picture: time to the right, low mel bins at the bottom, each clip
    spread over the whole colour scale from its quietest to its loudest bin."""
    mel = np.asarray(mel, np.float32)
    if mel.ndim != 2 or not np.isfinite(mel).all():
        raise mvae.InputError("This sound's spectrogram cannot be drawn: it is not a finite 2-D log-mel.")
    low, high = float(mel.min(initial=0.0)), float(mel.max(initial=0.0))
    levels = (mel - low) / (high - low) if high > low else np.zeros_like(mel)
    index = np.round(levels[::-1] * (SPECTROGRAM_LEVELS - 1)).astype(np.intp)
    high_px, wide_px = SPECTROGRAM_SCALE
    return spectrogram_colours()[np.repeat(np.repeat(index, high_px, 0), wide_px, 1)]


def show_spectrogram(mel: np.ndarray, caption: str = SPECTROGRAM_CAPTION) -> None:
    st.image(spectrogram_image(mel), caption=caption, width=SPECTROGRAM_PX)


def show_label(pred: mvae.Prediction) -> None:
    st.metric("Predicted digit", str(pred.label), help="The class the label head finds most likely")
    st.plotly_chart(prob_bar(pred.probs))


def show_reconstructions(pred: mvae.Prediction, captions: str = "Reconstruction") -> None:
    cols = st.columns([1, 1, 2])
    for col, (name, title) in zip(cols, SCRIPTS.items()):
        with col:
            show_image(pred.images[name], f"{captions}: {title}")
    with cols[2]:
        st.caption(f"{captions}: speech")
        show_audio(pred.speech)
    other_styles(pred)


STYLE_SAMPLES = 6
# Voices cost a Griffin-Lim each and a player's width: three fit one row, and three already show the spread.
STYLE_VOICES = 3


def _next(key: str) -> None:
    st.session_state[key] = st.session_state.get(key, 0) + 1


def other_styles(pred: mvae.Prediction) -> None:
    """The same digit in the missing modalities, each time in a style drawn afresh from the prior."""
    pipe = pipeline()
    missing = [name for name in SCRIPTS if name not in pred.inputs]
    if not pipe.style_modalities or not missing:
        return
    key = "style-draw"
    voiced = "speech" not in pred.inputs
    head, button = st.columns([3, 1])
    head.markdown("**In other styles.** " + style_sentence(voiced))
    button.button("New styles", icon=":material/casino:", key=f"{key}-button", on_click=_next, args=(key,))
    decoded = pipe.restyle(pred.latent_mean, keep=tuple(pred.inputs), n=STYLE_SAMPLES,
                           seed=st.session_state.get(key, 0))
    st.plotly_chart(image_grid(np.stack([decoded.images[name] for name in missing]),
                               [SCRIPTS[name] for name in missing], [f"#{i + 1}" for i in range(STYLE_SAMPLES)]))
    if voiced:
        for i, (col, speech) in enumerate(zip(st.columns(STYLE_VOICES), decoded.speech[:STYLE_VOICES])):
            with col:
                st.caption(f"The voice of #{i + 1}")
                show_audio(speech)


def style_sentence(voiced: bool) -> str:
    """What the styles row shows, in numbers that match it: every column a new hand, and (when speech was
    not given) the voices of the first STYLE_VOICES columns only."""
    hands = "The digit stays; each column draws it in a new hand"
    if not voiced:
        return hands + "."
    return hands + (f" and a new voice. The first {STYLE_VOICES} voices are below"
                    if STYLE_VOICES < STYLE_SAMPLES else " and a new voice, below") + "."


def latent_parts(pipe: mvae.Pipeline) -> dict[str, str]:
    """The parts of the full latent a person can move, with their display names."""
    return {part: "shared (the digit)" if part == "shared" else f"{SCRIPTS.get(part, part)} style"
            for part in pipe.latent_layout}


def dimension_name(pipe: mvae.Pipeline, dim: int) -> str:
    for part, where in pipe.latent_layout.items():
        if where.start <= dim < where.stop:
            return f"{'shared' if part == 'shared' else SCRIPTS.get(part, part).lower() + ' style'} {dim - where.start}"
    return f"dim {dim}"


def ranked_dimensions(pipe: mvae.Pipeline, latent: np.ndarray, target: str, part: str) -> list[int]:
    """The dimensions of one part of the latent, those that change `target` most first."""
    where = pipe.latent_layout[part]
    effects = pipe.dimension_effects(latent, target)[where]
    return [where.start + int(i) for i in np.argsort(-effects)]


TRAVERSED_DIMS = 4  # rows the traversal starts with: enough to see what the part does, few enough to decode fast
MAX_TRAVERSED_DIMS = 8


def _rank_again(key: str) -> None:
    st.session_state.pop(key, None)


def dimension_picker(pipe: mvae.Pipeline, latent: np.ndarray, source: str, script: str, part: str) -> list[int]:
    """The dimensions to traverse: the TRAVERSED_DIMS that change `script` most from `latent` (re-ranked
    whenever the starting point changes), unless the visitor picked some by hand, which are then kept. A
    caption says which of the two is shown."""
    ranked = ranked_dimensions(pipe, latent, script, part)
    key = f"trav-dims-{script}-{part}"
    ranking_key = f"{key}-ranking"  # the selection this picker made itself, last time
    chosen = st.session_state.get(key)
    by_hand = chosen is not None and list(chosen) != st.session_state.get(ranking_key)
    if not by_hand:
        # Set before the widget exists in this run: the widget's own `default` is read only when it first
        # appears, so a new starting point would leave the last one's ranking selected.
        st.session_state[key] = st.session_state[ranking_key] = ranked[:TRAVERSED_DIMS]
    dims = st.multiselect("Dimensions", ranked, max_selections=MAX_TRAVERSED_DIMS, key=key,
                          format_func=lambda d: dimension_name(pipe, d))
    if by_hand:
        note, again = st.columns([3, 1])
        note.caption(f"Your own choice, kept when the starting point changes. The list offers them ranked for "
                     f"{source}, most effective first.")
        again.button(f"Rank for {source}", key=f"{key}-again", on_click=_rank_again, args=(key,),
                     icon=":material/sort:")
    else:
        st.caption(f"Ranked for {source}, most effective first: the dimensions that change the {SCRIPTS[script]} "
                   "digit most from this starting point.")
    return list(dims)


def reference_glyphs(pipe: mvae.Pipeline, script: str) -> None:
    """The ten digits of a script as the model draws each class, captioned with the Unicode digit."""
    images = class_images(pipe)[script]
    st.image([big(img, 2) for img in images], caption=[f"{d}  {GLYPHS[script][d]}" for d in range(10)], clamp=True)


def class_images(pipe: mvae.Pipeline) -> dict[str, np.ndarray]:
    return _class_images(pipe, str(pipe.folder))


@st.cache_resource(show_spinner=False)
def _class_images(_pipe: mvae.Pipeline, folder: str) -> dict[str, np.ndarray]:
    return _pipe.decode(np.stack([_pipe.label_posterior(d)[0] for d in range(10)])).images


# -- the report's spectrograms: real and generated speech of every digit, side by side -------------------------
DATA_ENV = "MVAE_DATA_DIR"  # the prepared data folder, as the library's command lines read it
SPECTROGRAM_SEED = 0  # the T = 1 samples are the same on every visit
MAX_RECORDING_BYTES = 10 * 2**20  # an FSDD test file is under 20 kB; more is not an FSDD recording
DIGIT_SPECTROGRAMS = {"real": "real", "means": "at the means", "sampled": "T = 1"}
NO_REAL_DATA = (f"Real recordings are missing because the app ships no data (FSDD is 3,000 files under CC BY-SA). "
                f"Set {DATA_ENV} to a folder prepared by `python -m mvae.data.download` to see an FSDD test "
                "recording of each digit beside the generated ones.")


def digit_spectrograms(pipe: mvae.Pipeline) -> tuple[dict[str, list[np.ndarray]], str | None]:
    """The log-mel of every digit, by kind (DIGIT_SPECTROGRAMS): an FSDD test recording's when the data is
    at hand, the model's at the label's posterior mean and one sample at temperature 1; and why the real ones
    are missing, or None."""
    return _digit_spectrograms(pipe, str(pipe.folder), os.environ.get(DATA_ENV, ""))


@st.cache_resource(show_spinner="Drawing the spectrograms…")
def _digit_spectrograms(_pipe: mvae.Pipeline, folder: str, data_dir: str):
    digits = range(_pipe.config.n_classes)
    mels = {"means": list(_pipe.decode(np.stack([_pipe.label_posterior(d)[0] for d in digits])).mels),
            "sampled": [_pipe.generate(d, n=1, temperature=1.0, seed=SPECTROGRAM_SEED).mels[0] for d in digits]}
    real, why = _real_spectrograms(_pipe, data_dir, digits)
    return ({"real": real, **mels} if real else mels), why


def _real_spectrograms(pipe: mvae.Pipeline, data_dir: str, digits) -> tuple[list[np.ndarray] | None, str | None]:
    """The log-mel the model makes of the first FSDD test recording of each digit (one speaker, the first by
    name, whenever the split has them all)."""
    from mvae.data.sources import fsdd_recordings, read_regular  # numpy only: the app's lean install has it

    if not data_dir:
        return None, NO_REAL_DATA
    try:
        first = {}
        for item in fsdd_recordings(data_dir, "test"):
            first.setdefault(item.digit, item)
        return [pipe.prepare({"speech": read_regular(first[d].path, MAX_RECORDING_BYTES)})[1].log_mel
                for d in digits], None
    except (mvae.DataError, mvae.InputError, OSError, KeyError) as exc:
        LOG.warning("real recordings for the report's spectrograms: %s", exc)
        return None, (f"Real recordings are missing: the FSDD test split in {DATA_ENV} could not be read "
                      f"({exc.__class__.__name__}). Prepare it again with `python -m mvae.data.download`.")


def digit_spectrograms_caption(mels: dict[str, list[np.ndarray]]) -> str:
    """What the report's spectrograms are, and what to look for in them."""
    shown = ", ".join(f"**{DIGIT_SPECTROGRAMS[k]}**" for k in DIGIT_SPECTROGRAMS if k in mels)
    return (f"Log-mel spectrograms (time →, pitch ↑) of each digit: {shown}. Real speech shows harmonics "
            "(horizontal stripes), formants that move and a clear onset; a smeared burst is not speech.")


def show_digit_spectrograms(mels: dict[str, list[np.ndarray]], digits) -> None:
    """Each digit's spectrograms in one row, side by side, in the order of DIGIT_SPECTROGRAMS."""
    for d in digits:
        kinds = [k for k in DIGIT_SPECTROGRAMS if k in mels]
        st.image([spectrogram_image(mels[k][d]) for k in kinds], width=SPECTROGRAM_REPORT_PX,
                 caption=[f"{d}, {DIGIT_SPECTROGRAMS[k]}" for k in kinds])


SPECTROGRAM_REPORT_PX = 132  # three to a row in half of a wide page


def latent_sentence(cfg) -> str:
    """The model card's account of the latent: the shared part and, when there are any, the styles."""
    shared = (f"a {cfg.latent_dim}-dimensional shared latent (which digit), fused by the product of experts")
    if not cfg.style_dim:
        return f"PoE-MVAE with {shared}"
    return (f"PoE-MVAE with {shared}, and a {cfg.style_dim}-dimensional private style latent per input (how "
            "this one is drawn or said): a missing modality is drawn in a style from its prior, so it varies")


def not_evaluated() -> None:
    st.info(NOT_EVALUATED, icon=":material/hourglass_empty:")


# -- figures -----------------------------------------------------------------------------------------------
def _layout(fig: go.Figure, height: int, **kwargs) -> go.Figure:
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), **kwargs)
    return fig


def prob_bar(probs: np.ndarray) -> go.Figure:
    top = int(np.argmax(probs))
    colours = [COLOURS["fused"] if d == top else COLOURS["prior"] for d in range(len(probs))]
    fig = go.Figure(go.Bar(x=[str(d) for d in range(len(probs))], y=probs, marker_color=colours,
                           hovertemplate="digit %{x}: %{y:.1%}<extra></extra>"))
    fig.update_yaxes(range=[0, 1], tickformat=".0%", title="probability")
    fig.update_xaxes(title="digit", type="category")
    return _layout(fig, 220)


def waveform_figure(wave: np.ndarray, rate: int, span: tuple[int, int]) -> go.Figure:
    step = max(1, len(wave) // 4000)  # a few thousand points draw quickly and look the same
    t = np.arange(0, len(wave), step) / rate
    fig = go.Figure(go.Scatter(x=t, y=wave[::step], mode="lines", line=dict(width=1, color=COLOURS["kannada"]),
                               name="recording", hoverinfo="skip"))
    fig.add_vrect(x0=span[0] / rate, x1=span[1] / rate, fillcolor=COLOURS["speech"], opacity=0.25, line_width=0,
                  annotation_text="voiced segment used", annotation_position="top left")
    fig.update_xaxes(title="seconds")
    fig.update_yaxes(title="amplitude", showticklabels=False)
    return _layout(fig, 220, showlegend=False)


def image_grid(images: np.ndarray, row_titles: list[str], col_titles: list[str],
               height: int | None = None) -> go.Figure:
    """Rows × columns of 28×28 images as one crisp heatmap, with a 2-pixel border between tiles."""
    images = np.asarray(images, np.float32)
    rows, cols = len(row_titles), len(col_titles)
    tile = images.shape[-1] + 2
    mosaic = np.full((rows * tile, cols * tile), np.nan, np.float32)
    for i, img in enumerate(images.reshape(rows * cols, *images.shape[-2:])):
        r, c = divmod(i, cols)
        mosaic[r * tile + 1:r * tile + tile - 1, c * tile + 1:c * tile + tile - 1] = stretched(img)
    fig = go.Figure(go.Heatmap(z=mosaic, colorscale="Greys_r", zmin=0, zmax=1, showscale=False, hoverinfo="skip"))
    centres = np.arange(max(rows, cols)) * tile + tile / 2 - 0.5
    fig.update_xaxes(tickvals=centres[:cols], ticktext=col_titles, side="top", showgrid=False, zeroline=False,
                     constrain="domain")
    fig.update_yaxes(tickvals=centres[:rows], ticktext=row_titles, autorange="reversed", showgrid=False,
                     zeroline=False, scaleanchor="x")
    return _layout(fig, height or 60 + 70 * rows, plot_bgcolor="rgba(0,0,0,0)")


def posterior_figure(experts: dict[str, tuple[np.ndarray, np.ndarray]],
                     fused: tuple[np.ndarray, np.ndarray]) -> go.Figure:
    """Every expert's Gaussian and their product, one latent dimension per x position."""
    dims = np.arange(len(fused[0]))
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("posterior mean", "posterior variance (log scale)"))
    curves = {"prior": (np.zeros_like(fused[0]), np.zeros_like(fused[1])), **experts, "fused": fused}
    for name, (mean, logvar) in curves.items():
        style = dict(color=COLOURS[name], dash="dot" if name == "prior" else "solid",
                     width=3 if name == "fused" else 1.5)
        for row, values in ((1, mean), (2, np.exp(logvar))):
            fig.add_trace(go.Scatter(x=dims, y=values, mode="lines+markers", marker=dict(size=4), line=style,
                                     name=NAMES[name], legendgroup=name, showlegend=row == 1,
                                     hovertemplate=f"{NAMES[name]}<br>dim %{{x}}: %{{y:.3g}}<extra></extra>"),
                          row=row, col=1)
    fig.update_yaxes(type="log", dtick=1, row=2, col=1)
    fig.update_xaxes(title="latent dimension", row=2, col=1)
    return _layout(fig, 480, legend=dict(orientation="h", y=-0.15))


def heatmap(matrix: np.ndarray, rows: list[str], cols: list[str], title: str) -> go.Figure:
    text = [["" if np.isnan(v) else f"{v:.1%}" for v in row] for row in matrix]
    fig = go.Figure(go.Heatmap(z=matrix, x=cols, y=rows, text=text, texttemplate="%{text}", zmin=0, zmax=1,
                               colorscale="Viridis", hovertemplate="%{y} → %{x}: %{z:.1%}<extra></extra>"))
    fig.update_xaxes(title="generated modality", side="bottom")
    fig.update_yaxes(title="given modality", autorange="reversed")
    return _layout(fig, 320, title=dict(text=title, font=dict(size=13)))


def bars(values: dict[str, float], title: str, percent: bool = True, horizontal: bool = False) -> go.Figure:
    keys, vals = list(values), [values[k] for k in values]
    text = [f"{v:.1%}" if percent else f"{v:.3g}" for v in vals] if len(vals) <= 16 else None
    bar = go.Bar(y=keys, x=vals, orientation="h", text=text) if horizontal else go.Bar(x=keys, y=vals, text=text)
    fig = go.Figure(bar)
    fig.update_traces(marker_color=COLOURS["kannada"], textposition="auto")
    if percent:
        (fig.update_xaxes if horizontal else fig.update_yaxes)(tickformat=".0%", range=[0, 1.05])
    if horizontal:
        fig.update_yaxes(autorange="reversed")  # first key on top, as it reads
    return _layout(fig, max(260, 32 * len(keys)) if horizontal else 300, title=dict(text=title, font=dict(size=13)))


def recon_figure(recon: dict[str, dict[str, float]]) -> go.Figure:
    """Given against missing for each modality, each on its own scale (speech NLLs dwarf the images')."""
    fig = make_subplots(rows=1, cols=len(recon), subplot_titles=list(recon))
    for i, losses in enumerate(recon.values(), start=1):
        for kind, colour in (("given", COLOURS["kannada"]), ("missing", COLOURS["fused"])):
            fig.add_trace(go.Bar(x=[kind], y=[losses.get(kind)], name=kind, marker_color=colour, legendgroup=kind,
                                 showlegend=i == 1, text=[f"{losses.get(kind, 0):.4g}"], textposition="auto"),
                          row=1, col=i)
    fig.update_yaxes(title="negative log-likelihood", row=1, col=1)
    fig = _layout(fig, 320, title=dict(
        text="Reconstruction loss with the modality given and missing (lower is better)", font=dict(size=13)))
    return fig.update_layout(margin=dict(t=70))


def trials_figure(trials: list[dict]) -> go.Figure:
    fig = go.Figure(go.Scatter(x=[t["number"] for t in trials], y=[t["value"] for t in trials], mode="markers",
                               hovertext=[json.dumps(t.get("params", {})) for t in trials],
                               marker=dict(color=COLOURS["kannada"], size=8)))
    fig.update_xaxes(title="trial")
    fig.update_yaxes(title="objective")
    return _layout(fig, 300, title=dict(text="All trials", font=dict(size=13)))


def latent_scatter(coords: np.ndarray, labels: np.ndarray, you: np.ndarray | None = None) -> go.Figure:
    """The test set's latents on the two directions that best separate the digits; customdata holds each row."""
    fig = go.Figure()
    for d in range(10):
        rows = np.flatnonzero(labels == d)
        fig.add_trace(go.Scattergl(x=coords[rows, 0], y=coords[rows, 1], mode="markers", name=str(d),
                                   customdata=rows, marker=dict(size=5, color=DIGIT_COLOURS[d], opacity=0.75),
                                   hovertemplate=f"digit {d}<extra></extra>"))
    if you is not None:
        fig.add_trace(go.Scatter(x=you[:, 0], y=you[:, 1], mode="markers", name="your input",
                                 marker=dict(symbol="star", size=18, color=COLOURS["fused"],
                                             line=dict(width=1.5, color="white")),
                                 hovertemplate="your input<extra></extra>"))
    fig.update_xaxes(title="discriminant 1")
    fig.update_yaxes(title="discriminant 2")
    # A click selects its point (plotly reports a click in "select" drag mode as an empty selection).
    return _layout(fig, 520, legend=dict(title="digit"), clickmode="event+select", dragmode="zoom")


def curves(history: list[dict], series: dict[str, callable], title: str, percent: bool = False) -> go.Figure:
    fig = go.Figure()
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    for name, get in series.items():
        values = [_get(get, h) for h in history]
        # A recipe may evaluate only every few epochs: the line joins the epochs it has.
        fig.add_trace(go.Scatter(x=epochs, y=values, mode="lines+markers", name=name, connectgaps=True))
    fig.update_xaxes(title="epoch", dtick=1 if len(epochs) <= 20 else None)
    if percent:
        fig.update_yaxes(tickformat=".0%")
    return _layout(fig, 320, title=dict(text=title, font=dict(size=13)))


def _get(get, record):
    try:
        return get(record)
    except (KeyError, TypeError, IndexError):
        return None


# The browser's player counts whole seconds, so a clip under one reads "0:00 / 0:00", as if it were empty.
# A shorter clip is padded with silence to one second; the page gives its real length.
MIN_PLAYER_SECONDS = 1.0


def player_wav(wave: np.ndarray, rate: int) -> bytes:
    """WAV bytes of `wave` for the page's player: at least MIN_PLAYER_SECONDS, the clip first."""
    wave = np.asarray(wave, np.float32)
    missing = int(np.ceil(MIN_PLAYER_SECONDS * rate)) - len(wave)
    if missing > 0:
        wave = np.concatenate([wave, np.zeros(missing, np.float32)])
    return wav_bytes(wave, rate)


def play_wave(wave: np.ndarray, rate: int, mel: np.ndarray) -> None:
    """A player for a clip, with `mel`, the log-mel the model made of it, right below it."""
    st.audio(player_wav(wave, rate), format="audio/wav")
    show_spectrogram(mel)
