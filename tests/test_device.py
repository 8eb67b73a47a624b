"""Random draws land on the right device: a CUDA generator cannot fill a CPU tensor, nor the reverse.

No GPU is needed to check it: the model runs on the `meta` device, with a CPU generator, under a torch
function mode that enforces CUDA's rule for every call given a generator.
"""

import pytest
import torch
from torch.overrides import TorchFunctionMode

from mvae.config import ModelConfig
from mvae.model.model import MVAE
from mvae.model.objectives import mvae_objective


class GeneratorDeviceRule(TorchFunctionMode):
    """Raises, as CUDA does, when a generator fills a tensor on another device."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        generator = kwargs.get("generator")
        if generator is not None:
            in_place = getattr(func, "__name__", "").endswith("_") and args and isinstance(args[0], torch.Tensor)
            target = args[0].device if in_place else torch.device(kwargs.get("device") or "cpu")
            if target.type != generator.device.type:
                raise RuntimeError(f"a {generator.device.type} generator cannot fill a {target.type} tensor")
        return func(*args, **kwargs)


def meta_model_and_batch(style_dim: int, batch_size: int = 4, **changes):
    cfg = ModelConfig(architecture="conv-mlp", latent_dim=8, style_dim=style_dim, hidden=32, conv_channels=8, **changes)
    model = MVAE(cfg).to("meta")
    batch = {"farsi": torch.empty(batch_size, 28, 28, device="meta"),
             "kannada": torch.empty(batch_size, 28, 28, device="meta"),
             "speech": torch.empty(batch_size, 64, 64, device="meta"),
             "label": torch.zeros(batch_size, dtype=torch.long, device="meta")}
    return model, batch


def test_the_rule_catches_a_generator_on_the_wrong_device():
    with GeneratorDeviceRule(), pytest.raises(RuntimeError, match="cannot fill"):
        torch.randn(3, generator=torch.Generator(), device="meta")


@pytest.mark.parametrize("style_dim, changes", [(0, {}), (4, {}), (4, {"cross_style": "own", "swap_weight": 1.0})])
def test_objective_draws_on_the_generators_device_and_lands_on_the_models(style_dim, changes):
    model, batch = meta_model_and_batch(style_dim, **changes)
    with GeneratorDeviceRule():
        out = mvae_objective(model, batch, generator=torch.Generator().manual_seed(0))
    assert out.loss.device.type == "meta"


@pytest.mark.parametrize("style_dim", [0, 4])
def test_generation_draws_on_the_generators_device(style_dim):
    model, batch = meta_model_and_batch(style_dim)
    with GeneratorDeviceRule():
        made = model.generate({"label": batch["label"]}, ["farsi", "speech"], temperature=1.0,
                              generator=torch.Generator().manual_seed(0))
    assert made["farsi"].device.type == "meta" and made["farsi"].shape == (4, 28, 28)
