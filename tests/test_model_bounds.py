"""Model files bounded by construction: every hostile file of the probe (issue 17, section 2) and the error
contract's load-side holes, each answered with a CheckpointError naming the file within 5 s and 1.5 GB.

Each case is loaded in a fresh interpreter, through `tests.contract.within_contract` (the exception's type,
the time, the traced memory), and the interpreter's peak RSS (VmHWM) is checked as well, so that what numpy
or torch allocate outside tracemalloc counts too. A hang (a named pipe) fails by the child's timeout.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mvae.checkpoint import pack, save_model
from mvae.config import MAX_VOCODER_COST, AudioConfig, ModelConfig, to_dict
from mvae.errors import CheckpointError
from mvae.model.export import lean_twin, program
from mvae.model.model import MVAE
from mvae.runtime import LeanMVAE
from mvae.runtime.model import MAX_ACTIVATION_BYTES, MAX_MULTIPLY_ADDS
from mvae.store import MAX_JSON_DEPTH, MODEL_FILE, MODEL_JSON, atomic_write, read_json, unpack
from tests.contract import MAX_SECONDS
from tests.test_checkpoint import RSS_LIMIT_MB, edit, pack_v1, read_raw, write_raw

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "checkpoints" / "default"
CHILD_TIMEOUT_S = 60  # far past the contract's 5 s: a child still running then is hung (a named pipe)
DEEP = 100_000  # the probe's nesting
CFG = ModelConfig(hidden=16, latent_dim=4)
LATENT = CFG.latent_dim  # the farsi decoder's input (no style latent)
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16}

# One call in a fresh interpreter: `mvae.load` (the facade) or the upgrade command's main, through the
# contract's check; prints the outcome and the peak RSS.
CHILD = """
import json, sys, time
from tests.contract import within_contract
{imports}
started = time.perf_counter()
outcome = within_contract({call}, *sys.argv[1:])
seconds = time.perf_counter() - started
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
print("RESULT", json.dumps({{"type": type(outcome).__name__, "message": str(outcome), "seconds": seconds,
                            "rss_mb": peak}}))
"""
LOAD = dict(imports="import mvae", call="mvae.load")
UPGRADE = dict(imports="from mvae.upgrade import main", call="lambda *a: main(list(a))")


def in_child(kind: dict, *args: str) -> tuple[dict, str, str]:
    """(the result, stdout, stderr) of one call in a fresh interpreter; fails on a hang or a broken contract."""
    done = subprocess.run([sys.executable, "-c", CHILD.format(**kind), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=CHILD_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.rsplit("RESULT", 1)[1])
    assert result["seconds"] <= MAX_SECONDS and result["rss_mb"] <= RSS_LIMIT_MB, result
    return result, done.stdout, done.stderr


def refused_by_load(path: Path, *phrases: str, load: Path | None = None) -> str:
    """`mvae.load(load or path)` raises a CheckpointError naming `path` and saying each of `phrases`."""
    result, _, _ = in_child(LOAD, str(load or path))
    assert result["type"] == "CheckpointError", result
    for phrase in (str(path), *phrases):
        assert phrase in result["message"], result["message"]
    return result["message"]


def refused_by_upgrade(path: Path, *phrases: str) -> None:
    """`python -m mvae.upgrade` exits 2 with a one-line error naming the file, and calls nothing verified."""
    result, out, err = in_child(UPGRADE, str(path))
    assert result == dict(result, type="int", message="2"), result
    assert "verified" not in out.replace(result["message"], ""), out
    assert f"error: The checkpoint {path}" in err or f"error: {path}" in err, err
    for phrase in phrases:
        assert phrase in err, err


# -- crafted files: anyone can reseal one -------------------------------------------------------------------


def ref(name: str, tensor: torch.Tensor) -> dict:
    return {"name": name, "shape": list(tensor.shape)}


def crafted(folder: Path, decoder: list[dict], tensors: dict[str, torch.Tensor], dtype: str = "float32",
            runtime_fn=None) -> Path:
    """A small model whose farsi decoder is replaced by `decoder` (reading `tensors`), sealed with a valid digest."""
    torch.manual_seed(0)
    model = MVAE(CFG)
    runtime = program(model)
    runtime["decoders"]["farsi"] = decoder
    if runtime_fn:
        runtime_fn(runtime)
    weights = {k: v for k, v in model.state_dict().items() if not k.startswith("decoders.farsi.")} | tensors
    weights = {k: v.to(TORCH_DTYPES[dtype]) if v.is_floating_point() else v for k, v in weights.items()}
    path = folder / MODEL_FILE
    atomic_write(path, pack(weights, {"model_config": to_dict(CFG), "dtype": dtype, "runtime": runtime, "info": {}}))
    return path


def into_image(features: str) -> tuple[list[dict], dict]:
    """The decoder's first steps: the latent to one 28 x 28 channel."""
    weight, bias = torch.randn(28 * 28, LATENT), torch.zeros(28 * 28)
    steps = [{"op": "linear", "tensors": {"weight": ref(f"{features}.w", weight), "bias": ref(f"{features}.b", bias)}},
             {"op": "unflatten", "shape": [1, 28, 28]}]
    return steps, {f"{features}.w": weight, f"{features}.b": bias}


