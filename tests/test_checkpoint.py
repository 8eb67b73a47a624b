import json

import pytest
import torch

from mvae.checkpoint import MODEL_FILE, MODEL_JSON, load_model, load_training_state, save_model, save_training_state
from mvae.config import ModelConfig
from mvae.errors import CheckpointError
from mvae.model import MVAE


CONFIGS = {
    "mlp": ModelConfig(hidden=16, latent_dim=4),
    "conv-batchnorm": ModelConfig(architecture="conv-mlp", hidden=16, latent_dim=4, conv_channels=4,
                                  image_conv_extra=1, image_conv_batchnorm=True),
}


@pytest.fixture(params=list(CONFIGS))
def model(request):
    torch.manual_seed(0)
    m = MVAE(CONFIGS[request.param])
    m.speech_norm.set_stats(torch.arange(64.0), torch.full((64,), 2.0))
    if request.param == "conv-batchnorm":  # running statistics and an integer counter must survive too
        m.train()
        m.encoders["farsi"](torch.rand(8, 28, 28) * 3)
        m.eval()
    return m


@pytest.mark.parametrize("dtype, tol", [("float32", 0.0), ("float16", 1e-3)])
def test_round_trip(tmp_path, model, dtype, tol):
    save_model(tmp_path, model, {"metrics": {"acc": 0.5}}, dtype=dtype)
    loaded, meta = load_model(tmp_path)
    assert meta["info"]["metrics"]["acc"] == 0.5 and meta["dtype"] == dtype
    assert json.loads((tmp_path / MODEL_JSON).read_text())["model_config"]["hidden"] == 16
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert b.dtype == a.dtype and torch.allclose(a, b, atol=tol, rtol=tol), k
    assert torch.equal(loaded.speech_norm.mean.flatten(), torch.arange(64.0))
    assert loaded.cfg == model.cfg
    x = torch.rand(3, 28, 28)
    assert torch.allclose(loaded.eval().encoders["farsi"](x)[0], model.eval().encoders["farsi"](x)[0], atol=20 * tol)


def test_no_temporary_files_are_left(tmp_path, model):
    save_model(tmp_path, model, {})
    save_model(tmp_path, model, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == [MODEL_JSON, MODEL_FILE]


@pytest.mark.parametrize("damage", ["truncate", "flip_data", "flip_header", "garbage"])
def test_damaged_checkpoint_gives_a_clear_error(tmp_path, model, damage):
    path = save_model(tmp_path, model, {})
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_data":
        data[-100] ^= 0xFF
    elif damage == "flip_header":
        data[20] ^= 0xFF
    else:
        data = bytearray(b"not a checkpoint at all")
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged") as err:
        load_model(tmp_path)
    assert str(path) in str(err.value)


def test_missing_checkpoint_names_the_fix(tmp_path):
    with pytest.raises(CheckpointError, match="train.py"):
        load_model(tmp_path / "nowhere")


def test_training_state_round_trip(tmp_path, model):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = sum(p.sum() for p in model.parameters())
    loss.backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(5)
    generator_state = generator.get_state()
    save_training_state(tmp_path, model, optimizer, generator, {"epoch": 3, "batch": 7, "history": [{"x": 1}]})

    fresh = MVAE(model.cfg)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    fresh_gen = torch.Generator().manual_seed(99)
    meta = load_training_state(tmp_path, fresh, fresh_opt, fresh_gen)
    assert (meta["epoch"], meta["batch"], meta["history"]) == (3, 7, [{"x": 1}])
    assert torch.equal(fresh_gen.get_state(), generator_state)
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)
    sa, sb = optimizer.state_dict(), fresh_opt.state_dict()
    for idx in sa["state"]:
        assert torch.equal(sa["state"][idx]["exp_avg_sq"], sb["state"][idx]["exp_avg_sq"])
        assert float(sa["state"][idx]["step"]) == float(sb["state"][idx]["step"])
