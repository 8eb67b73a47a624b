"""The synthetic voices (mvae.evaluation.voices) and the shipped speech judge that learnt from them alone."""

from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

from mvae.config import AudioConfig
from mvae.errors import DataError
from mvae.evaluation import voices
from mvae.signals.audio import AudioFrontEnd

REQUIRE_ENV = "MVAE_REQUIRE_DATA"  # CI installs espeak-ng beside the real data: missing, it is a failure

# Measured on the shipped judge by `python -m mvae.evaluation.judges` (checkpoints/judges/judges.json): held-out
# synthetic voices 0.983 (all eight English voices with the 21 held-out variants), real FSDD test recordings as
# recorded 0.493. The bars sit a few points under that, so that the shipped judge passes and one that learnt
# nothing (chance is 0.10), or learnt a narrower set of voices, fails.
HELD_OUT_VOICES_MIN = 0.95
REAL_FSDD_RAW_MIN = 0.45
# The held-out voices the test renders: two of the English voices with every held-out variant.
TEST_ENGLISH_VOICES = 2


@pytest.fixture(scope="module")
def espeak():
    try:
        return voices.espeak()
    except DataError as exc:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{exc} ({REQUIRE_ENV} is set, so this is an error)")
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def front_end():
    return AudioFrontEnd(AudioConfig())


def test_missing_espeak_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(voices.shutil, "which", lambda name: None)
    with pytest.raises(DataError) as caught:
        voices.espeak()
    assert str(caught.value) == "install espeak-ng (Debian: apt-get install espeak-ng)"


def test_the_synthetic_set_takes_no_data_folder():
    """Structural: nothing that builds the synthetic voices can be handed a folder of FSDD (or any data)."""
    from mvae.evaluation import judges

    builders = (voices.utterances, voices.synthetic_bank, voices.render, voices.speak, judges.synthetic_voice_banks,
                judges.train_synthetic_judge)
    for builder in builders:
        names = set(inspect.signature(builder).parameters)
        assert not names & {"data_dir", "data", "folder", "path", "root"}, (builder.__name__, names)
    # And the module reads no dataset: it imports neither the data sources nor the banks of real data.
    source = inspect.getsource(voices)
    assert "data.sources" not in source and "data.banks" not in source and "resolve_data_dir" not in source


def test_voices_exclude_mbrola_and_hold_out_whole_variants(espeak):
    english = voices.english_voices()
    assert len(english) >= 5 and all(v.startswith("en") for v in english)
    names = voices.variants()
    train, held = voices.split_variants(names)
    assert set(train).isdisjoint(held) and set(train) | set(held) == set(names)
    assert len(held) == -(-len(names) // voices.SETTINGS.held_out_every)
    items = voices.utterances(english[:1], held[:2], renditions=1, seed=0)
    assert {u.voice.split("+")[1] for u in items} == set(held[:2]) and len(items) == 20
    low, high = voices.SETTINGS.speed_wpm
    assert all(low <= u.speed <= high for u in items)


def test_a_few_utterances_become_log_mels_of_the_front_end(espeak, front_end):
    samples, rate = voices.speak("seven", "en-us+m3", 175, 50)
    assert samples.ndim == 1 and rate > 0 and np.abs(samples).max() > 0.01
    items = voices.utterances(["en-us"], ["m3", "f2"], renditions=1, seed=0)[:4]
    bank = voices.synthetic_bank(items, front_end, progress=False)
    cfg = front_end.cfg
    assert tuple(bank.items.shape) == (4, cfg.n_mels, cfg.n_frames) and list(bank.labels) == [0, 1, 2, 3]
    assert np.isfinite(bank.items.numpy()).all()
    # The same utterance renders the same (room, noise and gain come from its own seed).
    again = voices.synthetic_bank(items[:1], front_end, progress=False)
    assert np.allclose(again.items[0].numpy(), bank.items[0].numpy())


def test_room_keeps_the_peak_and_lengthens_by_half_its_tail():
    rng = np.random.default_rng(0)
    wave = np.zeros(800, np.float32)
    wave[100] = 0.5
    wet = voices.room(wave, 8000, 0.2, rng)
    assert len(wet) == 800 + 800 and np.abs(wet).max() == pytest.approx(0.5)


@pytest.mark.slow
def test_shipped_fsdd_free_judge_hears_held_out_voices_and_real_fsdd(espeak, front_end, real_data):
    from mvae.data.banks import recording_bank
    from mvae.evaluation.judges import SYNTHETIC, accuracy, load_judges

    judges, meta = load_judges()
    judge = judges[SYNTHETIC]
    _, held = voices.split_variants(voices.variants())
    # Held-out voices, rendered again here (the builder's held-out seed, 0 + 1): the judge never heard any of
    # these variants, in any English voice.
    items = voices.utterances(voices.english_voices()[:TEST_ENGLISH_VOICES], held, renditions=1, seed=1)
    read = accuracy(judge, voices.synthetic_bank(items, front_end, progress=False))
    assert read >= HELD_OUT_VOICES_MIN, f"held-out synthetic voices read at {read:.3f}"
    assert meta["report"][SYNTHETIC]["held_out_voices_accuracy"] >= HELD_OUT_VOICES_MIN
    real = accuracy(judge, recording_bank(real_data, "speech", "test", front_end, progress=False))
    assert real >= REAL_FSDD_RAW_MIN, f"real FSDD test recordings (raw) read at {real:.3f}"
