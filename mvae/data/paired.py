"""Label-paired multimodal examples: one item of each modality drawn from the same digit class."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config import LABEL, N_CLASSES


@dataclass
class Bank:
    """All items of one modality in one split, in the model's input space."""

    items: torch.Tensor  # (N, *shape) float32: images in [0, 1], speech as raw log-mel
    labels: np.ndarray  # (N,) int64
    clean: np.ndarray | None = None  # (N,) the row of the unaugmented item each row was made from (None: itself)
    # (N, *shape) what a decoder reconstructs for each row when it is not the row's unaugmented item: the
    # augmented copy without its noise (mvae.signals.augment.augment_speech_warped). None: `clean` says.
    targets: torch.Tensor | None = None

    def __post_init__(self):
        if len(self.items) != len(self.labels):
            raise ValueError(f"{len(self.items)} items but {len(self.labels)} labels")
        if self.clean is not None and len(self.clean) != len(self.labels):
            raise ValueError(f"{len(self.clean)} clean rows for {len(self.labels)} items")
        if self.targets is not None and self.targets.shape != self.items.shape:
            raise ValueError(f"targets of shape {tuple(self.targets.shape)} for items of shape "
                             f"{tuple(self.items.shape)}")

    def target_rows(self, rows) -> torch.Tensor:
        """What a decoder reconstructs for these rows under clean targets."""
        return self.targets[rows] if self.targets is not None else self.items[self.clean[rows]]


def clean_key(name: str) -> str:
    """Where a batch keeps the unaugmented originals of a modality's items (PairedDataset's clean_targets)."""
    return f"{name}:clean"


@dataclass
class Pairs:
    labels: np.ndarray  # (N,)
    index: dict[str, np.ndarray]  # modality -> (N,) row of its bank, all of class labels[i]

    def __len__(self):
        return len(self.labels)


class PairedDataset:
    """Pairs items across modalities by label; the pairing is a pure function of (seed, epoch). With
    `clean_targets`, a batch also holds, under clean_key(name), the target of each item of a bank that has
    augmented copies: the unaugmented original, or the bank's own target for it (Bank.targets)."""

    def __init__(self, banks: dict[str, Bank], seed: int = 0, clean_targets: bool = False):
        self.banks = banks
        self.seed = seed
        self.clean_targets = clean_targets
        self.by_class = {
            name: [np.flatnonzero(bank.labels == c) for c in range(N_CLASSES)] for name, bank in banks.items()
        }
        for name, groups in self.by_class.items():
            empty = [c for c, g in enumerate(groups) if len(g) == 0]
            if empty:
                raise ValueError(f"{name} has no items of class {empty}; every modality needs every digit")

    def epoch_pairs(self, epoch: int, n_pairs: int) -> Pairs:
        """Fresh random pairs for one epoch, with the classes balanced."""
        rng = np.random.default_rng([self.seed, epoch])
        labels = rng.permutation(np.arange(n_pairs) % N_CLASSES)
        index = {}
        for name, groups in self.by_class.items():
            rows = np.empty(n_pairs, dtype=np.int64)
            for c in range(N_CLASSES):
                where = np.flatnonzero(labels == c)
                rows[where] = rng.choice(groups[c], size=len(where))
            index[name] = rows
        return Pairs(labels, index)

    def covering_pairs(self) -> Pairs:
        """Fixed evaluation pairs in which every item of every bank appears at least once.

        The largest bank sets the labels; the other modalities cycle through their items of each class
        in a seeded order.
        """
        rng = np.random.default_rng([self.seed, 2**31 - 1])
        anchor = max(self.banks, key=lambda n: len(self.banks[n].labels))
        labels = self.banks[anchor].labels
        index = {anchor: np.arange(len(labels))}
        for name, groups in self.by_class.items():
            if name == anchor:
                continue
            rows = np.empty(len(labels), dtype=np.int64)
            for c in range(N_CLASSES):
                where = np.flatnonzero(labels == c)
                order = rng.permutation(groups[c])
                rows[where] = order[np.arange(len(where)) % len(order)]
            index[name] = rows
        return Pairs(labels, index)

    def batch(self, pairs: Pairs, rows: slice | np.ndarray, device=None) -> dict[str, torch.Tensor]:
        out = {name: self.banks[name].items[pairs.index[name][rows]] for name in self.banks}
        if self.clean_targets:
            out.update({clean_key(name): bank.target_rows(pairs.index[name][rows])
                        for name, bank in self.banks.items() if bank.clean is not None})
        out[LABEL] = torch.as_tensor(pairs.labels[rows])
        return {k: v.to(device) for k, v in out.items()} if device is not None else out

    def batches(self, pairs: Pairs, batch_size: int, start: int = 0, device=None):
        """Yields (batch number, batch) from batch number `start` on, so training can resume mid-epoch."""
        n_batches = -(-len(pairs) // batch_size)
        for b in range(start, n_batches):
            yield b, self.batch(pairs, slice(b * batch_size, (b + 1) * batch_size), device)
