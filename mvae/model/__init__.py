"""The model: product of experts, encoder and decoder networks, the modalities, the MVAE and its objective."""
