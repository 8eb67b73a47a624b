import streamlit as st

from webapp import figures, names, show, state

st.title("Generate")
st.markdown("Pick a digit and the model imagines it in every modality, sampling its latent belief about that "
            "digit. A higher temperature widens the belief and gives more varied, less tidy samples.")
pipe = state.pipeline()

digit_col, temp_col, seed_col, n_col = st.columns(4)
digit = digit_col.selectbox("Digit", range(10), index=3, key="gen-digit")
temperature = temp_col.slider("Temperature", 0.0, 3.0, 1.0, 0.1, key="gen-temperature")
seed = seed_col.number_input("Seed", 0, 2**31 - 1, 0, key="gen-seed")
n = n_col.slider("Samples", 1, 8, 6, key="gen-n")

scripts, voices = state.drawn(pipe.modalities), state.spoken(pipe.modalities)
with state.guard(), state.heavy():
    samples = pipe.generate(digit, n=n, temperature=temperature, seed=int(seed))
    titles = [f"#{i + 1}" for i in range(n)]
    if scripts:
        rows = [names.modality_name(s) for s in scripts]
        st.plotly_chart(figures.image_grid([samples.images[s] for s in scripts], rows, titles))
    for name in voices:
        st.caption(f"{names.noun(name)}: the spoken samples")
        for start in range(0, n, show.PLAYERS_PER_ROW):
            for col, i in zip(st.columns(show.PLAYERS_PER_ROW), range(start, min(start + show.PLAYERS_PER_ROW, n))):
                with col:
                    st.caption(f"#{i + 1}, which the model reads as {samples.labels[i]}")
                    show.show_audio(samples.voices(name)[i])
