import streamlit as st

from webapp import figures, inputs, names, show, state

st.title("Say a digit")
pipe = state.pipeline()
voices = state.spoken(pipe.modalities)
if not voices:
    st.info("This model does not listen: it was trained without recordings. Give it a digit on another page.",
            icon=":material/mic_off:")
    st.stop()
voice = st.radio("Heard as", voices, format_func=names.noun, horizontal=True, key="speak-as") if len(voices) > 1 \
    else voices[0]
st.markdown("Say one digit in English (zero to nine), close to the microphone, or upload a short WAV file.")

audio = inputs.speech_input("speak")
if audio is None:
    st.info("Record or upload a spoken digit to see what the model hears.", icon=":material/mic:")
else:
    with state.guard(), state.heavy():
        pred = pipe.predict({voice: audio})
        state.remember(pred, "your recording")
        heard = pred.prepared_speech
        wave, used = st.columns([2, 1])
        with wave:
            st.plotly_chart(figures.waveform_figure(heard.waveform, heard.sample_rate, heard.span))
        with used:
            st.caption(f"The voiced segment it used ({len(heard.voiced) / heard.sample_rate:.2f} s), and what "
                       "the model hears of it")
            show.play_wave(heard.voiced, heard.sample_rate, pred.inputs[voice])
        label, _ = st.columns([2, 1])
        with label:
            show.show_label(pred)
        show.show_reconstructions(pred, "Generated")
