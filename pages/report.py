import numpy as np
import streamlit as st

from webapp import figures, names, show, state

st.title("Report")
pipe = state.pipeline()
info = pipe.metadata.get("info", {})
history = info.get("history", [])
evaluation = state.report(pipe)

st.header("Training")
if not history:
    st.info("This checkpoint carries no training history.")
else:
    subsets = [s for s in info.get("metrics", {}).get("accuracy", {}) if s != "label"]  # the last evaluated
    loss, acc = st.columns(2)
    loss.plotly_chart(figures.curves(history, {"train loss": lambda h: h["train"]["loss"],
                                               "test −ELBO": lambda h: -h["test"]["elbo"]}, "Loss per epoch"))
    acc.plotly_chart(figures.curves(history, {s: lambda h, s=s: h["test"]["accuracy"][s] for s in subsets},
                                    "Test accuracy per input subset", percent=True))

st.header("Evaluation on the test splits")
if evaluation is None:
    show.not_evaluated()
else:
    top = st.columns(4)
    top[0].metric("ELBO (all inputs)", f"{evaluation['elbo']:.1f}" if "elbo" in evaluation else "—")
    top[1].metric("Active latent units", f"{evaluation.get('active_units', '—')} / {pipe.latent_dim}")
    for col, (name, value) in zip(top[2:], evaluation.get("extra_accuracy", {}).items()):
        col.metric(f"Accuracy on {names.extra_set_name(name)}", f"{value:.1%}")

    acc, uni = st.columns([2, 1])
    subsets = {names.inputs_name(k): v for k, v in evaluation.get("accuracy", {}).items() if k != "label"}
    acc.plotly_chart(figures.bars(subsets, "Accuracy by the inputs given (paired test examples)", horizontal=True))
    alone = {names.modality_name(k): v for k, v in evaluation.get("unimodal_accuracy", {}).items()}
    uni.plotly_chart(figures.bars(alone, "Accuracy from one input, whole test split"))
    if evaluation.get("meets_bar"):
        met, missed = names.quality_bar_lines(evaluation["meets_bar"])
        # Streamlit's own icon font and words: an emoji shows as an empty box on a machine without an emoji font.
        if met:
            st.markdown(":green[:material/check_circle:] **Quality bars met:** " + ", ".join(met) + ".")
        if missed:
            st.markdown(":red[:material/cancel:] **Quality bars missed:** " + ", ".join(missed) + ".")

    st.subheader("Generation")
    settings = evaluation.get("generation", {})
    st.caption("Every generated digit or word is read by a judge: a classifier trained on real training data "
               "only (`python -m mvae.evaluation.judges`), never on blur, class averages or a model's output. "
               f"Generation is at temperature {settings.get('temperature', 1):g}, the bar's; speech is judged after "
               "Griffin-Lim.")
    label_coherence = evaluation.get("label_coherence", {})
    if label_coherence:
        st.plotly_chart(figures.bars({names.inputs_name(f"label->{t}"): v for t, v in label_coherence.items()},
                                     "Coherence from the label alone", horizontal=True))
    coherence = evaluation.get("coherence", {})
    judged = list(pipe.modalities)
    matrix = np.full((len(judged), len(judged)), np.nan)
    for key, value in coherence.items():
        given, _, made = key.partition("->")
        if given in judged and made in judged:
            matrix[judged.index(given), judged.index(made)] = value
    for name, value in evaluation.get("reconstruction_coherence", {}).items():  # the ceiling of each column
        if name in judged:
            matrix[judged.index(name), judged.index(name)] = value
    heat, pairs = st.columns([3, 2])
    shown = [names.modality_name(n) for n in judged]
    heat.plotly_chart(figures.heatmap(matrix, shown, shown, "Coherence: is the generated digit the given one? "
                                                            "(diagonal: its own reconstruction)"))
    pairs.plotly_chart(figures.bars({names.inputs_name(k): v for k, v in coherence.items() if "+" in k},
                                    "Two inputs → the third", horizontal=True))
    scripts = list(evaluation.get("diversity", {}))
    if scripts:
        cells = st.columns(4)
        for script in scripts:
            name = names.modality_name(script)
            halftone, floor = evaluation["halftone"][script], evaluation.get("frechet_real_floor", {}).get(script)
            cells[0].metric(f"Diversity, {name}", f"{evaluation['diversity'][script]:.2f}",
                            help="Mean distance between generated digits of a class, over that between real ones.")
            cells[1].metric(f"Half-tone share, {name}", f"{halftone['ratio']:.2f}× real",
                            help=f"Half-tone ink: {halftone['generated']:.1%} generated, {halftone['real']:.1%} real.")
            cells[2].metric(f"Fréchet distance, {name}", f"{evaluation['frechet'][script]:.2f}",
                            help="In the judge's features, generated against real test digits"
                                 + (f"; two sets of real digits score {floor:.2f}." if floor is not None else "."))
            cells[3].metric(f"Live dimensions, {name}", str(evaluation.get("live_dimensions", {}).get(script, "—")),
                            help="Latent dimensions that change the digit by at least 0.02 per pixel over ±2.")
    effects = evaluation.get("dimension_effects", {})
    if effects:
        target = st.selectbox("Effect of each latent dimension on", list(effects), format_func=names.modality_name)
        st.plotly_chart(figures.bars({str(i): v for i, v in enumerate(effects[target])},
                                     f"Mean change of {names.modality_name(target)} per value when a dimension goes "
                                     "from −2 to +2",
                                     percent=False))

    recon = evaluation.get("recon", {})
    if recon:
        st.plotly_chart(figures.recon_figure(recon))
    if evaluation.get("kl_per_dim"):
        kl = dict(enumerate(evaluation["kl_per_dim"]))
        st.plotly_chart(figures.bars({str(k): v for k, v in kl.items()}, "KL per latent dimension (nats)",
                                     percent=False))
    table = state.eval_markdown(pipe)
    if table:
        with st.expander("The evaluator's table"):
            st.markdown(table)

if state.spoken(pipe.modalities):
    st.header("What the digits sound like")
    with state.guard():  # on its own: when the demo is busy, the sweep below still shows
        mels, missing = state.digit_spectrograms(pipe)
        st.caption(names.digit_spectrograms_caption(mels))
        if missing:
            st.info(missing, icon=":material/folder_off:")
        for col, digits in zip(st.columns(2), (range(0, 5), range(5, 10))):
            with col:
                show.show_digit_spectrograms(mels, digits)

st.header("Hyper-parameter sweep")
sweep = state.sweep_results(pipe)
if sweep is None:
    st.info("No sweep results yet: the sweep writes them to checkpoints/sweep/results.json.",
            icon=":material/hourglass_empty:")
else:
    st.info(names.sweep_note(sweep, pipe.config), icon=":material/compare_arrows:")
    st.caption("Best trials (the objective is the mean validation accuracy over the input subsets)")
    st.dataframe(names.sweep_table(sweep.get("best_trials", [])), hide_index=True, width="stretch")
    importance, history = st.columns(2)
    if sweep.get("importance"):
        weights = {names.SWEEP_PARAMS.get(k, k): v for k, v in sweep["importance"].items()}
        importance.plotly_chart(figures.bars(weights, "Parameter importance", percent=False, horizontal=True))
    trials = [t for t in sweep.get("trials", []) if t.get("value") is not None]
    if trials:
        history.plotly_chart(figures.trials_figure(trials))
