"""Datasets: readers of the prepared format, per-modality banks and label pairing."""

from .paired import Bank, PairedDataset, Pairs
from .sources import IMAGE_SPLITS, ImageSet, Recording, fsdd_recordings, load_images, resolve_data_dir

__all__ = ["Bank", "PairedDataset", "Pairs", "IMAGE_SPLITS", "ImageSet", "Recording", "fsdd_recordings",
           "load_images", "resolve_data_dir"]
