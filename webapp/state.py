"""What the pages share across a run: the model behind the server's pool, the error guard, the evaluator's
files, cached decodings and the session's memory of the latest input.

Nothing here computes with the model. Inputs go to the facade (`mvae.load()` and the Pipeline methods), and
every facade call that decodes audio or runs the model holds a slot of the server's one pool (webapp/pool.py)
while it runs.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from contextlib import contextmanager

import numpy as np
import streamlit as st

import mvae
from mvae import kinds, registry
from webapp import pool
from webapp.pool import POOL, Busy

LOG = logging.getLogger("mvae.app")

APOLOGY = ("Sorry, something went wrong while preparing this part of the page. "
           "Please try again or try another input.")


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


def drawn(modalities) -> list[str]:
    """The image-kind ones among `modalities`, in the registry's order: the facade's answers hold their
    digits in `images`."""
    return _of_group(modalities, kinds.IMAGES.group)


def spoken(modalities) -> list[str]:
    """The audio-kind ones among `modalities`, in the registry's order: the facade voices their log-mels."""
    return _of_group(modalities, kinds.SPEECH.group)


def _of_group(modalities, group: str) -> list[str]:
    return [name for name in registry.names() if name in modalities and kinds.kind(name).group == group]


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

    def voices(self, name: str) -> list[mvae.SpeechOutput]:
        if name in self.voiced:
            return self.voiced[name]
        with heavy():
            return POOL.call(mvae.Decoded.voices, self, name)


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


def remember(pred: mvae.Prediction, source: str) -> None:
    """Keeps the latest latent so that the latent explorer can start from it."""
    st.session_state["last_latent"] = {"z": pred.latent_mean, "logvar": pred.latent_logvar,
                                       "source": source, "label": pred.label}


def class_images(pipe: mvae.Pipeline) -> dict[str, np.ndarray]:
    return _class_images(pipe, str(pipe.folder))


@st.cache_resource(show_spinner=False)
def _class_images(_pipe: mvae.Pipeline, folder: str) -> dict[str, np.ndarray]:
    return _pipe.decode(np.stack([_pipe.label_posterior(d)[0] for d in range(10)])).images


DATA_ENV = "MVAE_DATA_DIR"  # the prepared data folder, as the library's command lines read it

SPECTROGRAM_SEED = 0  # the T = 1 samples are the same on every visit

MAX_RECORDING_BYTES = 10 * 2**20  # an FSDD test file is under 20 kB; more is not an FSDD recording

NO_REAL_DATA = (f"Real recordings are missing because the app ships no data (FSDD is 3,000 files under CC BY-SA). "
                f"Set {DATA_ENV} to a folder prepared by `python -m mvae.data.download` to see an FSDD test "
                "recording of each digit beside the generated ones.")


def digit_spectrograms(pipe: mvae.Pipeline) -> tuple[dict[str, list[np.ndarray]], str | None]:
    """The log-mel of every digit, by kind (names.DIGIT_SPECTROGRAMS): an FSDD test recording's when the data is
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
    from mvae.data.sources import read_regular, recordings  # numpy only: the app's lean install has it

    if not data_dir:
        return None, NO_REAL_DATA
    try:
        first = {}
        voice = spoken(pipe.modalities)[0]
        for item in recordings(data_dir, voice, "test"):
            first.setdefault(item.digit, item)
        return [pipe.prepare({voice: read_regular(first[d].path, MAX_RECORDING_BYTES)})[1].log_mel
                for d in digits], None
    except (mvae.DataError, mvae.InputError, OSError, KeyError) as exc:
        LOG.warning("real recordings for the report's spectrograms: %s", exc)
        return None, (f"Real recordings are missing: the FSDD test split in {DATA_ENV} could not be read "
                      f"({exc.__class__.__name__}). Prepare it again with `python -m mvae.data.download`.")
