"""Signals in and out of the model: the speech front end, preparing a drawn digit and augmenting digits."""
