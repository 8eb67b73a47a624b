"""The evaluator: every number the README and the app's report show, on the test splits.

    python -m mvae.evaluation.report checkpoints/default --data-dir data            # prints the table
    python -m mvae.evaluation.report runs/mine --data-dir data --write              # and writes the report

Evaluating changes no file unless asked: `--write` puts eval.json, eval.md and latent_map.safetensors
beside the checkpoint (the shipped ones are tracked files), `--readme FILE` pastes the table into FILE.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .. import checkpoint
from ..data.banks import load_banks
from ..data.paired import PairedDataset
from ..data.sources import resolve_data_dir
from ..errors import CheckpointError, run_cli
from ..latent import LatentMap
from ..model.model import MVAE
from ..signals.audio import AudioFrontEnd
from ..store import EVAL_JSON, EVAL_MD
from .analysis import latent_figures, latent_map, posterior_means
from .bar import GENERATION_TEMPERATURE, meets_bar
from .coherence import CoherenceRun, coherence_figures
from .contrast import command_seconds
from .generation import generation_quality
from .judges import DEFAULT_JUDGES, judges_id, load_judges
from .metrics import accuracy_figures, evaluate_pairs
from .render import comparison_table, describe, generation_cells, markdown, replace_block, training_cells
from .robustness import robustness


def evaluate_checkpoint(path, data_dir, judges_dir=None, speech_pairs: int = 500, batch_size: int = 512,
                        progress: bool = True, write: bool = True, per_class: int = 200,
                        temperatures=(GENERATION_TEMPERATURE, 0.0)) -> dict:
    """Every figure of the report on the test splits. `speech_pairs` test pairs (and as many digits from the
    label) are scored per speech target and temperature, as each costs a Griffin-Lim resynthesis; the first
    of `temperatures` is the bar's, the others (0: the posterior means) are reported beside it."""
    started = time.time()
    model, meta = checkpoint.load_model(path)
    model.eval()
    front_end = AudioFrontEnd(model.cfg.audio)
    judges, judges_meta = load_judges(judges_dir)
    test = PairedDataset(load_banks(data_dir, "test", front_end, model.input_names, progress=progress))
    pairs = test.covering_pairs()

    report = evaluate_pairs(model, test, pairs, batch_size, progress=progress)
    report |= accuracy_figures(model, test.banks, data_dir)
    run = CoherenceRun(model, front_end, judges, test, pairs, batch_size, speech_pairs, progress)
    report |= coherence_figures(run, per_class, temperatures)
    report |= generation_quality(model, judges, test.banks, per_class)
    report["judges"] = judges_meta["report"]
    report["judges_id"] = judges_id(judges_dir)
    report["robustness"] = robustness(model, data_dir)
    mu, logvar = posterior_means(model, test, pairs, model.input_names, batch_size)
    report |= latent_figures(mu, logvar, pairs.labels)
    report["meets_bar"] = meets_bar(report)
    report["seconds"] = time.time() - started
    report["checkpoint"] = checkpoint_summary(model, meta)
    if write:
        write_report(checkpoint.model_path(path).parent, report, latent_map(mu, pairs.labels))
    return report


def checkpoint_summary(model: MVAE, meta: dict) -> dict:
    """What the report says of the checkpoint it evaluated: its architecture and how it was trained."""
    info = meta["info"]
    return {"architecture": model.cfg.architecture, "hidden": model.cfg.hidden,
            "description": describe(meta["model_config"]),
            "latent_dim": model.cfg.latent_dim, "style_dim": model.cfg.style_dim,
            "train_seconds": info.get("train_seconds"), "wall_seconds": command_seconds(info),
            "command": info.get("command")}


def write_report(folder: Path, report: dict, latents: LatentMap) -> None:
    """eval.json, eval.md and the latent map beside the checkpoint."""
    checkpoint.atomic_write_json(folder / EVAL_JSON, report)
    checkpoint.atomic_write(folder / EVAL_MD, markdown(report).encode())
    latents.save(folder)


def read_report(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} cannot be read ({exc}); run the evaluator on its checkpoint again.") from exc


def comparison(paths, judges_dir=None) -> str:
    """Side-by-side test metrics of several checkpoints: what training recorded in each, and the generative
    metrics of the eval.json the evaluator wrote beside it (only when judged by the current judges)."""
    columns, notes = [], []
    current = judges_id(judges_dir)
    for path in paths:
        model, meta = checkpoint.load_model(path)
        name = f"{Path(path).name}: {describe(meta['model_config'])}"
        cells = training_cells(sum(p.numel() for p in model.parameters()), meta["info"])
        evaluated = checkpoint.model_path(path).parent / EVAL_JSON
        report = read_report(evaluated) if evaluated.is_file() else None
        if report is None:
            notes.append(f"{Path(path).name} has no {EVAL_JSON}: run `python -m mvae.evaluation.report {path}`.")
        elif report.get("judges_id") != current:
            notes.append(f"{Path(path).name}'s {EVAL_JSON} was judged by other judges: run "
                         f"`python -m mvae.evaluation.report {path}` again to compare its generation.")
        else:
            cells |= generation_cells(report)
        columns.append((name, cells))
    return comparison_table(columns, notes)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", default="checkpoints/default",
                   help="checkpoint folder or model.safetensors")
    p.add_argument("--compare", nargs="+", metavar="CHECKPOINT",
                   help="print the recorded test metrics of these checkpoints side by side and stop")
    p.add_argument("--data-dir", help="prepared datasets (default: $MVAE_DATA_DIR, else ./data)")
    p.add_argument("--judges", default=str(DEFAULT_JUDGES),
                   help="folder of the judges (python -m mvae.evaluation.judges)")
    p.add_argument("--speech-pairs", type=int, default=500,
                   help="test pairs (and digits from the label) scored per speech target and temperature "
                        "(each needs a Griffin-Lim resynthesis)")
    p.add_argument("--per-class", type=int, default=200,
                   help="digits generated per class from the label for coherence, diversity, sharpness and "
                        "the Fréchet distance")
    p.add_argument("--write", action="store_true",
                   help="write eval.json, eval.md and latent_map.safetensors beside the checkpoint (default: "
                        "print only, so that evaluating a tracked checkpoint leaves the repository as it was)")
    p.add_argument("--readme", help="also put the table into this Markdown file's <!-- eval:start/end --> block")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = p.parse_args(argv)

    def body():
        if args.compare:
            block, table = "compare", comparison(args.compare, args.judges)
        else:
            report = evaluate_checkpoint(args.checkpoint, resolve_data_dir(args.data_dir), args.judges,
                                         args.speech_pairs, progress=not args.no_progress, write=args.write,
                                         per_class=args.per_class)
            block, table = "eval", markdown(report)
        print(table)
        if args.readme:
            readme = Path(args.readme)
            checkpoint.atomic_write(readme, replace_block(readme.read_text(), block, table).encode())
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
