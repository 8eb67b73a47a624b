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


def test_a_partial_run_replaces_only_its_own_rows_in_the_readme_block():
    from benchmarks.run import spliced

    previous = "\n".join([
        "Benchmarks (full mode, 2026-01-01 10:00, 200 s)", "", "Machine: old", "",
        "| benchmark | result | target | met | notes |", "|---|---|---|---|---|",
        "| 1a. throughput | 1 | — | — |  |", "| 1c. speed-up | 1.5× | ≥ 3× | **no** |  |",
        "| 2a. predict p50 | 10 ms | — | yes |  |", "| 4. training | 20 min | ≤ 30 min | yes |  |"])
    report = "\n".join([
        "Benchmarks (full mode, 2026-02-02 11:00, 60 s)", "", "Machine: new", "",
        "| benchmark | result | target | met | notes |", "|---|---|---|---|---|",
        "| 1a. throughput | 2 | — | — |  |", "| 1a'. subsampled | 4 | — | — |  |",
        "| 1c. speed-up | 4.0× | ≥ 3× | yes |  |", "| 4. training | 29 min | ≤ 30 min | yes |  |"])
    block = spliced(report, previous)
    rows = [line.split(" | ")[0] for line in block.splitlines() if line.startswith("| ") and "benchmark" not in line]
    assert rows == ["| 1a. throughput", "| 1a'. subsampled", "| 1c. speed-up", "| 2a. predict p50", "| 4. training"]
    assert "| 1c. speed-up | 4.0×" in block and "1.5×" not in block and "| 2a. predict p50 | 10 ms" in block
    assert "Rows 2 were measured by earlier runs (the last full run: full mode, 2026-01-01 10:00, 200 s); " \
           "this run re-measured 1, 4." in block
    assert block.startswith("Benchmarks (full mode, 2026-02-02 11:00, 60 s)")
    # Splicing again carries the date of the last full run, not of the partial run that kept the rows.
    again = spliced(report.replace("29 min", "28 min"), block)
    assert "the last full run: full mode, 2026-01-01 10:00, 200 s" in again and "28 min" in again
