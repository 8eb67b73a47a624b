"""Where temperature 1 costs generated speech its intelligibility: the shared latent's draw or the voice's.

For each source of speech (the label, each other input, and speech itself in its own voice) the full latent
is inferred from test pairs, then decoded four ways: at the means, with only the shared latent drawn, with
only the speech style drawn (from the prior, or from the heard voice's posterior when speech is the source),
and with both drawn (temperature 1, what the bar reads). Every draw uses the same noise, so the four columns
differ only in what is drawn. Each decoded log-mel goes through Griffin-Lim, as the evaluator's, and is read
by every speech judge; the last row is each judge's reading of the same real recordings through the same
vocoder, the reference of an intelligibility ratio. With --draws K every drawn column is the mean reading of
K draws; with --each-once the pairs hold every test recording once, as the evaluator's own-voice direction
and its reference do.

    python -m benchmarks.speech_draws checkpoints/default --data-dir DATA_DIR [--draws 5 --each-once]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from mvae import checkpoint, registry
from mvae.config import LABEL
from mvae.data.banks import load_banks
from mvae.data.paired import Bank, PairedDataset
from mvae.data.sources import resolve_data_dir
from mvae.errors import run_cli
from mvae.evaluation.coherence import each_once
from mvae.evaluation.judges import DEFAULT_JUDGES, accuracy, load_judges, resynthesised
from mvae.kinds import kind
from mvae.model.model import MVAE
from mvae.signals.audio import AudioFrontEnd

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


def table(found: dict) -> str:
    judges = sorted({j for by in found.values() for row in by.values() for j in row})
    lines = ["| direction | draw | " + " | ".join(judges) + " |", "|---" * (len(judges) + 2) + "|"]
    for direction, by in found.items():
        for draw, row in by.items():
            lines.append(f"| {direction} | {draw} | " + " | ".join(f"{100 * row[j]:.1f} %" for j in judges) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint folder or model.safetensors")
    p.add_argument("--data-dir", help="prepared datasets (default: $MVAE_DATA_DIR, else ./data)")
    p.add_argument("--judges", default=str(DEFAULT_JUDGES), help="folder of the judges")
    p.add_argument("--pairs", type=int, default=500, help="test pairs each direction is generated from")
    p.add_argument("--seed", type=int, default=0, help="which test pairs, and the draws' noise")
    p.add_argument("--draws", type=int, default=1, help="draws of the noise each drawn column is the mean of")
    p.add_argument("--each-once", action="store_true",
                   help="every test recording once (at most --pairs), as the evaluator's own-voice direction")
    args = p.parse_args(argv)
    if args.draws < 1 or args.pairs < 1:
        p.error("--draws and --pairs must be at least 1")

    def body():
        model, _ = checkpoint.load_model(args.checkpoint)
        front_end = AudioFrontEnd(model.cfg.audio)
        judges, _ = load_judges(args.judges)
        once = next((t for t in model.input_names if kind(t).vocoded), None) if args.each_once else None
        batch = test_batch(model, resolve_data_dir(args.data_dir), front_end, args.pairs, args.seed, once)
        print(table(readings(model, judges, batch, front_end, args.seed, args.draws)))
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
