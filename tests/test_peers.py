"""The peer benchmark (benchmarks/peers.py, issue 21): `--quick` runs the whole path on the suite's small
synthetic data set, every contender's adapter decodes each missing modality to its shape and range, and the
README section says where the project falls behind and why a peer has no row."""

from __future__ import annotations

import json
import re

import pytest
import torch

pytest.importorskip("multivae", reason="MultiVae is not installed (pip install -r requirements-bench.txt)")

from benchmarks import peers  # noqa: E402
from benchmarks.peer_models import CONTENDERS, PEER, PROJECT, build_peer, project_trainer  # noqa: E402
from benchmarks.peer_table import readme_section  # noqa: E402
from mvae import registry  # noqa: E402
from mvae.config import LABEL, shipped_configs  # noqa: E402
from mvae.errors import USER_ERROR_EXIT  # noqa: E402
from mvae.training.loop import load_training_data  # noqa: E402

QUICK_STEPS = 2
BLOCK = "<!-- peers:start -->\nold\n<!-- peers:end -->\n"


@pytest.fixture(scope="module")
def small_data(synthetic_data):
    model_cfg, train_cfg = shipped_configs()
    return load_training_data(synthetic_data, model_cfg, train_cfg, progress=False)


@pytest.fixture(scope="module")
def quick_run(synthetic_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("peers")
    readme = folder / "README.md"
    readme.write_text("# title\n\n" + BLOCK + "after\n")
    code = peers.main(["--data-dir", str(synthetic_data), "--quick", "--max-steps", str(QUICK_STEPS),
                       "--out", str(folder / "results.json"), "--readme", str(readme)])
    return code, json.loads((folder / "results.json").read_text()), readme.read_text()


def table_rows(text: str, which: int = 0) -> list[list[str]]:
    """The cells of the text's `which`-th Markdown table."""
    tables, rows = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows:
            tables, rows = tables + [rows], []
    return tables[which]


def test_quick_runs_every_contender_and_writes_the_table(quick_run):
    code, results, readme = quick_run
    assert code == 0
    rows = {r["model"]: r for r in results["rows"]}
    assert set(rows) == {c.name for c in CONTENDERS}
    for name, row in rows.items():
        assert "error" not in row, (name, row.get("traceback"))
        assert row["steps"] == QUICK_STEPS and row["samples_per_second"] > 0
        for key in ("t1", "means"):
            for judge, value in row["coherence"][key]["speech"].items():
                assert 0.0 <= value <= 1.0, (name, judge)
            assert 0.0 <= row["coherence"][key]["digits"] <= 1.0
        assert set(row["accuracy"]["probe"]) == set(registry.names())
        assert bool(row["accuracy"]["head"]) == (row["family"] == PROJECT)
        assert set(row["generation"]) == set(registry.names(registry.IMAGE))
    # Both speech judges scored every direction into speech.
    judges = rows["MMVAE+"]["coherence"]["t1"]["directions"]
    assert len(judges) == len({j for n in registry.names(registry.SPEECH) for j in registry.modality(n).reads})

    assert readme.startswith("# title\n\n<!-- peers:start -->\n") and readme.endswith("<!-- peers:end -->\nafter\n")
    assert "old" not in readme and "DATA_DIR" in readme
    table = table_rows(readme)
    header, body = table[0], table[2:]
    assert table[1] == ["---"] * len(header)
    assert [r[0] for r in body] == [c.name for c in CONTENDERS]
    assert all(len(r) == len(header) for r in body)
    assert sum("into speech" in h for h in header) == 2 * len(rows["MMVAE+"]["coherence"]["t1"]["speech"])
    # The directions from one modality, a column per contender.
    directed = table_rows(readme, 1)
    assert directed[0] == ["direction", *[c.name for c in CONTENDERS]]
    names = registry.names()
    assert len(directed) - 2 == len(names) * (len(names) - 1)
    assert all(0.0 <= float(v) <= 1.0 for r in directed[2:] for v in r[1:])


@pytest.mark.parametrize("c", CONTENDERS, ids=lambda c: c.name)
def test_every_adapter_decodes_each_missing_modality_to_its_shape_and_range(c, small_data, tmp_path):
    if c.family == PEER:
        adapter = build_peer(c, small_data.train.banks, seed=0)
    else:
        adapter = project_trainer(c, shipped_configs()[1], small_data, tmp_path)[1]
    pairs = small_data.test.covering_pairs()
    batch = small_data.test.batch(pairs, slice(0, 7))
    names = adapter.input_names
    assert set(names) == set(registry.names())
    for target in names:
        sources = {n: batch[n] for n in names if n != target}
        for temperature in (1.0, 0.0):
            made = adapter.generate(sources, [target], temperature)[target]
            assert made.shape == batch[target].shape, (target, temperature)
            assert torch.isfinite(made).all()
            if registry.modality(target).kind == registry.IMAGE:
                assert made.min() >= 0.0 and made.max() <= 1.0, target
            else:  # a log-mel: in the range of real ones, give or take what an untrained decoder adds
                real = small_data.train.banks[target].items
                spread = real.max() - real.min()
                assert real.min() - spread <= made.min() and made.max() <= real.max() + spread, target
        assert adapter.latent(target, batch[target]).shape[0] == 7
    if c.family == PEER:
        with pytest.raises(ValueError, match="temperature"):
            adapter.generate({names[0]: batch[names[0]]}, [names[1]], 0.5)
        with pytest.raises(ValueError, match="conditioned"):
            adapter.generate({LABEL: batch[LABEL]}, [names[0]], 1.0)


def fake_row(model, family, coherence, seed=0):
    speech = {"judge_a": coherence, "judge_b": coherence / 2}
    section = {"digits": coherence, "speech": speech, "directions": {}}
    generation = {"script": {"diversity": 0.8, "halftone": {"generated": 0.2, "real": 0.1}, "frechet": 30.0}}
    return {"model": model, "family": family, "seed": seed, "steps": 10, "samples_per_second": 100.0,
            "coherence": {"t1": section, "means": section}, "generation": generation,
            "accuracy": {"probe": {"a": 0.9}, "head": {"a": 0.95} if family == PROJECT else {}}}


def test_the_section_says_where_a_peer_leads_and_why_a_peer_has_no_row():
    results = {"budget_minutes": 4, "seeds": 2, "max_steps": 0, "quick": False, "machine": "m", "threads": 2,
               "sizes": {"eval_pairs": 10, "speech_pairs": 5}, "command": "python -m benchmarks.peers",
               "contenders": [{"model": m} for m in ("shipped recipe", "MMVAE+", "MVTCAE")],
               "rows": [fake_row("shipped recipe", PROJECT, 0.6), fake_row("shipped recipe", PROJECT, 0.8, 1),
                        fake_row("MMVAE+", PEER, 0.9),
                        {"model": "MVTCAE", "family": PEER, "seed": 0, "error": "RuntimeError: out of memory"}]}
    text = readme_section(results)
    # The spread over two seeds, and the peer that leads every coherence column named with both figures.
    assert "0.700 (0.600–0.800)" in text
    assert re.search(r"coherence into digits, T=1\*\*: the shipped recipe \(0\.7\) falls behind MMVAE\+ \(0\.9\)",
                     text)
    assert "samples/s" not in text.split("Where the project is not first")[1].split("Peers without")[0]
    assert "MVTCAE (seed 0) could not run on this data: `RuntimeError: out of memory`" in text
    assert "4 of 6 rows are in, and MMVAE+ (seed 1), MVTCAE (seed 1) are still to run" in text
    assert [r[0] for r in table_rows(text)[2:]] == ["shipped recipe", "MMVAE+"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--budget-min", "0"], "--budget-min must be positive"),
    (["--seeds", "0"], "--seeds must be positive"),
    (["--max-steps", "-1"], "--max-steps must be 0"),
    (["--models", "VAE"], "invalid choice"),
])
def test_bad_flags_are_refused_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        peers.main(argv)
    assert stop.value.code == USER_ERROR_EXIT
    assert message in capsys.readouterr().err


