"""The benchmarks' own pieces: what they feed the model and the app, and the load benchmark's command line."""

from __future__ import annotations

import json

import pytest

from tests.served_app import CHROMIUM

needs_chromium = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"the load benchmark checks for Chromium at "
                                                                    f"{CHROMIUM} first, and it is not there")


def test_the_latency_benchmark_draws_on_the_last_image_modality_and_speaks_to_the_first_speech_one():
    from benchmarks.lean_bench import input_modalities

    assert input_modalities(("farsi", "kannada", "speech")) == ("kannada", "speech")
    assert input_modalities(("speech", "farsi")) == ("farsi", "speech")
    with pytest.raises(ValueError, match="needs a model with an image and a speech modality; this one has farsi"):
        input_modalities(("farsi", "kannada"))


def test_the_throughput_batch_has_every_modality_in_its_encoders_shape_and_trains():
    import torch

    from benchmarks.inputs import random_batch
    from mvae.model.objectives import mvae_objective
    from tests.helpers import tiny_model_and_batch

    model, reference = tiny_model_and_batch()
    batch = random_batch(model, 5, torch.Generator().manual_seed(0))
    assert {k: v.shape for k, v in batch.items()} == {k: v.shape for k, v in reference.items()}
    assert batch["label"].min() >= 0 and batch["label"].max() < model.cfg.n_classes
    assert torch.isfinite(mvae_objective(model, batch, sample=False).loss)


@needs_chromium
def test_the_load_benchmark_finds_its_recording_in_the_speech_modalitys_folder(tmp_path, capsys):
    from benchmarks.load_bench import RECORDING, parse_args

    folder = tmp_path / "fsdd" / "recordings"
    with pytest.raises(SystemExit):
        parse_args(["--data-dir", str(tmp_path)])
    assert f"{folder / RECORDING} is missing: pass --data-dir" in capsys.readouterr().err
    folder.mkdir(parents=True)
    (folder / RECORDING).write_bytes(b"")
    assert parse_args(["--data-dir", str(tmp_path)]).wav == folder / RECORDING


@needs_chromium
@pytest.mark.parametrize(("argv", "words"), [
    (["--sessions", "--hostile-sessions", "0"], "nothing to run: give --sessions or --hostile-sessions"),
    (["--rounds", "0"], "--rounds must be 1-20"),
    (["--sessions", "65"], "each --sessions 1-64"),
])
def test_the_load_benchmark_refuses_what_it_cannot_run_in_words(argv, words, capsys):
    from benchmarks.load_bench import parse_args

    with pytest.raises(SystemExit):
        parse_args(argv)
    assert words in capsys.readouterr().err


def test_rendering_the_stored_load_results_prints_their_table(capsys):
    from benchmarks.load_bench import ROOT, main, markdown

    stored = ROOT / "benchmarks" / "load_results.json"
    report = json.loads(stored.read_text())
    main(["--render", "--out", str(stored)])
    table = capsys.readouterr().out
    assert table == markdown(report) + "\n"
    assert "| sessions | results | p50 |" in table and "Hostile mix:" in table
