"""Shared fixtures: a small synthetic dataset in the prepared format, the real data when present, and the
markers each test gets from the fixtures it uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

from tests.helpers import make_dataset

REAL_DATA_ENV = "MVAE_DATA_DIR"
REQUIRE_ENV = "MVAE_REQUIRE_DATA"  # set by .ci/run: missing real data is then a failure, not a skip

# The property-based suites: a bounded number of examples, so that CI's time is known; the contract's own
# 5 s bound (tests/contract.py) replaces Hypothesis' deadline. MVAE_HYPOTHESIS=thorough for a longer hunt.
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("MVAE_HYPOTHESIS", "ci"))


@pytest.fixture(scope="session", autouse=True)
def bank_cache_of_the_session(tmp_path_factory):
    """train.py keeps its speech banks in the user's cache folder (mvae.data.cache): the suite's runs, in this
    process and in the ones it starts, keep theirs in a folder of the session instead."""
    from mvae.data.cache import CACHE_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("bank-cache")))
        yield


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("synthetic-data"))


@pytest.fixture(scope="session")
def real_data() -> Path:
    path = os.environ.get(REAL_DATA_ENV)
    present = path and (Path(path) / "farsi" / "test.npz").is_file() and (Path(path) / "fsdd" / "recordings").is_dir()
    if not present:
        message = (f"the real datasets are not available: set {REAL_DATA_ENV} to a folder prepared by "
                   "`python -m mvae.data.download`")
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(message + f" ({REQUIRE_ENV} is set, so this is an error)")
        pytest.skip(message)
    return Path(path)


@pytest.fixture(scope="session")
def shipped_pipeline():
    import mvae

    return mvae.load()


@pytest.fixture(scope="module")
def one_torch_thread():
    """A prediction is a batch of one: extra threads gain nothing, and on a busy machine each hand-off
    between them can wait for a time slice."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(items):
    # A test is on the real data when it asks for the fixture, directly or through another fixture; the
    # browser and slow markers are set by the test files themselves.
    for item in items:
        if "real_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_data)
