"""A lock on a training run's output folder, held while the run writes it, so that a second trainer pointed at
the same folder refuses to start instead of overwriting the first one's checkpoints."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

from ..errors import CheckpointError

try:
    import fcntl
except ImportError:  # Windows: runs go unguarded
    fcntl = None

LOCK_FILE = ".train.lock"


@contextmanager
def lock_output_dir(out_dir):
    """An exclusive lock on a run's folder, held while the run lasts, so that a second trainer refuses
    to start instead of overwriting the first one's checkpoints. The lock is the kernel's (flock), so a
    crashed or killed run never leaves a stale one behind; a leftover lock file does not block."""
    out_dir = Path(out_dir)
    path = out_dir / LOCK_FILE
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise CheckpointError(f"Cannot write into the output folder {out_dir} ({exc.strerror}); "
                              "choose another --out.") from exc
    while fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise CheckpointError(
                f"Another training run{f' (process {holder})' if holder.isdigit() else ''} is writing to {out_dir}. "
                "Wait for it to finish, or train into another --out.") from None
        except OSError as exc:  # some network file systems have no locks
            print(f"warning: cannot lock {path} ({exc.strerror}); make sure no other run writes to {out_dir}",
                  file=sys.stderr)
            break
        # A run that was finishing may have removed the file between our open and our lock; the lock
        # must be on the file that is there now, or two runs could each hold one.
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            try:  # the holder's id makes the refusal clearer, but a full disk must not stop the run here
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError:
                pass
            break
        os.close(fd)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)  # while still locked, so that no one locks the old file meanwhile
        os.close(fd)