def test_a_readme_without_the_block_is_refused_before_any_training(tmp_path, capsys, synthetic_data):
    readme = tmp_path / "README.md"
    readme.write_text("# no block\n")
    code = peers.main(["--data-dir", str(synthetic_data), "--quick", "--readme", str(readme)])
    assert code == USER_ERROR_EXIT
    assert "has no <!-- peers:start -->" in capsys.readouterr().err
    assert readme.read_text() == "# no block\n"


def test_resume_keeps_finished_rows_and_trains_only_what_is_missing(quick_run, synthetic_data, tmp_path,
                                                                    monkeypatch, capsys):
    _, results, _ = quick_run
    out = tmp_path / "results.json"
    missing = results["rows"][-1]["model"]
    out.write_text(json.dumps(results | {"rows": results["rows"][:-1], "complete": False}))
    trained = []

    def fake(name, *args, **kwargs):
        trained.append(name)
        return {"model": name, "family": PEER, "seed": 0, "steps": QUICK_STEPS, "pairs": 1}

    monkeypatch.setattr(peers, "run_one", fake)
    base = ["--data-dir", str(synthetic_data), "--quick", "--max-steps", str(QUICK_STEPS), "--out", str(out)]
    monkeypatch.setattr(peers, "readme_section", lambda results: "")
    assert peers.main([*base, "--resume"]) == 0
    assert trained == [missing]
    resumed = json.loads(out.read_text())
    assert resumed["complete"] and resumed["rows"][:-1] == json.loads(json.dumps(results["rows"][:-1]))
    assert "--resume" not in resumed["command"] and resumed["wall_seconds"] >= results["wall_seconds"]
    # Rows of a run with other settings would not compare: refused, and the file is left as it was.
    before = out.read_text()
    assert peers.main(["--data-dir", str(synthetic_data), "--quick", "--max-steps", "3", "--out", str(out),
                       "--resume"]) == USER_ERROR_EXIT
    assert "other settings (max_steps)" in capsys.readouterr().err and out.read_text() == before


