"""Train the PoE-MVAE on the real data and write a checkpoint folder.

    python train.py --data-dir data --out runs/mine     # the shipped model's recipe (mvae.config.SHIPPED_RECIPE)

Every flag's default is that recipe; --config and the flags change it. Every setting is checked against the
range or choices its field carries (mvae.config.setting), the data set and any training state to resume are
checked, all before any work: a refusal is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from mvae import registry
from mvae.config import (
    SHIPPED_RECIPE,
    SHIPPED_SAVE_DTYPE,
    ModelConfig,
    TrainConfig,
    model_config_from_dict,
    shipped_configs,
    train_config_from_dict,
)
from mvae.data.cache import CACHE_ENV, BankCache, default_cache_dir
from mvae.data.checks import check_dataset
from mvae.data.sources import read_regular, resolve_data_dir
from mvae.errors import USER_ERROR_EXIT, CheckpointError, InputError, run_cli
from mvae.fields import flag_fields
from mvae.folders import machine_free
from mvae.store import STATE_FILE, read_json
from mvae.training.checks import read_state_metadata, resume_problem, settings_problem

# torch and the training loop are imported only once the settings and the data have passed their checks: a
# refusal comes in about a second, not after torch's import of several.

# A --config file holds two small sections, a few hundred bytes; anything far larger is not one.
MAX_CONFIG_BYTES = 1 << 20
CONFIG_SECTIONS = ("model", "train")


def boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def weights(text: str) -> dict[str, float]:
    """NAME=NUMBER pairs, comma-separated: the flag of a mapping field (such as --recon-weights NAME=2, NAME a
    registered modality)."""
    pairs = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            pairs[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"expected NAME=NUMBER pairs such as {registry.names()[-1]}=2, "
                                             f"not {text!r}")
    return pairs


def flag_type(default):
    if isinstance(default, dict):
        return weights
    return boolean if isinstance(default, bool) else type(default)


class Parser(argparse.ArgumentParser):
    """argparse's refusals as every other refusal of train.py: one line, exit status 2."""

    def error(self, message):
        self.exit(USER_ERROR_EXIT, f"error: {message} (see python train.py --help)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Each flag's default, and the description's command kept on its own line."""

    def _get_help_string(self, action):
        # A flag without a value of its own (None, a switch) says in its help what happens instead.
        if action.default is None or action.default is False or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def parse_args(argv=None):
    p = Parser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--data-dir", help="prepared datasets (default: $MVAE_DATA_DIR, else ./data)")
    p.add_argument("--out", default="runs/latest", help="checkpoint folder to write (model.safetensors, model.json)")
    p.add_argument("--config", help="JSON file with 'model' and/or 'train' sections; flags override it")
    p.add_argument("--resume", action="store_true", help="continue exactly from the training state in --out")
    p.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    p.add_argument("--save-dtype", default=SHIPPED_SAVE_DTYPE, choices=["float32", "float16", "bfloat16"],
                   help="precision of the weights in model.safetensors (float16 halves the size)")
    p.add_argument("--no-progress", action="store_true",
                   help="hide the progress bars (each phase is still announced in a line)")
    p.add_argument("--cache-dir", help="where the precomputed banks of recordings (their augmented copies above all) "
                   f"are kept for the next run, keyed by the recordings and the settings (default: ${CACHE_ENV}, else "
                   "$XDG_CACHE_HOME/mvae, else ~/.cache/mvae)")
    p.add_argument("--no-cache", action="store_true", help="make the banks of recordings afresh and keep nothing")
    # Config flags stay absent unless given, so --config's values survive; their help shows the recipe's value.
    for cfg in shipped_configs():
        for f in flag_fields(type(cfg)):
            default = getattr(cfg, f.name)
            shown = ",".join(f"{k}={v:g}" for k, v in default.items()) if isinstance(default, dict) else default
            p.add_argument(f"--{f.name.replace('_', '-')}", type=flag_type(default), default=argparse.SUPPRESS,
                           help=f"{f.metadata['help']} (default: {shown})")
    return p.parse_args(argv)


def over_recipe(section: str, values):
    """A --config section on top of the recipe's; anything but an object goes on as it is, to be refused."""
    return {**SHIPPED_RECIPE[section], **values} if isinstance(values, dict) else values


def read_config(path: str) -> dict:
    """--config's sections; InputError, in one line, for a file that cannot be read or is not such JSON."""
    try:
        raw = read_regular(path, MAX_CONFIG_BYTES)
    except OSError as exc:
        raise InputError(f"--config {path} cannot be read ({exc.strerror or exc}); give the path of a JSON "
                         "file") from None
    try:
        sections = read_json(raw)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and the reader's refusals
        raise InputError(f"--config {path} is not JSON this trainer reads ({exc})") from None
    if not isinstance(sections, dict) or not set(sections) <= set(CONFIG_SECTIONS):
        found = sorted(map(str, sections)) if isinstance(sections, dict) else type(sections).__name__
        raise InputError(f"--config {path} must hold a JSON object with a 'model' and/or a 'train' section, "
                         f"not {found}")
    return sections


def _checked(cfg, changes: dict, flag: str, value):
    """`cfg` with `changes`, validated by the config's own checks; InputError naming the flag."""
    try:
        return replace(cfg, **changes).validate()
    except ValueError as exc:
        raise InputError(f"{flag} {value}: {exc}") from None


def build_configs(args) -> tuple[ModelConfig, TrainConfig]:
    """The recipe, then --config's sections over it, then the flags given, each value through the config's
    own checks; an InputError names the flag or file a refused value came from."""
    sections = read_config(args.config) if args.config else {}
    try:
        model_cfg = model_config_from_dict(over_recipe("model", sections.get("model", {})))
        train_cfg = train_config_from_dict(over_recipe("train", sections.get("train", {})))
    except ValueError as exc:
        raise InputError(f"--config {args.config}: {exc}" if args.config else str(exc)) from None
    given = {k: v for k, v in vars(args).items() if v is not None}
    # One flag at a time, so that a refusal names the flag; the ranges are the fields' own.
    configs = {TrainConfig: train_cfg, ModelConfig: model_cfg}
    for cls in configs:
        for f in flag_fields(cls):
            if f.name in given:
                value = given[f.name]
                shown = ",".join(f"{k}={v:g}" for k, v in value.items()) if isinstance(value, dict) else value
                if isinstance(value, dict):  # a mapping flag changes the pairs it names and keeps the others
                    value = {**getattr(configs[cls], f.name), **value}
                configs[cls] = _checked(configs[cls], {f.name: value}, f"--{f.name.replace('_', '-')}", shown)
    return configs[ModelConfig], configs[TrainConfig]


def check_resume(out: Path, train_cfg: TrainConfig) -> None:
    """The training state in `out` exists, and its settings are in range and leave something to train: read
    from its header, in milliseconds, before the data set is read."""
    if not (out / STATE_FILE).exists():
        raise CheckpointError(f"There is no training state to resume in {out} (no {STATE_FILE}). "
                              "Check --out, or leave out --resume to start a new run there.")
    problem = resume_problem(read_state_metadata(out), train_cfg)
    if problem:
        raise CheckpointError(f"Cannot resume from the training state {out / STATE_FILE}: {problem}. "
                              "Resume with the flags of that run, or train into a new --out.")


def load_training_data(*args, **kwargs):
    from mvae.training.loop import load_training_data

    return load_training_data(*args, **kwargs)


def recipe(argv: list[str]) -> str:
    """The command line as a recipe anyone can re-run: where the data lives on this machine is DATA_DIR, and
    where its bank cache lives is left out (a cached bank is the bank the run would make)."""
    return " ".join(["python", "train.py", *machine_free(argv, dropped=("--cache-dir",))])


def checked_configs(args, data_dir: Path, out: Path) -> tuple[ModelConfig, TrainConfig]:
    """The run's settings, once they, the folders, a state to resume, the data set, the device and the model's
    size have passed their checks: cheapest first, all before any work, only the last two needing torch."""
    model_cfg, train_cfg = build_configs(args)
    problem = settings_problem(model_cfg, train_cfg)
    if problem:
        raise InputError(problem)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"--out {out} is a file, not a folder; choose another --out.")
    if args.resume:
        check_resume(out, train_cfg)
    # Every file is read once up front, so a damaged one stops the run in seconds, not an hour in.
    check_dataset(data_dir, model_cfg.modalities, ("train", "test"), model_cfg.audio)
    from mvae.training.preflight import check_device, model_size_problem

    check_device(args.device)
    problem = model_size_problem(model_cfg)
    if problem:
        raise InputError(problem)
    return model_cfg, train_cfg