def conv(name: str, weight: torch.Tensor, padding: int = 0, op: str = "conv2d") -> dict:
    return {"op": op, "tensors": {"weight": ref(name, weight)}, "stride": 1, "padding": padding}


def wide_channels(folder: Path, channels: int, dtype: str = "float32") -> Path:
    """One channel to `channels` by a 1 x 1 conv, and back: a few bytes per channel, `channels` x 784 numbers
    per item in between."""
    steps, tensors = into_image("into")
    up, down = torch.randn(channels, 1, 1, 1), torch.randn(1, channels, 1, 1)
    steps += [conv("up", up), {"op": "silu"}, conv("down", down), {"op": "drop_channel"}]
    return crafted(folder, steps, tensors | {"up": up, "down": down}, dtype)


def four_million_parameters(folder: Path) -> Path:
    """The probe's decoder: a 1 x 1 conv to 4,096 channels, padded, then a 33 x 33 conv back to 28 x 28."""
    steps, tensors = into_image("into")
    up, down = torch.randn(4096, 1, 1, 1), torch.randn(1, 4096, 33, 33) * 1e-3
    steps += [conv("up", up, padding=16), conv("down", down), {"op": "drop_channel"}]
    return crafted(folder, steps, tensors | {"up": up, "down": down}, "float16")


def reused_kernel_chain(folder: Path) -> Path:
    """One 4,096 x 4,096 kernel along 49 pairs of transposed conv (one pixel to 4,096 x 4,096) and conv (back)."""
    kernel = torch.randn(1, 1, 4096, 4096) * 1e-4
    weight, bias = torch.randn(1, LATENT), torch.zeros(1)
    steps = [{"op": "linear", "tensors": {"weight": ref("into.w", weight), "bias": ref("into.b", bias)}},
             {"op": "unflatten", "shape": [1, 1, 1]}]
    for _ in range(49):
        steps += [conv("kernel", kernel, op="conv_transpose2d"), conv("kernel", kernel)]
    return crafted(folder, steps, {"into.w": weight, "into.b": bias, "kernel": kernel}, "float16")


def unhashable_op(folder: Path) -> Path:
    model = MVAE(CFG)
    steps = program(model)["decoders"]["farsi"]
    silu = next(i for i, s in enumerate(steps) if s["op"] == "silu")
    steps[silu] = {"op": ["silu"]}
    tensors = {k: v for k, v in model.state_dict().items() if k.startswith("decoders.farsi.")}
    return crafted(folder, steps, tensors)


