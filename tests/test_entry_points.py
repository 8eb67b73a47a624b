"""Every command of the project in the virtual environment each requirements file makes: `--help` works in the
set the README names for it, and in a smaller set it says in one line which file to install (issue 19).

A smaller set is simulated in a child interpreter by making the packages it would lack unimportable, with
the lean test's mechanism (tests.helpers.refusing_imports), loaded as a sitecustomize so that the command
line is the real `python -m MODULE --help`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mvae.errors import USER_ERROR_EXIT
from mvae.requires import BY_NAME, COMMANDS, SETS, needed, started_command
from tests.helpers import refusing_imports

ROOT = Path(__file__).resolve().parents[1]
# Folders that hold no command of the project: tests/ holds the test suite's own scripts (run in the
# development set, like the suite), the others are built or installed files.
NOT_SCANNED = {".venv", ".git", "tests", "checkpoints", "runs", "node_modules", "dist", "test-artifacts"}
MAIN = re.compile(r"^if __name__ == [\"']__main__[\"']:", re.M)
HELP_TIMEOUT_S = 300  # an import of torch on a loaded machine, with room to spare
NOT_MODULES = {"ruff"}  # a requirement that installs a program, not a module
MODULE_OF = {"pillow": "PIL"}  # where a distribution's module is not its name with "-" as "_"


def entry_points() -> set[str]:
    found = set()
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if NOT_SCANNED & set(rel.parts[:-1]) or not MAIN.search(path.read_text(encoding="utf-8")):
            continue
        packaged = (ROOT / rel.parts[0] / "__init__.py").is_file() and len(rel.parts) > 1
        found.add(".".join(rel.with_suffix("").parts) if packaged else rel.as_posix())
    return found


def run_help(command: str, blocked: tuple[str, ...], tmp_path: Path) -> subprocess.CompletedProcess:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(refusing_imports(blocked, "not installed in this environment:"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    args = [command] if command.endswith(".py") else ["-m", command]
    return subprocess.run([sys.executable, *args, "--help"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=HELP_TIMEOUT_S)


def above(name: str) -> tuple[str, ...]:
    """The modules that the sets larger than `name` add: what a venv made from `name`'s file lacks."""
    return tuple(m for s in SETS for m in s.modules if m not in needed(name))


def test_every_entry_point_has_a_requirements_set():
    assert entry_points() == set(COMMANDS), "a command without a row in mvae.requires.COMMANDS, or a stale row"


def requirement_modules(file: str) -> set[str]:
    names = set()
    for line in (ROOT / file).read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):  # -r a smaller set, -e the package itself
            continue
        name = re.split(r"[<>=!~\[ ;]", line, maxsplit=1)[0].lower()
        if name not in NOT_MODULES:
            names.add(MODULE_OF.get(name, name.replace("-", "_")))
    return names


@pytest.mark.parametrize("requirement_set", SETS, ids=lambda s: s.name)
def test_the_module_lists_are_the_requirements_files(requirement_set):
    listed = {m.lower() for m in requirement_set.modules}
    assert listed == {m.lower() for m in requirement_modules(requirement_set.file)}


@pytest.mark.parametrize("requirement_set", SETS, ids=lambda s: s.name)
def test_the_readme_table_names_each_command_in_the_row_of_its_file(requirement_set):
    readme = (ROOT / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith(f"| `{requirement_set.file}` |"))
    for command, name in COMMANDS.items():
        assert (command in row) == (name == requirement_set.name), (command, row)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_works_in_the_set_the_readme_names(command, tmp_path):
    done = run_help(command, above(COMMANDS[command]), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("usage:") and "Traceback" not in done.stderr, done.stderr[-3000:]


SMALLER = [(command, s.name) for command, name in sorted(COMMANDS.items())
           for s in SETS[:[t.name for t in SETS].index(name)]]


@pytest.mark.parametrize(("command", "smaller"), SMALLER)
def test_a_smaller_set_says_in_one_line_which_file_to_install(command, smaller, tmp_path):
    done = run_help(command, above(smaller), tmp_path)
    wanted = BY_NAME[COMMANDS[command]].file
    assert done.returncode == USER_ERROR_EXIT and done.stdout == "", done.stderr[-3000:]
    assert len(done.stderr.splitlines()) == 1, done.stderr[-3000:]
    assert f"pip install -r {wanted}" in done.stderr and command in done.stderr


@pytest.mark.parametrize(("argv", "command"), [
    (["python", "-m", "mvae.upgrade", "x"], "mvae.upgrade"),
    (["python", "-X", "importtime", "-u", "-m", "benchmarks.run"], "benchmarks.run"),
    (["python", str(ROOT / "train.py"), "--help"], "train.py"),
    (["python", "-m", "mvae.training.loop"], None),  # a module, not a command
    (["python", "-c", "import mvae", "-m", "mvae.upgrade"], None),  # -c's own arguments
    (["streamlit", "run", "app.py"], None),
    (["python"], None),
])
def test_the_command_is_read_from_the_interpreters_command_line(argv, command):
    assert started_command(argv) == command
