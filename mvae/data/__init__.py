"""Datasets: readers of the prepared format, per-modality banks and label pairing."""

from .sources import ImageSet, Recording, load_images, recordings, resolve_data_dir

__all__ = ["Bank", "PairedDataset", "Pairs", "ImageSet", "Recording", "load_images", "recordings", "resolve_data_dir"]
_PAIRED = ("Bank", "PairedDataset", "Pairs")


def __getattr__(name):
    # The pairing needs torch, and reading or checking the prepared files does not: imported when asked for,
    # so that train.py refuses a bad data set without paying for torch's import.
    if name in _PAIRED:
        from . import paired

        return getattr(paired, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