def test_each_finished_row_reaches_the_readme_with_the_rows_still_to_run(synthetic_data, tmp_path, monkeypatch):
    readme, out = tmp_path / "README.md", tmp_path / "results.json"
    readme.write_text(BLOCK)
    names = ["shipped recipe", "MMVAE+"]
    seen = []

    def row(name, data, judges, front_end, args, seed, sizes):
        return fake_row(name, PROJECT if name == "shipped recipe" else PEER, 0.5, seed)

    def fake(*args):
        seen.append(readme.read_text())  # what the README said before this row was trained
        if len(seen) == 2:
            raise KeyboardInterrupt  # the sitting ends during the second model
        return row(*args)

    monkeypatch.setattr(peers, "run_one", fake)
    argv = ["--data-dir", str(synthetic_data), "--quick", "--out", str(out), "--readme", str(readme),
            "--seeds", "2", "--models", *names]
    with pytest.raises(KeyboardInterrupt):
        peers.main(argv)
    assert "old" in seen[0]
    text = readme.read_text()
    assert seen[1] == text and [r[0] for r in table_rows(text)[2:]] == [names[0]]
    assert "No peer has a row yet, so nothing is compared." in text
    assert f"1 of 4 rows are in, and {names[1]} (seed 0), {names[0]} (seed 1), {names[1]} (seed 1) are still to run" \
        in text
    assert "--seeds 2" in text and "--resume` trains only the missing ones" in text
    assert not json.loads(out.read_text())["complete"]
    # The finished run says nothing of missing rows.
    monkeypatch.setattr(peers, "run_one", row)
    assert peers.main([*argv, "--resume"]) == 0
    text = readme.read_text()
    assert "not finished" not in text and "No peer" not in text and len(table_rows(text)[2:]) == 2


def test_a_run_resumed_on_another_machine_names_both():
    where = "AMD EPYC, 2 logical CPUs, {} GB RAM, load average {} at the start; Python 3.11.7; Linux"
    rows = [fake_row("shipped recipe", PROJECT, 0.6) | {"machine": where.format(24, 0.1)},
            fake_row("MMVAE+", PEER, 0.9) | {"machine": where.format(16, 1.5)},
            fake_row("MVTCAE", PEER, 0.9) | {"machine": where.format(24, 2.0)}]
    results = {"budget_minutes": 30, "seeds": 1, "max_steps": 0, "quick": False, "threads": 2,
               "machine": where.format(24, 0.3), "sizes": {"eval_pairs": 10, "speech_pairs": 5},
               "command": "python -m benchmarks.peers", "contenders": [{"model": r["model"]} for r in rows],
               "rows": rows}
    text = readme_section(results)
    assert f"machine: {where.format(24, 0.3)}; some rows were trained on AMD EPYC, 2 logical CPUs, 16 GB RAM;" in text
    assert "24 GB RAM; Python" not in text  # the last sitting's machine is named once, with its load
    results["rows"] = [rows[0], rows[2]]
    results["contenders"] = results["contenders"][::2]
    assert "some rows" not in readme_section(results)