def one_row_embedding(folder: Path) -> Path:
    model = MVAE(CFG)
    steps = program(model)["decoders"]["farsi"]
    tensors = {k: v for k, v in model.state_dict().items() if k.startswith("decoders.farsi.")}
    row = torch.randn(1, CFG.hidden)

    def shrink(runtime):
        embedding = runtime["encoders"]["label"][0]
        assert embedding["op"] == "embedding"
        embedding["tensors"]["weight"]["shape"] = [1, CFG.hidden]

    path = crafted(folder, steps, tensors, runtime_fn=shrink)
    # The embedding's tensor itself, one row, resealed.
    stored, meta = unpack(path)
    stored = {k: torch.from_numpy(v.copy()) for k, v in stored.items()}
    stored["encoders.label.body.0.weight"] = row
    atomic_write(path, pack(stored, meta))
    return path


def saved(folder: Path) -> Path:
    torch.manual_seed(0)
    return save_model(folder, MVAE(CFG), {"acc": 0.5})


def audio(**settings):
    def fn(meta):
        meta["model_config"]["audio"].update(settings)
    return fn


def resealed_audio(folder: Path, **settings) -> Path:
    path = saved(folder)
    (folder / MODEL_JSON).unlink()
    edit(path, meta_fn=audio(**settings), sign=True)
    return path


def deep(n: int) -> str:
    return "[" * n + "]" * n


def with_header_tail(folder: Path, tail) -> Path:
    """A saved model whose header JSON gets `tail(header)` (more members) before its closing brace, written as
    text: a dict could not say what the text says (a member twice, nesting past any parser's limit)."""
    path = saved(folder)
    header, data = read_raw(path)
    text = json.dumps(header)[:-1] + tail(header) + "}"
    text += " " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text.encode() + data)
    return path


def deep_header(folder: Path) -> Path:
    return with_header_tail(folder, lambda header: f', "deep": {deep(DEEP)}')


def deep_metadata(folder: Path) -> Path:
    path = saved(folder)
    header, data = read_raw(path)
    raw = header["__metadata__"]["mvae"]
    header["__metadata__"]["mvae"] = raw[:-1] + f', "deep": {deep(DEEP)}}}'
    write_raw(path, header, data)
    return path


def repeated_header_key(folder: Path) -> Path:
    def again(header):  # the same key again: readers differ on which wins
        name = next(k for k in header if k != "__metadata__")
        return f", {json.dumps(name)}: {json.dumps(header[name])}"

    return with_header_tail(folder, again)


def repeated_metadata_key(folder: Path) -> Path:
    path = saved(folder)
    header, data = read_raw(path)
    raw = header["__metadata__"]["mvae"]
    header["__metadata__"]["mvae"] = raw[:-1] + ', "dtype": "float16"}'
    write_raw(path, header, data)
    return path


CASES = {
    "4M parameters: 1x1 conv to 4,096 channels, padded, then 33x33": (four_million_parameters, "MB at once"),
    "100k channels in 0.8 MB of weights": (lambda f: wide_channels(f, 100_000), "MB at once"),
    "10M channels": (lambda f: wide_channels(f, 10_000_000, "float16"), "MB at once"),
    "one 4,096 x 4,096 kernel along 49 conv pairs": (reused_kernel_chain, "cannot run"),
    "audio at its old limits (n_fft 8192, 1024 frames, 512 iterations)":
        (lambda f: resealed_audio(f, n_fft=8192, hop_length=128, n_frames=1024, griffin_lim_iters=512),
         "Griffin-Lim cost"),
    "hop = n_fft": (lambda f: resealed_audio(f, hop_length=512), "must not exceed half of audio.n_fft"),
    "a 100k-deep JSON header": (deep_header, f"more than the {MAX_JSON_DEPTH} read here"),
    "100k-deep JSON metadata": (deep_metadata, f"more than the {MAX_JSON_DEPTH} read here"),
    "a key twice in the header": (repeated_header_key, "twice"),
    "a key twice in the metadata": (repeated_metadata_key, "gives the key 'dtype' twice"),
    'a step {"op": ["silu"]}': (unhashable_op, "has a step it cannot run"),
    "a one-row embedding": (one_row_embedding, "embedding has 1 rows, not one per class (10)"),
}
BOMBS = [k for k in CASES if "channels" in k or "parameters" in k or "kernel" in k]


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_model_files_are_refused_by_load(tmp_path, case):
    make, phrase = CASES[case]
    folder = tmp_path / "ckpt"
    folder.mkdir()
    refused_by_load(make(folder), phrase)


