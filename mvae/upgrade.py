"""Verify checkpoint files, and rewrite those of an older format in the current one.

    python -m mvae.upgrade checkpoints/default checkpoints/judges/judges.safetensors

The weights are kept as they are, so an upgraded model predicts exactly as before; the header is
rewritten in the current format, with the lean runtime's program that `mvae.load()` runs. This needs
torch (the training requirements), as the program is written from the torch model. Files already in the
current format with a program are left as they are.
"""

from __future__ import annotations

import argparse
import sys

from .checkpoint import upgrade
from .errors import run_cli
from .store import VERSION, model_path, unpack


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", help="checkpoint folders or .safetensors files")
    p.add_argument("--dry-run", action="store_true", help=f"only verify; do not rewrite files to format {VERSION}")
    args = p.parse_args(argv)

    def body():
        for path in args.paths:
            file = model_path(path)
            before = unpack(file)[1]["version"]
            if not args.dry_run:
                upgrade(file)
            after = unpack(file)[1]["version"]
            print(f"{file}: format {before}" + (f" -> {after}" if after != before else "") + ", verified")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
