"""Where the files that go with the checkpoints lie, for those who write them and those who read them.

Each trained model has its own folder (`checkpoints/default`, `checkpoints/plain-poe`), with its evaluator's
report beside it. The hyperparameter study scores many short runs and belongs to no one model, so its
summary lies beside the models' folders, in their shared folder: `checkpoints/sweep/results.json`, which the
app finds from the folder of the checkpoint it runs. The study writes there (`mvae.training.sweep`), the
facade reads it (`Pipeline.sweep_results`) and the static Space ships it (`space/build.py`, which reads this
file without importing `mvae`, so it holds plain constants and the standard library alone).
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINTS = "checkpoints"  # the folder of the models' folders, at the repository's root
SWEEP_FOLDER = "sweep"  # the study's folder, beside the models' folders
SWEEP_RESULTS = "results.json"  # the study's summary in it: parameter importances and the best trials
SWEEP_FROM_CHECKPOINT = Path("..", SWEEP_FOLDER, SWEEP_RESULTS)  # the summary, seen from a model's folder


def machine_free(argv: list[str], data_flag: str = "--data-dir", dropped: tuple[str, ...] = ()) -> list[str]:
    """The words of a command line as anyone can re-run them: the data folder given to `data_flag` becomes
    DATA_DIR, and each flag of `dropped` (a folder that changes nothing the command makes, such as a cache) is
    left out with its value. Flags may be given as `--flag value` or `--flag=value`."""
    words, rest = [], iter(argv)
    for word in rest:
        flag, joined, _ = word.partition("=")
        if flag in dropped:
            if not joined:
                next(rest, None)
        elif flag == data_flag:
            words.append(f"{flag}=DATA_DIR" if joined else flag)
            if not joined and next(rest, None) is not None:
                words.append("DATA_DIR")
        else:
            words.append(word)
    return words
