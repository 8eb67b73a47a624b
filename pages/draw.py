import streamlit as st

from webapp import ui

st.title("Draw a digit")
pipe = ui.pipeline()

script = st.segmented_control("Script", list(ui.SCRIPTS), format_func=ui.SCRIPTS.get, default="farsi",
                              key="draw-script") or "farsi"
st.caption(f"The ten {ui.SCRIPTS[script]} digits, as the model writes them:")
with ui.guard():  # on its own: when the demo is busy, the glyphs are refused but the pad still shows
    ui.reference_glyphs(pipe, script)

pad, result = st.columns([1, 2], gap="large")
with pad:
    ink = ui.drawing("draw", ui.stroke_width("draw"))
with result:
    if ink is None:
        st.info(f"Draw a {ui.SCRIPTS[script]} digit on the black pad; the answer appears as soon as you "
                "lift the mouse or finger.", icon=":material/draw:")
    else:
        with ui.guard(), ui.heavy():
            pred = pipe.predict({script: ink})
            ui.remember(pred, f"your {ui.SCRIPTS[script]} drawing")
            label, seen = st.columns([2, 1])
            with label:
                ui.show_label(pred)
            with seen:
                ui.show_image(pred.inputs[script], "What the model sees (28×28)")
            ui.show_reconstructions(pred)
