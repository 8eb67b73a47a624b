"""The speech screen's variants are the recipe with the named fields changed, and nothing else."""

import dataclasses

import pytest

from benchmarks.speech_variants import VARIANTS, configs
from mvae.config import shipped_configs


@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_variant_is_the_recipe_with_its_change(name):
    recipe, recipe_train = shipped_configs()
    model_cfg, train_cfg = configs(VARIANTS[name], epochs=3)
    changed = {f.name for f in dataclasses.fields(model_cfg) if getattr(model_cfg, f.name) != getattr(recipe, f.name)}
    wanted = {("recon_weights" if k == "speech_weight" else k) for k, v in VARIANTS[name].items()
              if (recipe.recon_weights["speech"] if k == "speech_weight" else getattr(recipe, k)) != v}
    assert changed == wanted
    assert train_cfg.epochs == 3 and train_cfg.lr_schedule == recipe_train.lr_schedule
    if "speech_weight" in VARIANTS[name]:
        assert model_cfg.recon_weights["speech"] == VARIANTS[name]["speech_weight"]
