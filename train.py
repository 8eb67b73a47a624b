"""Train the PoE-MVAE on the real data and write a checkpoint folder.

    python train.py --data-dir data --out runs/mine     # the shipped model's recipe (mvae.config.SHIPPED_RECIPE)

Every flag's default is that recipe; --config and the flags change it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from mvae.config import (
    SHIPPED_RECIPE,
    SHIPPED_SAVE_DTYPE,
    ModelConfig,
    TrainConfig,
    flag_fields,
    model_config_from_dict,
    shipped_configs,
    train_config_from_dict,
)
from mvae.data import resolve_data_dir
from mvae.errors import CheckpointError, run_cli
from mvae.kinds import check_dataset
from mvae.store import STATE_FILE
from mvae.training.loop import Interrupted, Trainer, describe_device, hold_out_dir, load_training_data


def boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def flag_type(default):
    return boolean if isinstance(default, bool) else type(default)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Each flag's default, and the description's command kept on its own line."""

    def _get_help_string(self, action):
        # A flag without a value of its own (None, a switch) says in its help what happens instead.
        if action.default is None or action.default is False or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--data-dir", help="prepared datasets (default: $MVAE_DATA_DIR, else ./data)")
    p.add_argument("--out", default="runs/latest", help="checkpoint folder to write (model.safetensors, model.json)")
    p.add_argument("--config", help="JSON file with 'model' and/or 'train' sections; flags override it")
    p.add_argument("--resume", action="store_true", help="continue exactly from the training state in --out")
    p.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    p.add_argument("--save-dtype", default=SHIPPED_SAVE_DTYPE, choices=["float32", "float16", "bfloat16"],
                   help="precision of the weights in model.safetensors (float16 halves the size)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    # Config flags stay absent unless given, so --config's values survive; their help shows the recipe's value.
    for cfg in shipped_configs():
        for f in flag_fields(type(cfg)):
            default = getattr(cfg, f.name)
            p.add_argument(f"--{f.name.replace('_', '-')}", type=flag_type(default), default=argparse.SUPPRESS,
                           help=f"{f.metadata['help']} (default: {default})")
    p.add_argument("--speech-weight", type=float, default=None, help="weight of the log-mel reconstruction")
    return p.parse_args(argv)


def over_recipe(section: str, values):
    """A --config section on top of the recipe's; anything but an object goes on as it is, to be refused."""
    return {**SHIPPED_RECIPE[section], **values} if isinstance(values, dict) else values


def build_configs(args) -> tuple[ModelConfig, TrainConfig]:
    """The recipe, then --config's sections over it, then the flags given."""
    sections = json.loads(Path(args.config).read_text()) if args.config else {}
    model_cfg = model_config_from_dict(over_recipe("model", sections.get("model", {})))
    train_cfg = train_config_from_dict(over_recipe("train", sections.get("train", {})))
    given = {k: v for k, v in vars(args).items() if v is not None}
    train_cfg = replace(train_cfg, **{f.name: given[f.name] for f in flag_fields(TrainConfig) if f.name in given})
    model_cfg = replace(model_cfg, **{f.name: given[f.name] for f in flag_fields(ModelConfig) if f.name in given})
    if args.speech_weight is not None:
        model_cfg = replace(model_cfg, recon_weights={**model_cfg.recon_weights, "speech": args.speech_weight})
    return model_cfg, train_cfg


def recipe(argv: list[str]) -> str:
    """The command line as a recipe anyone can re-run: where the data lives on this machine is left out."""
    words, skip = [], False
    for word in argv:
        if skip:
            words.append("DATA_DIR")
        elif word.startswith("--data-dir="):
            word = "--data-dir=DATA_DIR"
        if not skip:
            words.append(word)
        skip = word == "--data-dir"
    return " ".join(["python", "train.py", *words])


def main(argv=None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    model_cfg, train_cfg = build_configs(args)
    data_dir = resolve_data_dir(args.data_dir)
    out = Path(args.out)
    def body():
        # Every file is read once up front, so a damaged one stops the run in seconds, not an hour in.
        check_dataset(data_dir, model_cfg.modalities, ("train", "test"), model_cfg.audio)
        if args.resume and not (out / STATE_FILE).is_file():
            raise CheckpointError(f"There is no training state to resume in {out} (no {STATE_FILE}). "
                                  "Check --out, or leave out --resume to start a new run there.")
        with hold_out_dir(out):
            data = load_training_data(data_dir, model_cfg, train_cfg, progress=not args.no_progress)
            trainer = Trainer(model_cfg, train_cfg, data, out, device=args.device, progress=not args.no_progress,
                              run_info={"command": recipe(argv if argv is not None else sys.argv[1:])},
                              save_dtype=args.save_dtype, started=started)
            print(f"training on {describe_device(trainer.device)}")
            if args.resume:
                if not trainer.resume():
                    raise CheckpointError(f"The training state in {out} disappeared before it could be read.")
                print(f"resuming at epoch {trainer.epoch + 1}, batch {trainer.batch_start}")
            try:
                metrics = trainer.fit()
            except Interrupted as exc:
                print(exc, file=sys.stderr)
                return 130
        print(json.dumps({"unimodal_accuracy": metrics.get("unimodal_accuracy"), "elbo": metrics.get("elbo")},
                         indent=2))
        print(f"checkpoint written to {args.out}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
