"""Evaluation, one module per family of figures: metrics (ELBO, label accuracy and the formulas of the
generative metrics), coherence, generation (diversity, sharpness and Fréchet distance), analysis (the
latent), robustness (stand-ins for real users), the judges and their synthetic voices; bar (the quality bar,
its figures in bar.json), render (the tables) and report, the command that runs them all
(`python -m mvae.evaluation.report`)."""
