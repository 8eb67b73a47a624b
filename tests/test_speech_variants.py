"""The speech screen's variants are the recipe with the named fields changed, and nothing else."""

import dataclasses

import pytest

from benchmarks.speech_variants import VARIANTS, configs
from mvae.config import shipped_configs


@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_variant_is_the_recipe_with_its_change(name):
    recipe, recipe_train = shipped_configs()
    change = dict(VARIANTS[name])
    model_cfg, train_cfg = configs(change, epochs=3)
    model_change = {k: v for k, v in change.items() if k != "train"}

    def differs(k, v):
        if k == "speech_weight":
            return recipe.recon_weights["speech"] != v
        if k == "audio":
            return any(getattr(recipe.audio, a) != b for a, b in v.items())
        return getattr(recipe, k) != v

    changed = {f.name for f in dataclasses.fields(model_cfg) if getattr(model_cfg, f.name) != getattr(recipe, f.name)}
    wanted = {("recon_weights" if k == "speech_weight" else k) for k, v in model_change.items() if differs(k, v)}
    assert changed == wanted
    for field, value in change.get("audio", {}).items():
        assert getattr(model_cfg.audio, field) == value
    changed_train = {f.name for f in dataclasses.fields(train_cfg)
                     if getattr(train_cfg, f.name) != getattr(recipe_train, f.name)} - {"epochs", "eval_every"}
    assert changed_train == {k for k, v in change.get("train", {}).items() if getattr(recipe_train, k) != v}
    assert train_cfg.epochs == 3 and train_cfg.lr_schedule == recipe_train.lr_schedule
    if "speech_weight" in VARIANTS[name]:
        assert model_cfg.recon_weights["speech"] == VARIANTS[name]["speech_weight"]


@pytest.fixture
def second_voice():
    """A second speech modality in the registry for the length of a test (no data: only names are asked)."""
    from mvae import registry

    spec = registry.register(dataclasses.replace(registry.modality("speech"), name="voice2", judges=("speech",)))
    yield spec.name
    registry.unregister(spec.name)


def test_the_directions_into_speech_are_the_registrys_shipped_three():
    from benchmarks.speech_variants import directions

    assert directions(("farsi", "kannada", "speech")) == [(("farsi",), "speech"), (("kannada",), "speech"),
                                                          (("speech",), "speech")]
    assert directions(("farsi", "kannada")) == []  # a model without speech has none


def test_a_second_speech_modality_gets_its_directions_and_its_weight(second_voice):
    from benchmarks.speech_variants import directions, heard

    modalities = ("farsi", "speech", second_voice)
    assert heard(modalities) == ("speech", second_voice)
    assert [d for d in directions(modalities) if d[1] == second_voice] == [
        (("farsi",), second_voice), (("speech",), second_voice), ((second_voice,), second_voice)]


def test_a_runs_line_lists_each_judge_from_the_label_then_each_modality():
    from benchmarks.speech_variants import table_line

    order = [f"{j}:{d}->speech" for j in ("speech", "speech_synthetic")
             for d in ("label", "farsi", "kannada", "speech")]
    scores = {key: i / 100 for i, key in enumerate(order)} | {f"{key}@0": 0.99 for key in order}
    assert table_line(scores) == " ".join(f"{i / 100:.2f}" for i in range(len(order)))
    assert table_line({}) == " ".join(["nan"] * len(order))  # a figure a run lacks shows as nan, not an error
