import streamlit as st

from webapp import ui

st.title("Combine inputs")
st.markdown(
    "Give any mix of a Farsi drawing, a Kannada drawing and a recording, and switch each one on or off. "
    "Each input is an *expert* with its own Gaussian belief about the latent; the model multiplies them with "
    "the prior. Confident experts (small variance) pull the product towards themselves."
)
pipe = ui.pipeline()
width = ui.stroke_width("combine")

inputs = {}
for col, name in zip(st.columns(3), ("farsi", "kannada", "speech")):
    with col:
        use = st.toggle(ui.NAMES[name], value=True, key=f"combine-use-{name}")
        value = ui.speech_input("combine-speech") if name == "speech" else ui.drawing(f"combine-{name}", width)
        if use and value is not None:
            inputs[name] = value

if not inputs:
    st.info("Draw, record or switch on at least one input.", icon=":material/join_inner:")
else:
    with ui.guard(), ui.heavy():
        pred = pipe.predict(inputs)
        ui.remember(pred, "your combined inputs")
        st.subheader("Given: " + ", ".join(ui.NAMES[n] for n in inputs))
        alone = st.columns(len(inputs) + 1)
        for col, name in zip(alone, inputs):
            col.metric(f"{ui.NAMES[name]} alone", str(pipe.predict({name: inputs[name]}).label))
        alone[-1].metric("All together", str(pred.label))
        st.plotly_chart(ui.posterior_figure(pred.experts, (pred.latent_mean, pred.latent_logvar)))
        st.plotly_chart(ui.prob_bar(pred.probs), key="combine-probs")
        ui.show_reconstructions(pred)
