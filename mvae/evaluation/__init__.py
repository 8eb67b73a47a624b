"""Evaluation: metrics, latent analysis, the judges, the robustness stand-ins and the report
(`python -m mvae.evaluation.report`)."""