@pytest.mark.parametrize("case", BOMBS)
def test_the_upgrade_command_refuses_bomb_files(tmp_path, case):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    path = CASES[case][0](folder)
    before = path.read_bytes()
    refused_by_upgrade(path)
    assert path.read_bytes() == before


def test_a_format_1_file_with_edited_metadata_is_not_resealed(tmp_path):
    """Format 1's checksum covered the tensors only: an edit of its metadata leaves no trace, so the upgrade
    refuses to seal it in (and, without a program, mvae.load refuses it too)."""
    torch.manual_seed(0)
    model = MVAE(CFG)
    path = tmp_path / "v1" / MODEL_FILE
    atomic_write(path, pack_v1(model.state_dict(), {"model_config": to_dict(CFG), "dtype": "float32", "info": {}}))
    edit(path, meta_fn=audio(griffin_lim_iters=200, sample_rate=16000, f_max=8000.0))
    before = path.read_bytes()
    refused_by_upgrade(path, "cannot be verified", "--trust-metadata")
    assert path.read_bytes() == before
    refused_by_load(path.parent, "mvae.upgrade")


@pytest.mark.parametrize("how", ["load", "upgrade"])
def test_a_named_pipe_is_not_opened(tmp_path, how):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    os.mkfifo(folder / MODEL_FILE)
    if how == "load":
        refused_by_load(folder / MODEL_FILE, "named pipe")
    else:
        refused_by_upgrade(folder / MODEL_FILE, "named pipe")


def test_a_named_pipe_as_model_json_is_not_opened(tmp_path):
    path = saved(tmp_path / "ckpt")
    (path.parent / MODEL_JSON).unlink()
    os.mkfifo(path.parent / MODEL_JSON)
    refused_by_load(path.parent / MODEL_JSON, "named pipe", load=path.parent)


# -- the budgets against what the project makes -------------------------------------------------------------


def test_the_shipped_model_is_far_within_the_budgets():
    """The budgets are a few times the largest model the recipe and the study make; the shipped one must
    keep that margin, or the budgets were sized on the wrong figures."""
    from mvae.runtime.model import size_program

    _, meta = unpack(SHIPPED / MODEL_FILE)
    from mvae.config import model_config_from_dict

    figures = size_program(SHIPPED, model_config_from_dict(meta["model_config"]), meta["runtime"])
    assert figures["multiply_adds"] * 4 <= MAX_MULTIPLY_ADDS
    assert figures["activation_bytes"] * 4 <= MAX_ACTIVATION_BYTES
    assert LeanMVAE.load(SHIPPED)[0].cfg.hidden == meta["model_config"]["hidden"]


def test_the_shipped_audio_settings_are_far_within_the_vocoder_budget():
    cfg = ModelConfig().audio
    assert AudioConfig().vocoder_cost == cfg.vocoder_cost and cfg.vocoder_cost * 5 <= MAX_VOCODER_COST
    shipped = json.loads((SHIPPED / MODEL_JSON).read_text())["model_config"]["audio"]
    assert AudioConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in shipped.items()}).vocoder_cost * 5 \
        <= MAX_VOCODER_COST