def run_training(args, argv, data_dir: Path, out: Path, started: float) -> int:
    model_cfg, train_cfg = checked_configs(args, data_dir, out)
    from mvae.training.lock import lock_output_dir
    from mvae.training.loop import Interrupted, Trainer
    from mvae.training.preflight import describe_device

    with lock_output_dir(out):
        folder = None if args.no_cache else Path(args.cache_dir).expanduser() if args.cache_dir else \
            default_cache_dir()
        data = load_training_data(data_dir, model_cfg, train_cfg, progress=not args.no_progress,
                                  cache=BankCache(folder))
        trainer = Trainer(model_cfg, train_cfg, data, out, device=args.device, progress=not args.no_progress,
                          run_info={"command": recipe(argv if argv is not None else sys.argv[1:])},
                          save_dtype=args.save_dtype, started=started)
        print(f"training: {train_cfg.epochs} epoch(s) of {train_cfg.pairs_per_epoch:,} pairs on "
              f"{describe_device(trainer.device)}")
        if args.resume:
            if not trainer.resume():
                raise CheckpointError(f"The training state in {out} disappeared before it could be read.")
            print(f"resuming at epoch {trainer.epoch + 1}, batch {trainer.batch_start}")
        try:
            metrics = trainer.fit()
        except Interrupted as exc:
            print(exc, file=sys.stderr)
            return 130
        except FloatingPointError as exc:  # the loss diverged; the last saved epoch is kept
            raise InputError(f"Training diverged: {exc}") from None
    print(json.dumps({"unimodal_accuracy": metrics.get("unimodal_accuracy"), "elbo": metrics.get("elbo")}, indent=2))
    if train_cfg.tune_contrast:
        tune_contrast(out, data_dir, not args.no_progress)
    print(f"checkpoint written to {args.out}")
    return 0


def tune_contrast(out: Path, data_dir: Path, progress: bool) -> None:
    """The trained model's log-mel contrast, chosen by the judges on the training split; without judges to
    read it, the checkpoint keeps the decoder's own output (contrast 1) and the run still succeeds."""
    from mvae.evaluation.contrast import tune

    print("choosing the log-mel contrast by the judges' readings of training pairs")
    try:
        chosen, _ = tune(out, data_dir, progress=progress)
    except CheckpointError as exc:
        print(f"the log-mel contrast stays 1: {exc}", file=sys.stderr)
        return
    print(f"log-mel contrast: {chosen:g}")


def main(argv=None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    # A line per phase, as it starts: when stdout is a file or a pipe, Python would otherwise hold them back.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    return run_cli(lambda: run_training(args, argv, resolve_data_dir(args.data_dir), Path(args.out), started))


if __name__ == "__main__":
    sys.exit(main())
