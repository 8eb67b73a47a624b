"""Train the PoE-MVAE on the real data and write a checkpoint folder.

    python train.py --data-dir data --out checkpoints/default
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

from mvae.checkpoint import STATE_FILE
from mvae.config import ModelConfig, TrainConfig, model_config_from_dict, train_config_from_dict
from mvae.data import resolve_data_dir
from mvae.data.checks import check_dataset
from mvae.errors import CheckpointError, DataError
from mvae.training import Interrupted, Trainer, hold_out_dir, load_training_data

TRAIN_HELP = {
    "epochs": "passes over pairs_per_epoch freshly paired examples",
    "batch_size": "pairs per optimiser step",
    "lr": "Adam learning rate (at the start of the schedule)",
    "lr_schedule": "cosine (decay to lr * lr_floor by the last step) or constant",
    "lr_floor": "final fraction of the learning rate under the cosine schedule",
    "weight_decay": "Adam weight decay",
    "beta": "weight of the KL term once warmed up",
    "beta_warmup_epochs": "epochs over which beta rises linearly from 0",
    "pairs_per_epoch": "label-paired examples drawn afresh each epoch",
    "seed": "seed for pairing, augmentation and initialisation",
    "speech_aug_copies": "augmented copies (speed, pitch, noise, gain) of each training recording",
    "aug_strength": "scale of the speech augmentation ranges (0 turns it off)",
    "image_aug": "scale of the drawing augmentation: rotation, scale, shift, stroke width (0 turns it off)",
    "eval_pairs": "test pairs per evaluation (0: all of them)",
    "eval_batch_size": "batch size for evaluation",
    "grad_clip": "gradient norm clip (0: none)",
    "num_threads": "CPU threads for torch (0: torch's default)",
}
MODEL_HELP = {
    "architecture": "encoder/decoder family: mlp (the seed's), conv, or conv-mlp (conv encoders, MLP decoders)",
    "latent_dim": "size of the shared latent z",
    "style_dim": "size of each modality's private style latent (0: the plain PoE-MVAE)",
    "cross_style_scale": "scale of the prior a missing modality's style is drawn from in training",
    "shared_kl_weight": "multiplies beta for the shared latent, pushing all but the digit into the styles",
    "cross_style": "style a cross-modal term decodes with: prior (MMVAE+) or own (the target's own, DMVAE)",
    "swap_weight": "weight of the style-swap term: the digit must read back whatever the style (0: none)",
    "image_decoder": "the digits' decoder family when it differs from the architecture's: mlp or conv",
    "hidden": "width of the hidden layers",
    "conv_channels": "channels of the first conv layer (conv architecture)",
    "image_conv_extra": "3x3 conv layers after each stride-2 conv of the digit encoders (conv architecture)",
    "image_conv_batchnorm": "batch norm after every conv of the digit encoders (conv architecture)",
    "label_weight": "weight of the label cross-entropy",
    "speech_likelihood": "likelihood of the log-mel: laplace or gaussian",
    "speech_scale": "scale of the log-mel likelihood, in per-bin standard deviations",
}


def boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def flag_type(default):
    return boolean if isinstance(default, bool) else type(default)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", help="prepared datasets (default: $MVAE_DATA_DIR, else ./data)")
    p.add_argument("--out", default="runs/latest", help="checkpoint folder to write (model.safetensors, model.json)")
    p.add_argument("--config", help="JSON file with 'model' and/or 'train' sections; flags override it")
    p.add_argument("--resume", action="store_true", help="continue exactly from the training state in --out")
    p.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    p.add_argument("--save-dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="precision of the weights in model.safetensors (float16 halves the size)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    defaults_t, defaults_m = TrainConfig(), ModelConfig()
    # Config flags stay absent unless given, so --config's values survive; their help shows the config default.
    for f in fields(TrainConfig):
        default = getattr(defaults_t, f.name)
        p.add_argument(f"--{f.name.replace('_', '-')}", type=flag_type(default), default=argparse.SUPPRESS,
                       help=f"{TRAIN_HELP[f.name]} (default: {default})")
    for name, help_text in MODEL_HELP.items():
        default = getattr(defaults_m, name)
        p.add_argument(f"--{name.replace('_', '-')}", type=flag_type(default), default=argparse.SUPPRESS,
                       help=f"{help_text} (default: {default})")
    p.add_argument("--speech-weight", type=float, default=None, help="weight of the log-mel reconstruction")
    return p.parse_args(argv)


def build_configs(args) -> tuple[ModelConfig, TrainConfig]:
    sections = json.loads(Path(args.config).read_text()) if args.config else {}
    model_cfg = model_config_from_dict(sections.get("model", {}))
    train_cfg = train_config_from_dict(sections.get("train", {}))
    given = {k: v for k, v in vars(args).items() if v is not None}
    train_cfg = replace(train_cfg, **{f.name: given[f.name] for f in fields(TrainConfig) if f.name in given})
    model_cfg = replace(model_cfg, **{k: given[k] for k in MODEL_HELP if k in given})
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
    try:
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
            print(f"training on {trainer.device}")
            if args.resume:
                if not trainer.resume():
                    raise CheckpointError(f"The training state in {out} disappeared before it could be read.")
                print(f"resuming at epoch {trainer.epoch + 1}, batch {trainer.batch_start}")
            metrics = trainer.fit()
    except (DataError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(exc, file=sys.stderr)
        return 130
    print(json.dumps({"unimodal_accuracy": metrics.get("unimodal_accuracy"), "elbo": metrics.get("elbo")}, indent=2))
    print(f"checkpoint written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
