"""Training: the loop (`mvae.training.loop`) and the hyper-parameter sweep (`python -m mvae.training.sweep`)."""
