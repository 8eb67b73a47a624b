"""The public error contract, as one check the property-based suites share.

Every public call (`mvae.load`, the facade's methods, the front ends) either gives a result or raises
`mvae.InputError` (bad data or arguments) or `mvae.CheckpointError` (a bad model file), within
`MAX_SECONDS` and `MAX_TRACED_MB` of new allocations. Memory is traced with tracemalloc, which counts
numpy's buffers (numpy reports them to it) and Python's objects, so a call that converts a huge view or
decodes a whole hostile file is caught in the test process itself.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable

import mvae

MAX_SECONDS = 5.0
MAX_TRACED_MB = 1536
CONTRACT = (mvae.InputError, mvae.CheckpointError)


def within_contract(call: Callable, *args, **kwargs):
    """Run `call`; return its result, or the contract's exception it raised. Fails (AssertionError) on any
    other exception, on more than MAX_SECONDS, or on more than MAX_TRACED_MB traced at its peak."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    outcome = None
    try:
        outcome = call(*args, **kwargs)
    except CONTRACT as exc:
        outcome = exc
        assert str(exc).strip(), f"{type(exc).__name__} with no message"
    except Exception as exc:  # noqa: BLE001 - the point: anything else breaks the contract
        raise AssertionError(f"{type(exc).__name__} outside the contract: {exc!r:.300}") from exc
    finally:
        seconds = time.perf_counter() - started
        peak_mb = (tracemalloc.get_traced_memory()[1] - base) / 2**20
        if not tracing:
            tracemalloc.stop()
    assert seconds <= MAX_SECONDS, f"took {seconds:.1f} s, over {MAX_SECONDS} s"
    assert peak_mb <= MAX_TRACED_MB, f"allocated {peak_mb:.0f} MB at its peak, over {MAX_TRACED_MB} MB"
    return outcome