def test_the_symbolic_shapes_are_numpys():
    """What `size_program` says each network gives is what running it gives, on every network of the shipped
    model and of every architecture."""
    from mvae.kinds import kind
    from mvae.runtime import ops
    from mvae.runtime.model import size_program

    for cfg in (ModelConfig(hidden=16, latent_dim=4, style_dim=2),
                ModelConfig(architecture="conv", hidden=16, latent_dim=4, conv_channels=4),
                ModelConfig(architecture="conv-mlp", hidden=16, latent_dim=4, conv_channels=4, image_conv_extra=1,
                            image_conv_batchnorm=True, image_decoder="conv", style_dim=3),
                ModelConfig(architecture="conv-mlp", hidden=16, latent_dim=4, conv_channels=4, style_dim=3,
                            speech_decoder="conv1d", image_decoder="conv1d")):
        lean = lean_twin(MVAE(cfg).eval())
        runtime = program(MVAE(cfg))
        size_program(Path("memory"), cfg, runtime)
        lean.check_shapes("memory")
        for part, name in [(p, n) for p in ("encoders", "decoders") for n in lean.names]:
            steps = getattr(lean, part)[name]
            shape = kind(name).shape(cfg)
            size = ops.Size(shape, integer=not shape) if part == "encoders" else \
                ops.Size((cfg.latent_dim + (cfg.style_dim if name in cfg.style_names else 0),))
            x = np.zeros((3, *size.item), np.int64 if size.integer else np.float32)
            for step in steps:
                shapes = {role: t.shape for role, t in step["tensors"].items()}
                size, _ = ops.infer(step, shapes, size, 3, cfg.n_classes)
                x = ops.run([step], x)
                assert x.shape[1:] == size.item and (x.dtype.kind == "i") == size.integer, (name, step["op"])


def test_json_is_read_with_a_depth_limit_and_without_repeated_keys():
    assert read_json(b'{"a": "[[[[", "b": [[1]]}') == {"a": "[[[[", "b": [[1]]}
    read_json(deep(MAX_JSON_DEPTH))
    for text in (deep(MAX_JSON_DEPTH + 1), deep(DEEP), '{"a": 1, "a": 1}', '[{"x": {"y": 1, "y": 2}}]'):
        with pytest.raises(ValueError):
            read_json(text)


def test_a_model_over_the_budgets_is_never_written(tmp_path):
    """save_model refuses what mvae.load would refuse, and check_bounds says so from the config alone."""
    from mvae.checkpoint import check_bounds
    from mvae.config import shipped_configs

    assert check_bounds(shipped_configs()[0])["multiply_adds"] * 4 <= MAX_MULTIPLY_ADDS
    heavy = ModelConfig(architecture="conv", conv_channels=128, hidden=32, latent_dim=4)
    with pytest.raises(CheckpointError, match="multiply-adds|MB at once"):
        check_bounds(heavy)
    with pytest.raises(CheckpointError, match=str(tmp_path)):
        save_model(tmp_path, MVAE(heavy), {})
    assert not any(tmp_path.iterdir())


def _edit_step(part: str, name: str, op: str, **change):
    def fn(runtime):
        step = next(s for s in runtime[part][name] if s["op"] == op)
        step.update(change)
    return fn


def _prepend(part: str, name: str, *steps: dict):
    def fn(runtime):
        runtime[part][name][:0] = list(steps)
    return fn


def _label_norm(runtime):
    runtime["norms"]["label"] = runtime["norms"]["speech"]


PROGRAM_EDITS = {
    "a conv of stride 0": (_edit_step("encoders", "farsi", "conv2d", stride=0), "stride is 0"),
    "a transposed conv padded to nothing": (_edit_step("decoders", "farsi", "conv_transpose2d", padding=16),
                                            "leaves nothing"),
    "items of 14 dimensions": (_prepend("decoders", "label", *[{"op": "add_channel"}] * 13), "dimensions"),
    "an embedding of numbers": (_prepend("encoders", "label", {"op": "silu"}), "an embedding must come first"),
    "a normaliser on class indices": (_label_norm, "label normaliser"),
}
CONV = ModelConfig(architecture="conv", hidden=16, latent_dim=4, conv_channels=4)


@pytest.mark.parametrize("case", list(PROGRAM_EDITS))
def test_programs_numpy_cannot_run_are_refused_in_words(tmp_path, case):
    from tests.contract import within_contract

    change, phrase = PROGRAM_EDITS[case]
    torch.manual_seed(0)
    model = MVAE(CONV)
    runtime = program(model)
    change(runtime)
    path = tmp_path / MODEL_FILE
    atomic_write(path, pack(model.state_dict(), {"model_config": to_dict(CONV), "dtype": "float32", "runtime": runtime,
                                                 "info": {}}))
    import mvae

    error = within_contract(mvae.load, tmp_path)
    assert isinstance(error, CheckpointError) and str(path) in str(error) and phrase in str(error), error
