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

from mvae import checkpoint
from mvae.data.sources import resolve_data_dir
from mvae.errors import run_cli
from mvae.evaluation.draws import readings, test_batch
from mvae.evaluation.judges import DEFAULT_JUDGES, load_judges
from mvae.kinds import kind
from mvae.signals.audio import AudioFrontEnd


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
