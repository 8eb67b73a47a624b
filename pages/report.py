import numpy as np
import streamlit as st

from mvae import ui

st.title("Report")
pipe = ui.pipeline()
history = pipe.metadata.get("info", {}).get("history", [])
evaluation = ui.report(pipe)

st.header("Training")
if not history:
    st.info("This checkpoint carries no training history.")
else:
    subsets = [s for s in history[-1].get("test", {}).get("accuracy", {}) if s != "label"]
    loss, acc = st.columns(2)
    loss.plotly_chart(ui.curves(history, {"train loss": lambda h: h["train"]["loss"],
                                          "test −ELBO": lambda h: -h["test"]["elbo"]}, "Loss per epoch"))
    acc.plotly_chart(ui.curves(history, {s: lambda h, s=s: h["test"]["accuracy"][s] for s in subsets},
                               "Test accuracy per input subset", percent=True))

st.header("Evaluation on the test splits")
if evaluation is None:
    ui.not_evaluated()
else:
    top = st.columns(4)
    top[0].metric("ELBO (all inputs)", f"{evaluation['elbo']:.1f}" if "elbo" in evaluation else "—")
    top[1].metric("Active latent units", f"{evaluation.get('active_units', '—')} / {pipe.latent_dim}")
    for col, (name, value) in zip(top[2:], evaluation.get("extra_accuracy", {}).items()):
        col.metric(f"Accuracy on {name}", f"{value:.1%}")

    acc, uni = st.columns([2, 1])
    subsets = {k: v for k, v in evaluation.get("accuracy", {}).items() if k != "label"}
    acc.plotly_chart(ui.bars(subsets, "Accuracy by the inputs given (paired test examples)", horizontal=True))
    uni.plotly_chart(ui.bars(evaluation.get("unimodal_accuracy", {}), "Accuracy from one input, whole test split"))
    if evaluation.get("meets_bar"):
        st.caption("Quality bars: " + ", ".join(f"{'✅' if ok else '❌'} {name}"
                                                 for name, ok in evaluation["meets_bar"].items()))

    coherence = evaluation.get("coherence", {})
    names = ["farsi", "kannada", "speech"]
    matrix = np.full((3, 3), np.nan)
    for key, value in coherence.items():
        given, _, made = key.partition("->")
        if given in names and made in names:
            matrix[names.index(given), names.index(made)] = value
    heat, pairs = st.columns([3, 2])
    heat.plotly_chart(ui.heatmap(matrix, names, names, "Coherence: is the generated digit the given one?"))
    pairs.plotly_chart(ui.bars({k: v for k, v in coherence.items() if "+" in k}, "Two inputs → the third",
                               horizontal=True))

    recon = evaluation.get("recon", {})
    if recon:
        st.plotly_chart(ui.recon_figure(recon))
    if evaluation.get("kl_per_dim"):
        kl = dict(enumerate(evaluation["kl_per_dim"]))
        st.plotly_chart(ui.bars({str(k): v for k, v in kl.items()}, "KL per latent dimension (nats)", percent=False))
    table = ui.eval_markdown(pipe)
    if table:
        with st.expander("The evaluator's table"):
            st.markdown(table)

st.header("Hyper-parameter sweep")
sweep = ui.sweep_results(pipe)
if sweep is None:
    st.info("No sweep results yet: the sweep writes them to checkpoints/sweep/results.json.",
            icon=":material/hourglass_empty:")
else:
    best, importance = st.columns([3, 2])
    with best:
        st.caption("Best trials")
        st.table([{"trial": t.get("number"), "value": t.get("value"), **t.get("params", {})}
                  for t in sweep.get("best_trials", [])])
    if sweep.get("importance"):
        importance.plotly_chart(ui.bars(sweep["importance"], "Parameter importance", percent=False,
                                        horizontal=True))
    trials = [t for t in sweep.get("trials", []) if t.get("value") is not None]
    if trials:
        st.plotly_chart(ui.trials_figure(trials))
