"""Plotly figures and the pictures and sounds made from the model's arrays; nothing here draws on a page."""

from __future__ import annotations

import functools
import json

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

import mvae
from mvae.signals.audio import wav_bytes
from webapp.names import DIGIT_COLOURS, OTHER_COLOURS, colour, noun

# The charts' own colours, Okabe-Ito like the modalities': a bar, a line or a point, and what a chart marks on it.
ACCENT = "#56B4E9"
HIGHLIGHT = "#009E73"
FUSED, PRIOR = OTHER_COLOURS["fused"], OTHER_COLOURS["prior"]

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


# Each mel bin drawn this many pixels high and each frame this many wide: a 64 × 64 log-mel becomes 128 × 192,
# small under a player yet with its harmonics visible. An image, not a plotly chart: a dozen players on one
# page would each bring a whole chart (and its toolbar) to the browser for a picture nobody zooms.
SPECTROGRAM_SCALE = (2, 3)

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


def _layout(fig: go.Figure, height: int, **kwargs) -> go.Figure:
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), **kwargs)
    return fig


def prob_bar(probs: np.ndarray) -> go.Figure:
    top = int(np.argmax(probs))
    colours = [FUSED if d == top else PRIOR for d in range(len(probs))]
    fig = go.Figure(go.Bar(x=[str(d) for d in range(len(probs))], y=probs, marker_color=colours,
                           hovertemplate="digit %{x}: %{y:.1%}<extra></extra>"))
    fig.update_yaxes(range=[0, 1], tickformat=".0%", title="probability")
    fig.update_xaxes(title="digit", type="category")
    return _layout(fig, 220)


def waveform_figure(wave: np.ndarray, rate: int, span: tuple[int, int]) -> go.Figure:
    step = max(1, len(wave) // 4000)  # a few thousand points draw quickly and look the same
    t = np.arange(0, len(wave), step) / rate
    fig = go.Figure(go.Scatter(x=t, y=wave[::step], mode="lines", line=dict(width=1, color=ACCENT),
                               name="recording", hoverinfo="skip"))
    fig.add_vrect(x0=span[0] / rate, x1=span[1] / rate, fillcolor=HIGHLIGHT, opacity=0.25, line_width=0,
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
        style = dict(color=colour(name), dash="dot" if name == "prior" else "solid",
                     width=3 if name == "fused" else 1.5)
        for row, values in ((1, mean), (2, np.exp(logvar))):
            fig.add_trace(go.Scatter(x=dims, y=values, mode="lines+markers", marker=dict(size=4), line=style,
                                     name=noun(name), legendgroup=name, showlegend=row == 1,
                                     hovertemplate=f"{noun(name)}<br>dim %{{x}}: %{{y:.3g}}<extra></extra>"),
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
    fig.update_traces(marker_color=ACCENT, textposition="auto")
    if percent:
        (fig.update_xaxes if horizontal else fig.update_yaxes)(tickformat=".0%", range=[0, 1.05])
    if horizontal:
        fig.update_yaxes(autorange="reversed")  # first key on top, as it reads
    return _layout(fig, max(260, 32 * len(keys)) if horizontal else 300, title=dict(text=title, font=dict(size=13)))


def recon_figure(recon: dict[str, dict[str, float]]) -> go.Figure:
    """Given against missing for each modality, each on its own scale (speech NLLs dwarf the images')."""
    fig = make_subplots(rows=1, cols=len(recon), subplot_titles=list(recon))
    for i, losses in enumerate(recon.values(), start=1):
        for kind, shade in (("given", ACCENT), ("missing", FUSED)):
            fig.add_trace(go.Bar(x=[kind], y=[losses.get(kind)], name=kind, marker_color=shade, legendgroup=kind,
                                 showlegend=i == 1, text=[f"{losses.get(kind, 0):.4g}"], textposition="auto"),
                          row=1, col=i)
    fig.update_yaxes(title="negative log-likelihood", row=1, col=1)
    fig = _layout(fig, 320, title=dict(
        text="Reconstruction loss with the modality given and missing (lower is better)", font=dict(size=13)))
    return fig.update_layout(margin=dict(t=70))


def trials_figure(trials: list[dict]) -> go.Figure:
    fig = go.Figure(go.Scatter(x=[t["number"] for t in trials], y=[t["value"] for t in trials], mode="markers",
                               hovertext=[json.dumps(t.get("params", {})) for t in trials],
                               marker=dict(color=ACCENT, size=8)))
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
                                 marker=dict(symbol="star", size=18, color=FUSED,
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
