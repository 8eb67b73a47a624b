"""Assemble the static Hugging Face Space (stlite: Streamlit on Pyodide) in space/dist/.

    python space/build.py                      # dist/ loads stlite and Pyodide from their CDN (the Space)
    python space/build.py --stlite-dir node_modules/@stlite/browser --pyodide-dir node_modules/pyodide
                                               # local copies instead (offline tests); a Pyodide folder
                                               # needs the wheels its pyodide-lock.json names: npm's
                                               # `pyodide` package has only the core, no numpy/pandas/pillow
    python -m http.server -d space/dist 8000   # then open http://127.0.0.1:8000/

dist/ holds index.html (from index.template.html), README.md (the Space's front matter) and files/: the app's
sources, the lean runtime's modules of `mvae` and the shipped checkpoint.
Push the contents of dist/ to the Space; dist/ itself is not committed. Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import runpy
import shutil
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STLITE_VERSION = "1.9.2"
STLITE_CDN = f"https://cdn.jsdelivr.net/npm/@stlite/browser@{STLITE_VERSION}/build"
ENTRYPOINT = "app.py"
# The app: its entry point, its pages and the shared UI modules. mvae's modules are found from their imports.
APP_GLOBS = ("app.py", "pages/*.py", "webapp/*.py")
CHECKPOINT_FILES = ("model.safetensors", "model.json", "eval.json", "eval.md", "latent_map.safetensors")
# The study's summary, where the sweep writes it and the facade looks for it: `mvae.folders` says where. Read as
# a file, not imported: importing any of mvae runs its package, which needs numpy.
FOLDERS = runpy.run_path(str(ROOT / "mvae" / "folders.py"))
SWEEP_RESULTS = "/".join((FOLDERS["CHECKPOINTS"], FOLDERS["SWEEP_FOLDER"], FOLDERS["SWEEP_RESULTS"]))
# requirements.txt lines that stlite provides otherwise: its own Streamlit fork.
NOT_FROM_MICROPIP = {"streamlit": "stlite brings its own Streamlit build"}
# .streamlit/config.toml sections that mean something in the browser.
CONFIG_SECTIONS = ("theme", "client", "logger")


def module_file(name: str) -> Path | None:
    """The file of a module of this repository (`mvae.x.y`), or None when it is not one."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def top_level_imports(path: Path) -> set[str]:
    """Modules named by the import statements at the top level of a file (not those inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ROOT).parts[:-1])  # the package a relative import starts from
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)  # `from . import ops`
    return names


def app_sources() -> list[Path]:
    """The app's files and every module of this repository they import at top level, transitively."""
    todo = [p for pattern in APP_GLOBS for p in sorted(ROOT.glob(pattern))]
    seen: list[Path] = []
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.append(path)
        for name in top_level_imports(path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c imports a and a.b first
                found = module_file(".".join(parts[:i]))
                if found and found not in seen:
                    todo.append(found)
    return sorted(seen)


def requirements() -> list[str]:
    out = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name = re.split(r"[<>=!~ ;\[]", line, maxsplit=1)[0].lower()
        if name in NOT_FROM_MICROPIP:
            print(f"  requirement {line!r} left out: {NOT_FROM_MICROPIP[name]}")
            continue
        out.append(line)
    return out


def streamlit_config() -> dict:
    path = ROOT / ".streamlit" / "config.toml"
    if not path.is_file():
        return {}
    flat = {}

    def walk(prefix, table):
        for key, value in table.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
            else:
                flat[f"{prefix}{key}"] = value

    config = tomllib.loads(path.read_text())
    for section in CONFIG_SECTIONS:
        walk(f"{section}.", config.get(section, {}))
    return flat


def copy_tree(src: Path, dst: Path, skip=(".map",)) -> int:
    count = 0
    for path in src.rglob("*"):
        if path.is_file() and not path.name.endswith(skip):
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            count += 1
    return count


def build(out: Path, checkpoint: Path, stlite_dir: Path | None, pyodide_dir: Path | None) -> None:
    if out.exists():
        shutil.rmtree(out)
    files_dir = out / "files"
    mounted: list[str] = []

    def add(src: Path, mount_as: str) -> None:
        target = files_dir / mount_as
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
        mounted.append(mount_as)

    for path in app_sources():
        add(path, path.relative_to(ROOT).as_posix())
    for name in CHECKPOINT_FILES:
        src = checkpoint / name
        if not src.is_file():
            sys.exit(f"build.py: the checkpoint lacks {name}: {src.relative_to(ROOT)}")
        add(src, f"checkpoints/default/{name}")
    if (ROOT / SWEEP_RESULTS).is_file():
        add(ROOT / SWEEP_RESULTS, SWEEP_RESULTS)

    config = {"entrypoint": ENTRYPOINT, "requirements": requirements(), "files": sorted(mounted),
              "streamlitConfig": streamlit_config()}
    stlite_base = STLITE_CDN
    if stlite_dir is not None:
        n = copy_tree(stlite_dir / "build", out / "stlite")
        stlite_base = "./stlite"
        print(f"  stlite: {n} files copied from {stlite_dir}")
    if pyodide_dir is not None:
        n = copy_tree(pyodide_dir, out / "pyodide")
        config["pyodideUrl"] = "pyodide/pyodide.mjs"
        print(f"  pyodide: {n} files copied from {pyodide_dir}")

    html = (HERE / "index.template.html").read_text()
    html = html.replace("__STLITE_BASE__", stlite_base).replace("__CONFIG__", json.dumps(config, indent=2))
    (out / "index.html").write_text(html)
    shutil.copy2(HERE / "README.md", out / "README.md")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"  {len(mounted)} files mounted; {out} holds {size / 1e6:.1f} MB")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "dist")
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "default",
                        help="the checkpoint folder to ship (mounted as checkpoints/default)")
    parser.add_argument("--stlite-dir", type=Path, help="a local @stlite/browser package to serve instead of the CDN")
    parser.add_argument("--pyodide-dir", type=Path,
                        help="a local Pyodide distribution (pyodide.mjs, pyodide-lock.json and its wheels) to use "
                             "instead of the CDN's; stlite wants the Pyodide version it was built with")
    args = parser.parse_args(argv)
    build(args.out.resolve(), args.checkpoint.resolve(), args.stlite_dir, args.pyodide_dir)


if __name__ == "__main__":
    main()
