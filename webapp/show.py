"""Streamlit display pieces shared by the pages: images, players with their spectrograms, reconstructions,
the styles row and the traversal's dimension picker."""

from __future__ import annotations

import numpy as np
import streamlit as st

import mvae
from webapp import figures, names, state

NOT_EVALUATED = ("This checkpoint has not been evaluated yet, so there is nothing to show here. "
                 "The evaluator writes these results next to the checkpoint; reload the page after it has run.")


def show_image(image: np.ndarray, caption: str, scale: int = 5) -> None:
    st.image(figures.big(image, scale), caption=caption, clamp=True, width=28 * scale)


# Two to a row: the player's controls (time, seek bar, volume, menu) need about 300 px; four to a row left
# each less than that beside the sidebar, and the seek bar shrank to nothing.
PLAYERS_PER_ROW = 2


def show_audio(speech: mvae.SpeechOutput) -> None:
    """A player for the spoken digit, with the log-mel it was made from right below it."""
    st.audio(speech.wav_bytes, format="audio/wav")
    show_spectrogram(speech.mel)


SPECTROGRAM_CAPTION = "Log-mel: time →, pitch ↑"
SPECTROGRAM_PX = 192  # shown width: the picture's own, so that the browser does not blur it


def show_voice(decoded: mvae.Decoded, name: str, caption: str | None = None) -> None:
    """The first voice of one audio modality, under its name (or `caption`)."""
    st.caption(caption or names.noun(name))
    show_audio(decoded.voices(name)[0])


def show_spectrogram(mel: np.ndarray, caption: str = SPECTROGRAM_CAPTION) -> None:
    st.image(figures.spectrogram_image(mel), caption=caption, width=SPECTROGRAM_PX)


def show_label(pred: mvae.Prediction) -> None:
    st.metric("Predicted digit", str(pred.label), help="The class the label head finds most likely")
    st.plotly_chart(figures.prob_bar(pred.probs))


def show_reconstructions(pred: mvae.Prediction, captions: str = "Reconstruction") -> None:
    """Every image the model made, then the voice it made (twice as wide: a player needs the room)."""
    modalities = state.pipeline().modalities
    images, voices = state.drawn(modalities), state.spoken(modalities)
    cols = st.columns([1] * len(images) + [2] * len(voices))
    for col, name in zip(cols, images):
        with col:
            show_image(pred.images[name], f"{captions}: {names.modality_name(name)}")
    for col, name in zip(cols[len(images):], voices):
        with col:
            show_voice(pred.decoded, name, f"{captions}: {names.modality_name(name)}")
    other_styles(pred)


def _next(key: str) -> None:
    st.session_state[key] = st.session_state.get(key, 0) + 1


def other_styles(pred: mvae.Prediction) -> None:
    """The same digit in the missing modalities, each time in a style drawn afresh from the prior."""
    pipe = state.pipeline()
    missing = [name for name in state.drawn(pipe.modalities) if name not in pred.inputs]
    if not pipe.style_modalities or not missing:
        return
    key = "style-draw"
    unheard = [name for name in state.spoken(pipe.modalities) if name not in pred.inputs]
    head, button = st.columns([3, 1])
    head.markdown("**In other styles.** " + names.style_sentence(bool(unheard)))
    button.button("New styles", icon=":material/casino:", key=f"{key}-button", on_click=_next, args=(key,))
    decoded = pipe.restyle(pred.latent_mean, keep=tuple(pred.inputs), n=names.STYLE_SAMPLES,
                           seed=st.session_state.get(key, 0))
    st.plotly_chart(figures.image_grid(np.stack([decoded.images[name] for name in missing]),
                                       [names.modality_name(name) for name in missing],
                                       [f"#{i + 1}" for i in range(names.STYLE_SAMPLES)]))
    for name in unheard:
        voices = decoded.voices(name)[:names.STYLE_VOICES]
        for i, (col, speech) in enumerate(zip(st.columns(names.STYLE_VOICES), voices)):
            with col:
                st.caption(f"{names.noun(name)}, the voice of #{i + 1}")
                show_audio(speech)


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
                          format_func=lambda d: names.dimension_name(pipe, d))
    if by_hand:
        note, again = st.columns([3, 1])
        note.caption(f"Your own choice, kept when the starting point changes. The list offers them ranked for "
                     f"{source}, most effective first.")
        again.button(f"Rank for {source}", key=f"{key}-again", on_click=_rank_again, args=(key,),
                     icon=":material/sort:")
    else:
        st.caption(f"Ranked for {source}, most effective first: the dimensions that change the "
                   f"{names.modality_name(script)} digit most from this starting point.")
    return list(dims)


def reference_glyphs(pipe: mvae.Pipeline, script: str) -> None:
    """The ten digits of a script as the model draws each class, captioned with the Unicode digit."""
    images = state.class_images(pipe)[script]
    st.image([figures.big(img, 2) for img in images], clamp=True,
             caption=[f"{d}  {names.glyph(script, d)}".rstrip() for d in range(10)])


def show_digit_spectrograms(mels: dict[str, list[np.ndarray]], digits) -> None:
    """Each digit's spectrograms in one row, side by side, in the order of names.DIGIT_SPECTROGRAMS."""
    for d in digits:
        kinds = [k for k in names.DIGIT_SPECTROGRAMS if k in mels]
        st.image([figures.spectrogram_image(mels[k][d]) for k in kinds], width=SPECTROGRAM_REPORT_PX,
                 caption=[f"{d}, {names.DIGIT_SPECTROGRAMS[k]}" for k in kinds])


SPECTROGRAM_REPORT_PX = 132  # three to a row in half of a wide page


def not_evaluated() -> None:
    st.info(NOT_EVALUATED, icon=":material/hourglass_empty:")


def play_wave(wave: np.ndarray, rate: int, mel: np.ndarray) -> None:
    """A player for a clip, with `mel`, the log-mel the model made of it, right below it."""
    st.audio(figures.player_wav(wave, rate), format="audio/wav")
    show_spectrogram(mel)
