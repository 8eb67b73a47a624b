import numpy as np
import streamlit as st

from webapp import figures, names, show, state

st.title("Latent explorer")
pipe = state.pipeline()
evaluation = state.report(pipe) or {}
scripts, voices = state.drawn(pipe.modalities), state.spoken(pipe.modalities)


def start_point(key: str) -> tuple[np.ndarray, np.ndarray, str]:
    """The latest input's latent, or the model's belief about a chosen digit."""
    last = st.session_state.get("last_latent")
    options = (["last"] if last else []) + list(range(10))
    choice = st.selectbox("Start from", options, key=key,
                          format_func=lambda o: f"the last input ({last['source']})" if o == "last" else f"digit {o}")
    if choice == "last":
        return last["z"], last["logvar"], last["source"]
    mean, logvar = pipe.label_posterior(choice)
    return mean, logvar, f"digit {choice}"


def listen(decoded, options: list, labels: list[str], key: str) -> None:
    if not voices:
        return
    pick = st.select_slider("Listen at", options, format_func=lambda i: labels[i], key=key)
    heard = pipe.decode(decoded.latents[pick])
    for col, name in zip(st.columns(len(voices)), voices):
        with col:
            show.show_voice(heard, name)


@st.fragment
@state.guarded
@state.pooled
def traversal() -> None:
    st.subheader("Traverse the latent")
    if not scripts:
        st.info("This model draws no digits to traverse.")
        return
    z, _, source = start_point("trav-start")
    parts = names.latent_parts(pipe)
    c1, c2, c3, c4 = st.columns([2, 2, 1, 1])
    script = c1.radio("Show", scripts, format_func=names.modality_name, key="trav-script", horizontal=True)
    part = c2.radio("Move", [p for p in parts if p in ("shared", script)], format_func=parts.get, key="trav-part",
                    horizontal=True)
    reach = c3.slider("Range ±", 0.5, 5.0, 3.0, 0.5, key="trav-range")
    steps = c4.slider("Steps", 3, 11, 7, 2, key="trav-steps")
    # Measured, not guessed: the dimensions that change the shown digit most, from this starting point.
    dims = show.dimension_picker(pipe, z, source, script, part)
    if not dims:
        st.info("Choose at least one dimension.")
        return
    values = np.linspace(-reach, reach, steps)
    decoded = pipe.traverse(z, dims, values)
    st.caption(f"From {source}. Each row sets one dimension to the value above each column "
               "(the prior's standard deviation is 1); everything else stays as it was.")
    images = decoded.images[script].reshape(len(dims), steps, 28, 28)
    rows = [names.dimension_name(pipe, d) for d in dims]
    st.plotly_chart(figures.image_grid(images, rows, [f"{v:+.1f}" for v in values]))
    labels = [f"{names.dimension_name(pipe, d)} = {v:+.1f}" for d in dims for v in values]
    listen(decoded, list(range(len(labels))), labels, "trav-listen")


@st.fragment
@state.guarded
@state.pooled
def interpolation() -> None:
    st.subheader("Interpolate between two digits")
    c1, c2, c3 = st.columns(3)
    a = c1.selectbox("From", range(10), index=1, key="interp-a")
    b = c2.selectbox("To", range(10), index=7, key="interp-b")
    steps = c3.slider("Steps", 3, 12, 8, key="interp-steps")
    decoded = pipe.interpolate(pipe.label_posterior(a)[0], pipe.label_posterior(b)[0], steps)
    titles = [f"{t:.0%}" for t in np.linspace(0, 1, steps)]
    if scripts:
        images = np.stack([decoded.images[s] for s in scripts])
        st.plotly_chart(figures.image_grid(images, [names.modality_name(s) for s in scripts], titles))
    st.caption("The label head reads the steps as: " + " → ".join(str(d) for d in decoded.labels))
    listen(decoded, list(range(steps)), titles, "interp-listen")


@st.fragment
@state.guarded
@state.pooled
def latent_map() -> None:
    st.subheader("Map of the test set")
    lmap = pipe.latent_map
    if lmap is None:
        show.not_evaluated()
        return
    last = st.session_state.get("last_latent")
    you = lmap.project(last["z"]) if last else None
    st.caption("Each point is a test example's latent, seen along the two directions that best tell the digits "
               "apart (linear discriminant analysis). "
               + ("The star is your last input. " if last else "") + "Click a point to decode it.")
    event = st.plotly_chart(figures.latent_scatter(lmap.coords, lmap.labels, you), on_select="rerun",
                            selection_mode="points", key="latent-map")
    points = (event or {}).get("selection", {}).get("points", [])
    rows = [p["customdata"] for p in points if p.get("customdata") is not None]
    if not rows:
        return
    row = int(rows[0] if np.ndim(rows[0]) == 0 else rows[0][0])
    decoded = pipe.decode(lmap.latents[row])
    st.markdown(f"Test example of digit **{int(lmap.labels[row])}**; the model reads it as **{decoded.labels[0]}**.")
    cols = st.columns(len(scripts) + len(voices))
    for col, name in zip(cols, scripts):
        with col:
            show.show_image(decoded.images[name][0], names.modality_name(name))
    for col, name in zip(cols[len(scripts):], voices):
        with col:
            show.show_voice(decoded, name)


traversal()
interpolation()
latent_map()
