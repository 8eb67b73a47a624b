import streamlit as st

from webapp import names, show, state

st.title("Digits you can draw and say")
st.markdown(
    "One model, three ways to write a digit: **Farsi** handwriting, **Kannada** handwriting and **spoken** "
    "English. It is a multimodal variational autoencoder whose posterior is a *product of experts* (PoE-MVAE, "
    "Wu & Goodman 2018): each input you give is one expert, their product is what the model believes, and from "
    "that belief it redraws the digit in both scripts and says it aloud, whatever you left out."
)

st.subheader("How to use it")
steps = st.columns(3)
steps[0].markdown("**1. Give a digit.** On *Draw*, draw a Farsi or Kannada digit; on *Speak*, say one or "
                  "upload a recording.")
steps[1].markdown("**2. Read the answer.** You get the predicted digit, the digit redrawn in both scripts and "
                  "the spoken digit to play.")
steps[2].markdown("**3. Explore.** *Combine* inputs and switch them off, *Generate* new samples, and walk the "
                  "*Latent explorer*; the *Report* shows how well the model does.")

pipe = state.pipeline()
cfg, info = pipe.config, pipe.metadata.get("info", {})
evaluation = state.report(pipe)

st.subheader("Model card")
left, right = st.columns(2)
with left:
    st.markdown(
        f"""
**Model.** {names.latent_sentence(cfg)}; {cfg.architecture} networks ({cfg.hidden} hidden units), a linear
label head, trained on every non-empty subset of the {names.count_word(len(pipe.modalities))} inputs.
Speech is an 8 kHz log-mel spectrogram ({cfg.audio.n_mels} mel bins); what you hear is rebuilt from it with
Griffin-Lim, so it sounds robotic by design.

**Training.** {len(info.get("history", []))} epochs, {info.get("train_seconds", 0) / 60:.0f} min of training.
Examples are paired by label only: a Farsi image, a Kannada image and a recording of the same digit.

**Limits.** The speech comes from six adult male speakers, so other voices and accents are harder.
Drawings are centred and scaled like the training data, but very thin or tiny strokes still confuse it.
"""
    )
with right:
    st.markdown(
        """
| data | what | licence |
|---|---|---|
| [Hoda](http://farsiocr.ir) (Khosravi & Kabir 2007) | handwritten Farsi digits: 60k train, 20k test, 22k extra | research and non-commercial use only |
| [Kannada-MNIST](https://github.com/vinayprabhu/Kannada_MNIST) (Prabhu 2019) | handwritten Kannada digits: 60k train, 10k test, 10k Dig-MNIST | no licence stated; cite Prabhu 2019, [arXiv:1908.01242](https://arxiv.org/abs/1908.01242) |
| [Free Spoken Digit Dataset](https://github.com/Jakobovski/free-spoken-digit-dataset) | 3,000 English recordings, 6 speakers; files 0–4 of each are the test split | [CC BY-SA 4.0](https://creativecommons.org/licenses/by-sa/4.0/) |

Because of the Hoda terms, this demo and its model are for research and non-commercial use only.
"""
    )

st.subheader("How well it does")
if evaluation is None:
    show.not_evaluated()
else:
    accuracy = {**evaluation.get("accuracy", {}), **evaluation.get("unimodal_accuracy", {})}
    st.markdown("**Accuracy of the predicted digit on the test splits, by the input given**")
    shown = names.home_accuracy(pipe.modalities)
    for col, (key, label) in zip(st.columns(len(shown)), shown.items()):
        if key in accuracy:
            col.metric(label, f"{accuracy[key]:.1%}")
    coherence = {k: v for k, v in evaluation.get("coherence", {}).items() if "+" not in k}
    if coherence:
        st.caption(f"Cross-modal coherence (a generated digit that a separate classifier reads as the right "
                   f"digit) averages {sum(coherence.values()) / len(coherence):.1%} over the "
                   f"{names.count_word(len(coherence))} directions. "
                   "Details are on the Report page.")
