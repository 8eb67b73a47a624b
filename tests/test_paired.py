import numpy as np
import pytest
import torch

from mvae.data.paired import Bank, PairedDataset


def labelled_bank(labels, offset):
    labels = np.asarray(labels)
    # Each item's value encodes its own label, so misaligned pairs are visible in the batch.
    return Bank(torch.tensor(labels * 100.0 + offset + np.arange(len(labels)) * 1e-3).float(), labels)


@pytest.fixture
def dataset():
    rng = np.random.default_rng(1)
    banks = {"farsi": labelled_bank(rng.integers(0, 10, 500), 0), "kannada": labelled_bank(np.arange(300) % 10, 1),
             "speech": labelled_bank(np.repeat(np.arange(10), 3), 2)}
    return PairedDataset(banks, seed=3)


def test_pairs_keep_labels_aligned(dataset):
    pairs = dataset.epoch_pairs(0, 1000)
    batch = dataset.batch(pairs, slice(0, 1000))
    for name in ("farsi", "kannada", "speech"):
        assert torch.equal((batch[name] // 100).long(), batch["label"]), name
    assert np.bincount(pairs.labels, minlength=10).tolist() == [100] * 10


def test_pairing_is_deterministic_and_changes_every_epoch(dataset):
    a, b = dataset.epoch_pairs(4, 200), dataset.epoch_pairs(4, 200)
    c = dataset.epoch_pairs(5, 200)
    assert all(np.array_equal(a.index[k], b.index[k]) for k in a.index)
    assert not np.array_equal(a.index["farsi"], c.index["farsi"])
    other_seed = PairedDataset(dataset.banks, seed=4).epoch_pairs(4, 200)
    assert not np.array_equal(a.index["kannada"], other_seed.index["kannada"])


def test_covering_pairs_use_every_item(dataset):
    pairs = dataset.covering_pairs()
    assert len(pairs) == 500
    for name, bank in dataset.banks.items():
        assert set(pairs.index[name]) == set(range(len(bank.labels))), name
        assert np.array_equal(bank.labels[pairs.index[name]], pairs.labels)


def test_batches_resume_mid_epoch(dataset):
    pairs = dataset.epoch_pairs(0, 100)
    full = list(dataset.batches(pairs, 32))
    resumed = list(dataset.batches(pairs, 32, start=2))
    assert [b for b, _ in resumed] == [2, 3]
    assert torch.equal(full[2][1]["farsi"], resumed[0][1]["farsi"])


def test_a_missing_class_is_refused():
    with pytest.raises(ValueError, match="class"):
        PairedDataset({"farsi": labelled_bank(np.arange(9), 0)})


@pytest.mark.slow
def test_test_pairs_come_from_test_splits_only(synthetic_data):
    from mvae.config import AudioConfig
    from mvae.data.banks import load_banks
    from mvae.data.sources import load_images, recordings
    from mvae.signals.audio import AudioFrontEnd

    front_end = AudioFrontEnd(AudioConfig())
    banks = load_banks(synthetic_data, "test", front_end, ("farsi", "kannada", "speech"), aug_copies=3, progress=False)
    test_images = load_images(synthetic_data, "farsi", "test").images
    assert torch.equal(banks["farsi"].items, torch.from_numpy(test_images).float() / 255)
    test_recordings = recordings(synthetic_data, "speech", "test")
    assert {r.index for r in test_recordings} == set(range(5))
    assert len(banks["speech"].labels) == len(test_recordings)  # no augmented copies in the test split
    assert {r.index for r in recordings(synthetic_data, "speech", "train")}.isdisjoint(range(5))


def test_each_augmented_copy_points_at_its_own_unaugmented_recording(synthetic_data):
    from mvae.config import AudioConfig
    from mvae.data.banks import load_banks
    from mvae.signals.audio import AudioFrontEnd

    front_end = AudioFrontEnd(AudioConfig())
    plain = load_banks(synthetic_data, "train", front_end, ("speech",), progress=False)["speech"]
    copied = load_banks(synthetic_data, "train", front_end, ("speech",), aug_copies=2, progress=False)["speech"]
    assert plain.clean is None and len(copied.labels) == 3 * len(plain.labels)
    # Every row's clean row is its recording's unaugmented log-mel, the one the bank without copies holds.
    assert torch.equal(copied.items[copied.clean], plain.items.repeat_interleave(3, 0))
    assert (copied.labels[copied.clean] == copied.labels).all()
    assert not torch.equal(copied.items, copied.items[copied.clean]), "the copies differ from their originals"


def test_a_batch_holds_the_originals_only_when_asked(synthetic_data):
    from mvae.config import AudioConfig
    from mvae.data.banks import load_banks
    from mvae.data.paired import PairedDataset, clean_key
    from mvae.signals.audio import AudioFrontEnd

    banks = load_banks(synthetic_data, "train", AudioFrontEnd(AudioConfig()), ("farsi", "speech"), aug_copies=2,
                       progress=False)
    asked = PairedDataset(banks, seed=1, clean_targets=True)
    pairs = asked.epoch_pairs(0, 40)
    batch = asked.batch(pairs, slice(0, 40))
    assert set(batch) == {"farsi", "speech", clean_key("speech"), "label"}
    rows = pairs.index["speech"]
    assert torch.equal(batch[clean_key("speech")], banks["speech"].items[banks["speech"].clean[rows]])
    assert set(PairedDataset(banks, seed=1).batch(pairs, slice(0, 40))) == {"farsi", "speech", "label"}


def test_warped_targets_keep_a_copy_s_speed_pitch_and_place_and_drop_its_noise(synthetic_data):
    from mvae.config import AudioConfig
    from mvae.data.banks import load_banks
    from mvae.data.paired import PairedDataset, clean_key
    from mvae.signals.audio import AudioFrontEnd

    front_end = AudioFrontEnd(AudioConfig())
    plain = load_banks(synthetic_data, "train", front_end, ("speech",), aug_copies=2, progress=False)["speech"]
    warped = load_banks(synthetic_data, "train", front_end, ("speech",), aug_copies=2, progress=False,
                        warped_targets=True)["speech"]
    assert plain.targets is None and torch.equal(plain.items, warped.items), "the inputs are the same copies"
    originals = warped.clean == np.arange(len(warped.labels))
    # An original is its own target; a copy's target is neither the copy (its noise is gone) nor the original.
    assert torch.equal(warped.targets[originals], warped.items[originals])
    copies = ~originals
    target, copy, original = warped.targets[copies], warped.items[copies], warped.items[warped.clean[copies]]
    # Where the target is loud the copy's noise barely shows, so there the target is the copy; the unmoved
    # original is not (the synthetic clips are tones: a speed, pitch or place change moves their loud bins).
    loud = target > target.amax(dim=(1, 2), keepdim=True) - 3.0
    assert (loud.sum(dim=(1, 2)) > 0).all()

    def near(x):
        return ((x - target).abs() * loud).sum(dim=(1, 2)) / loud.sum(dim=(1, 2))

    assert (near(copy) < near(original)).all(), (near(copy), near(original))
    assert near(copy).median() < 0.1 and near(original).median() > 1.0, (near(copy), near(original))
    # Where the target is quiet, the copy carries its noise and the target does not.
    quiet = target < target.amin(dim=(1, 2), keepdim=True) + 1.0
    assert ((copy - target) * quiet).sum(dim=(1, 2)).gt(0).all()

    dataset = PairedDataset({"speech": warped}, seed=1, clean_targets=True)
    pairs = dataset.epoch_pairs(0, 40)
    batch = dataset.batch(pairs, slice(0, 40))
    assert torch.equal(batch[clean_key("speech")], warped.targets[pairs.index["speech"]])


def test_a_bank_refuses_targets_of_another_shape():
    with pytest.raises(ValueError, match="targets of shape"):
        Bank(torch.zeros(4, 2, 3), np.zeros(4, np.int64), np.arange(4), torch.zeros(4, 3, 2))
