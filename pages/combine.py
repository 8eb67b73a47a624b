import streamlit as st

from webapp import figures, inputs, names, show, state

st.title("Combine inputs")
st.markdown(
    "Give any mix of a Farsi drawing, a Kannada drawing and a recording, and switch each one on or off. "
    "Each input is an *expert* with its own Gaussian belief about the latent; the model multiplies them with "
    "the prior. Confident experts (small variance) pull the product towards themselves."
)
pipe = state.pipeline()
width = inputs.stroke_width("combine")

scripts, voices = state.drawn(pipe.modalities), state.spoken(pipe.modalities)
given = {}
for col, name in zip(st.columns(len(scripts) + len(voices)), scripts + voices):
    with col:
        use = st.toggle(names.noun(name), value=True, key=f"combine-use-{name}")
        value = inputs.speech_input(f"combine-{name}") if name in voices else inputs.drawing(f"combine-{name}", width)
        if use and value is not None:
            given[name] = value

if not given:
    st.info("Draw, record or switch on at least one input.", icon=":material/join_inner:")
else:
    with state.guard(), state.heavy():
        pred = pipe.predict(given)
        state.remember(pred, "your combined inputs")
        st.subheader("Given: " + ", ".join(names.noun(n) for n in given))
        alone = st.columns(len(given) + 1)
        for col, name in zip(alone, given):
            col.metric(f"{names.noun(name)} alone", str(pipe.predict({name: given[name]}).label))
        alone[-1].metric("All together", str(pred.label))
        st.plotly_chart(figures.posterior_figure(pred.experts, (pred.latent_mean, pred.latent_logvar)))
        st.plotly_chart(figures.prob_bar(pred.probs), key="combine-probs")
        show.show_reconstructions(pred)
