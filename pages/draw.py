import streamlit as st

from webapp import inputs, names, show, state

st.title("Draw a digit")
pipe = state.pipeline()

scripts = state.drawn(pipe.modalities)
if not scripts:
    st.info("This model reads no drawings: give it a digit on another page.", icon=":material/draw:")
    st.stop()
script = st.segmented_control("Script", scripts, format_func=names.modality_name, default=scripts[0],
                              key="draw-script") or scripts[0]
title = names.modality_name(script)
st.caption(f"The ten {title} digits, as the model writes them:")
with state.guard():  # on its own: when the demo is busy, the glyphs are refused but the pad still shows
    show.reference_glyphs(pipe, script)

pad, result = st.columns([1, 2], gap="large")
with pad:
    ink = inputs.drawing("draw", inputs.stroke_width("draw"))
with result:
    if ink is None:
        st.info(f"Draw a {title} digit on the black pad; the answer appears as soon as you "
                "lift the mouse or finger.", icon=":material/draw:")
    else:
        with state.guard(), state.heavy():
            pred = pipe.predict({script: ink})
            state.remember(pred, f"your {title} drawing")
            label, seen = st.columns([2, 1])
            with label:
                show.show_label(pred)
            with seen:
                show.show_image(pred.inputs[script], "What the model sees (28×28)")
            show.show_reconstructions(pred)
