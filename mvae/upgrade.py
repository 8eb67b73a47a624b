"""Verify checkpoint files, and rewrite those of an older format in the current one.

    python -m mvae.upgrade checkpoints/default checkpoints/judges/judges.safetensors

The weights are kept as they are, so an upgraded model predicts exactly as before; the header is
rewritten in the current format, with the lean runtime's program that `mvae.load()` runs. This needs
torch (the training requirements), as the program is written from the torch model. Files already in the
current format with a program are left as they are.

Every file gets every check `mvae.load` and the torch loader make, and a model's program must reproduce
the torch model its config and weights make; what was verified is printed, and nothing else is called
verified. Format 1's checksum did not cover the metadata, so a format-1 file is resealed only with
--trust-metadata (its weights are still verified, and its program rebuilt).
"""

from __future__ import annotations

import argparse
import sys

from .checkpoint import upgrade, verify
from .errors import run_cli
from .store import VERSION, model_path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", help="checkpoint folders or .safetensors files")
    p.add_argument("--dry-run", action="store_true", help=f"only verify; do not rewrite files to format {VERSION}")
    p.add_argument("--trust-metadata", action="store_true",
                   help="reseal format-1 files although their metadata cannot be verified (format 1's checksum did "
                        "not cover it): only for files whose origin you know")
    args = p.parse_args(argv)

    def body():
        for path in args.paths:
            file = model_path(path)
            before = verify(file)
            version = before.meta["version"]
            if args.dry_run:
                print(f"{file}: format {version}, {before.what}"
                      + (f"; not verifiable: {before.unverified}" if before.unverified else ""))
                continue
            upgrade(file, trust_metadata=args.trust_metadata)
            after = verify(file)
            moved = f" -> {after.meta['version']}" if after.meta["version"] != version else ""
            print(f"{file}: format {version}{moved}, {after.what}"
                  + (f"; taken on trust from format {version}: {before.unverified}" if before.unverified else ""))
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
