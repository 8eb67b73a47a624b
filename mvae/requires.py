"""Which requirements file each command needs, and a one-line refusal where its packages are missing.

The project installs in four nested sets (README, "Two commands"): the app's (requirements.txt), the training
set on top of it (requirements-train.txt), the benchmark set (requirements-bench.txt: MultiVae, for the peer
benchmark) on top of that and the development set on top of all (requirements-dev.txt). A command started in a
virtual environment made from a smaller set would end in a ModuleNotFoundError traceback at its first import
of torch, pytest or psutil. Importing this module (the first thing `import mvae` does, and
benchmarks/__init__.py imports it) looks at the command line the interpreter was started with: when it runs
one of COMMANDS and a package of that command's set cannot be found, it says in one line which file to install
and exits with USER_ERROR_EXIT. Any other use of the library (the app, a notebook, the tests) is left alone:
this costs nothing there but a look at sys.orig_argv.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import USER_ERROR_EXIT

ROOT = Path(__file__).resolve().parent.parent  # the checkout, where train.py and space/ live


@dataclass(frozen=True)
class RequirementSet:
    name: str
    file: str
    label: str  # "the {label} requirements"
    modules: tuple[str, ...]  # the top-level modules this file adds to the set below it


# In order, each set installing the ones before it. tests/test_entry_points.py holds these lists to the
# requirements files, so a package added to a file and not here fails a test.
SETS = (
    RequirementSet("app", "requirements.txt", "app's",
                   ("numpy", "soundfile", "PIL", "streamlit", "streamlit_drawable_canvas", "audio_recorder_streamlit",
                    "plotly")),
    RequirementSet("train", "requirements-train.txt", "training", ("torch", "torchaudio", "safetensors", "tqdm",
                                                                     "optuna")),
    # MultiVae and what it pulls (pythae, scikit-learn, matplotlib, pydantic, torchvision): the peer benchmark.
    RequirementSet("bench", "requirements-bench.txt", "benchmark", ("multivae",)),
    RequirementSet("dev", "requirements-dev.txt", "development",
                   ("scipy", "pytest", "pytest_timeout", "playwright", "psutil", "hypothesis")),
)
BY_NAME = {s.name: s for s in SETS}

# Every command of the project, as `python -m MODULE` or `python PATH` (relative to the checkout), and the
# set it needs. The README's install table names the same commands; a new entry point needs a row here
# (tests/test_entry_points.py finds them all by their `if __name__ == "__main__":`).
COMMANDS = {
    "train.py": "train",
    "mvae.data.download": "train",
    "mvae.evaluation.report": "train",
    "mvae.evaluation.judges": "train",
    "mvae.evaluation.contrast": "train",
    "mvae.training.sweep": "train",
    "mvae.upgrade": "train",
    "benchmarks.speech_variants": "train",
    "benchmarks.speech_draws": "train",
    "benchmarks.peers": "bench",
    # The benchmarks measure the served app in Chromium (Playwright), read memory with psutil and build
    # their inputs with the tests' helpers (pytest): the development set.
    "benchmarks.run": "dev",
    "benchmarks.load_bench": "dev",
    "benchmarks.checkpoint_limits": "dev",
    "space/build.py": "app",
}


def needed(name: str) -> tuple[str, ...]:
    """Every module the set `name` installs, its smaller sets' included."""
    modules: tuple[str, ...] = ()
    for s in SETS:
        modules += s.modules
        if s.name == name:
            return modules
    raise KeyError(f"no requirement set {name!r}; the sets are {[s.name for s in SETS]}")


def missing(name: str) -> str | None:
    """The first module of set `name` that this interpreter cannot import, found without importing any."""
    for module in needed(name):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a finder that refuses it, or a half-removed package
            found = False
        if not found:
            return module
    return None


def started_command(argv: list[str]) -> str | None:
    """The COMMANDS key the interpreter's command line `argv` (sys.orig_argv) runs, or None for any other."""
    words = iter(argv[1:])
    for word in words:
        if word == "-m":
            target = next(words, "")
            return target if target in COMMANDS else None
        if word.startswith("-m") or word.startswith("-c") or word == "-":
            return None  # -mMODULE is rare enough not to name here; -c and stdin run no command of ours
        if word in ("-X", "-W"):  # options that take a value
            next(words, None)
            continue
        if word.startswith("-"):
            continue
        try:
            script = Path(word).resolve().relative_to(ROOT).as_posix()
        except (ValueError, OSError):
            return None
        return script if script in COMMANDS else None
    return None


def refusal(command: str) -> str | None:
    """The one-line message for `command` when a package of its set is missing here, else None."""
    module = missing(COMMANDS[command])
    if module is None:
        return None
    wanted = BY_NAME[COMMANDS[command]]
    shown = f"python {command}" if command.endswith(".py") else f"python -m {command}"
    return (f"{shown} needs the {wanted.label} requirements: pip install -r {wanted.file} "
            f"(there is no module {module!r} here)")


def refuse_if_missing(argv: list[str] | None = None) -> None:
    """Exit with the one-line refusal when the interpreter runs one of COMMANDS without its packages."""
    command = started_command(sys.orig_argv if argv is None else argv)
    message = refusal(command) if command else None
    if message:
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(USER_ERROR_EXIT)


refuse_if_missing()
