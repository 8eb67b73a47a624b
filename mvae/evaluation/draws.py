"""Decoding speech from a latent drawn four ways, to see where temperature 1 costs its intelligibility.

For a source (the label or an input) the full latent is inferred from test pairs, then decoded at the means,
with only the shared latent drawn, with only the target's style drawn (from the prior, or from the heard
voice's posterior when speech is the source), and with both drawn (temperature 1, what the bar reads). Every
draw uses the same noise, so the columns differ only in what is drawn. Each decoded log-mel goes through
Griffin-Lim, as the evaluator's, and is read by every judge of its modality. `benchmarks.speech_draws` prints
the table; the shipped checkpoint's own-voice test holds its mean over draws.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import registry
from ..config import LABEL
from ..data.banks import load_banks
from ..data.paired import Bank, PairedDataset
from ..kinds import kind
from ..model.model import MVAE
from ..signals.audio import AudioFrontEnd
from .coherence import each_once
from .judges import accuracy, resynthesised

DRAWS = {"means": (0.0, 0.0), "shared drawn": (1.0, 0.0), "style drawn": (0.0, 1.0), "both drawn": (1.0, 1.0)}


@torch.no_grad()
def drawn_latents(model: MVAE, sources: dict, target: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Draw name -> full latents (N, F): the posterior means with the shared part, the target's style, both or
    neither moved by one draw of noise at temperature 1."""
    mu, logvar = model.full_posterior(sources)
    noise = (0.5 * logvar).exp() * torch.randn(mu.shape, generator=generator)
    layout = model.latent_layout()
    out = {}
    for name, (shared, style) in DRAWS.items():
        latents = mu.clone()
        latents[:, layout["shared"]] += shared * noise[:, layout["shared"]]
        latents[:, layout[target]] += style * noise[:, layout[target]]
        out[name] = latents
    return out


@torch.no_grad()
def readings(model: MVAE, judges: dict, batch: dict, front_end: AudioFrontEnd, seed: int = 0,
             draws: int = 1, sources: tuple[str, ...] | None = None, columns: tuple[str, ...] = tuple(DRAWS)) -> dict:
    """"source->target" -> draw -> judge -> the share of the batch the judge reads as its label (the mean over
    `draws` draws of the noise; the means are read once); and "real (vocoded)" -> judge -> its reading of the
    batch's own recordings through the vocoder. `sources` (default: the label and every input) and `columns`
    (default: every draw of DRAWS) narrow what is decoded."""
    model.eval()
    labels = np.asarray(batch[LABEL])
    out: dict = {}
    for target in (t for t in model.input_names if kind(t).vocoded and t in model.style_names):
        readers = [j for j in registry.modality(target).reads if j in judges]
        for source in sources or (LABEL, *model.input_names):
            generator = torch.Generator().manual_seed(seed)  # the same noise for every source
            read: dict[str, list] = {}
            for k in range(draws):
                latents = drawn_latents(model, {source: torch.as_tensor(batch[source])}, target, generator)
                for draw, z in latents.items():
                    if draw not in columns or (k and draw == "means"):
                        continue
                    made = resynthesised(Bank(model.outputs(z, [target])[target], labels), front_end)
                    read.setdefault(draw, []).append({j: accuracy(judges[j], made) for j in readers})
            out[f"{source}->{target}"] = {draw: {j: float(np.mean([r[j] for r in rows])) for j in readers}
                                          for draw, rows in read.items()}
        real = resynthesised(Bank(torch.as_tensor(batch[target]), labels), front_end)
        out[f"real {target} (vocoded)"] = {"": {j: accuracy(judges[j], real) for j in readers}}
    return out


def test_batch(model: MVAE, data_dir, front_end: AudioFrontEnd, pairs: int, seed: int,
               once: str | None = None) -> dict:
    """`pairs` test pairs drawn as the evaluator draws its speech pairs; with `once` (a modality) at most one
    pair per item of its bank, as the evaluator decodes each test recording once in its own voice."""
    test = PairedDataset(load_banks(data_dir, "test", front_end, model.input_names, progress=False))
    covering = test.covering_pairs()
    order = np.random.default_rng(seed).permutation(len(covering))
    rows = order[:pairs] if once is None else each_once(covering.index[once], order, pairs)
    return test.batch(covering, rows)
