"""Checkpoints: round trips, and every way a damaged or edited file is refused with a CheckpointError that
names the file, within bounded memory."""

import dataclasses
import hashlib
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mvae.checkpoint import (
    load_model,
    load_training_state,
    pack,
    read_metadata,
    save_model,
    save_training_state,
    upgrade,
)
from mvae.config import AudioConfig, ModelConfig, TrainConfig, model_config_from_dict, to_dict, train_config_from_dict
from mvae.errors import CheckpointError
from mvae.model.model import MVAE
from mvae.store import MAX_DATA_BYTES, MODEL_FILE, MODEL_JSON, STATE_FILE, VERSION, atomic_write, digest, unpack

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "checkpoints" / "default"
RSS_LIMIT_MB = 1536

CONFIGS = {
    "mlp": ModelConfig(hidden=16, latent_dim=4),
    "conv-batchnorm": ModelConfig(architecture="conv-mlp", hidden=16, latent_dim=4, conv_channels=4,
                                  image_conv_extra=1, image_conv_batchnorm=True),
}


def make_model(kind: str = "mlp") -> MVAE:
    torch.manual_seed(0)
    m = MVAE(CONFIGS[kind])
    m.speech_norm.set_stats(torch.arange(64.0), torch.full((64,), 2.0))
    if kind == "conv-batchnorm":  # running statistics and an integer counter must survive too
        m.train()
        m.encoders["farsi"](torch.rand(8, 28, 28) * 3)
        m.eval()
    return m


@pytest.fixture(params=list(CONFIGS))
def model(request):
    return make_model(request.param)


# -- editing files as an attacker would ---------------------------------------------------------------------


def read_raw(path: Path) -> tuple[dict, bytes]:
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def write_raw(path: Path, header: dict, data: bytes) -> None:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def edit(path: Path, header_fn=None, meta_fn=None, data_fn=None, sign: bool = False) -> None:
    """Change the header, metadata or data of a saved file; `sign` recomputes the digest, as someone who
    read this module could, so that only the loader's other checks stand in the way."""
    header, data = read_raw(path)
    meta = json.loads(header["__metadata__"]["mvae"])
    if header_fn:
        header_fn(header)
    if meta_fn:
        meta_fn(meta)
    if data_fn:
        data = data_fn(bytearray(data))
    if sign:
        meta["sha256"] = digest({k: v for k, v in header.items() if k != "__metadata__"}, meta, bytes(data))
    header["__metadata__"]["mvae"] = json.dumps(meta)
    write_raw(path, header, bytes(data))


def saved(tmp_path, kind="mlp", dtype="float16", **info) -> Path:
    return save_model(tmp_path / "ckpt", make_model(kind), info, dtype=dtype)


def refused(path: Path, *phrases: str, load=load_model, arg=None) -> str:
    with pytest.raises(CheckpointError) as err:
        load(arg if arg is not None else path.parent)
    message = str(err.value)
    assert str(path) in message, message
    for phrase in phrases:
        assert phrase in message, message
    return message


def first_float(header: dict) -> str:
    return next(k for k, v in sorted(header.items()) if k != "__metadata__" and v["dtype"] in ("F16", "F32"))


# -- round trips --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, tol", [("float32", 0.0), ("float16", 1e-3), ("bfloat16", 1e-2)])
def test_round_trip(tmp_path, model, dtype, tol):
    save_model(tmp_path, model, {"metrics": {"acc": 0.5}}, dtype=dtype)
    loaded, meta = load_model(tmp_path)
    assert meta["info"]["metrics"]["acc"] == 0.5 and meta["dtype"] == dtype and meta["version"] == VERSION == 2
    assert json.loads((tmp_path / MODEL_JSON).read_text())["model_config"]["hidden"] == 16
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert b.dtype == a.dtype and torch.allclose(a, b, atol=tol, rtol=tol), k
    assert torch.equal(loaded.speech_norm.mean.flatten(), torch.arange(64.0))
    assert loaded.cfg == model.cfg
    x = torch.rand(3, 28, 28)
    assert torch.allclose(loaded.eval().encoders["farsi"](x)[0], model.eval().encoders["farsi"](x)[0], atol=20 * tol)


def test_files_stay_plain_safetensors(tmp_path, model):
    """Any safetensors reader can open them; the digest lives in the ordinary metadata field."""
    path = save_model(tmp_path, model, {})
    tensors = st_load(path.read_bytes())
    assert set(tensors) == set(model.state_dict())


def test_no_temporary_files_are_left(tmp_path, model):
    save_model(tmp_path, model, {})
    save_model(tmp_path, model, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == [MODEL_JSON, MODEL_FILE]


def test_the_shipped_checkpoint_and_judges_load():
    from mvae.evaluation.judges import load_judges

    model, meta = load_model(SHIPPED)
    assert meta["version"] in (1, 2) and model.cfg.hidden == meta["model_config"]["hidden"]
    judges, judge_meta = load_judges()
    assert set(judges) == {"farsi", "kannada", "speech", "speech_synthetic"} and judge_meta["kind"] == "judges"


# -- damaged bytes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "flip_data", "flip_header", "garbage", "empty", "padded",
                                    "huge header length", "header length past the end", "header not json"])
def test_damaged_checkpoint_gives_a_clear_error(tmp_path, model, damage):
    path = save_model(tmp_path, model, {})
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_data":
        data[-100] ^= 0xFF
    elif damage == "flip_header":
        data[20] ^= 0xFF
    elif damage == "garbage":
        data = bytearray(b"not a checkpoint at all")
    elif damage == "empty":
        data = bytearray()
    elif damage == "padded":
        data += bytes(64)
    elif damage == "huge header length":
        data[:8] = struct.pack("<Q", 2**62)
    elif damage == "header length past the end":
        data[:8] = struct.pack("<Q", len(data))
    else:
        data[8:16] = b"\x00" * 8
    path.write_bytes(bytes(data))
    message = refused(path, "damaged", "Re-download or retrain")
    assert "Traceback" not in message


def test_missing_checkpoint_names_the_fix(tmp_path):
    with pytest.raises(CheckpointError, match="train.py"):
        load_model(tmp_path / "nowhere")


def test_a_folder_where_the_file_should_be_is_named(tmp_path):
    (tmp_path / "ckpt" / MODEL_FILE).mkdir(parents=True)
    refused(tmp_path / "ckpt" / MODEL_FILE, "is a folder")


def test_an_unreadable_file_is_a_checkpoint_error(tmp_path, monkeypatch):
    path = saved(tmp_path)
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything: make the open fail as it would for anyone else
        real_open = os.open

        def deny(file, *args, **kwargs):
            if Path(file) == path:
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr("os.open", deny)
    try:
        refused(path, "could not be read", "Permission denied")
    finally:
        path.chmod(0o644)


# -- edits the old digest did not see -----------------------------------------------------------------------


def relabel(to: str):
    def fn(header):
        header[first_float(header)]["dtype"] = to
    return fn


def set_audio(key, value):
    def fn(meta):
        meta["model_config"]["audio"][key] = value
    return fn


def transpose_first(header):
    name = next(k for k, v in sorted(header.items()) if k != "__metadata__" and len(v["shape"]) == 2)
    header[name]["shape"] = header[name]["shape"][::-1]


def swap_offsets(header):
    a, b = [k for k, v in header.items() if k != "__metadata__" and v["shape"] == [2 * 4] and v["dtype"] == "F16"][:2]
    header[a]["data_offsets"], header[b]["data_offsets"] = header[b]["data_offsets"], header[a]["data_offsets"]


UNSIGNED_EDITS = {
    "F16 relabelled BF16": dict(header_fn=relabel("BF16")),
    "F16 relabelled I16": dict(header_fn=relabel("I16")),
    "shape transposed": dict(header_fn=transpose_first),
    "two tensors' offsets swapped": dict(header_fn=swap_offsets),
    "sample rate 8000 -> 9000": dict(meta_fn=set_audio("sample_rate", 9000)),
    "Griffin-Lim iterations 32 -> 4": dict(meta_fn=set_audio("griffin_lim_iters", 4)),
    "metrics edited": dict(meta_fn=lambda m: m["info"].update(acc=0.99)),
    "metadata key added": dict(header_fn=lambda h: h["__metadata__"].update(note="x")),
    "weight byte flipped": dict(data_fn=lambda d: d.__setitem__(5, d[5] ^ 1) or d),
}


@pytest.mark.parametrize("how", list(UNSIGNED_EDITS))
def test_the_digest_covers_header_metadata_and_weights(tmp_path, how):
    path = saved(tmp_path, acc=0.5)
    (path.parent / MODEL_JSON).unlink()  # so that only the digest can notice a metadata edit
    load_model(path.parent)
    edit(path, **UNSIGNED_EDITS[how])
    refused(path, "damaged", "checksum", load=unpack, arg=path)  # the digest alone, without the model's checks
    refused(path, "damaged")


def replace_tensor(name_fn, value_fn):
    """A file whose digest is right but one of whose tensors is replaced."""
    def make(tmp_path):
        model = make_model()
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
        name = name_fn(tensors)
        tensors[name] = value_fn(tensors[name])
        meta = {"model_config": to_dict(model.cfg), "dtype": "float16", "info": {}}
        path = tmp_path / "ckpt" / MODEL_FILE
        atomic_write(path, pack(tensors, meta))
        return path, name
    return make


FIRST_WEIGHT = "encoders.farsi.body.1.weight"
SIGNED_TENSORS = {
    "an int64 tensor for a float one": (replace_tensor(lambda t: FIRST_WEIGHT, lambda v: v.long()),
                                        "is stored as I64, where F16 is expected"),
    "a float32 tensor in a float16 file": (replace_tensor(lambda t: FIRST_WEIGHT, lambda v: v.float()),
                                           "is stored as F32, where F16 is expected"),
    "a tensor of another shape": (replace_tensor(lambda t: FIRST_WEIGHT, lambda v: v[:, :10].contiguous()),
                                  "has shape [16, 10], where the model needs [16, 784]"),
    "NaN weights": (replace_tensor(lambda t: FIRST_WEIGHT, lambda v: v.index_fill(1, torch.tensor([3]), math.nan)),
                    "16 non-finite value(s)"),
    "an infinite bias": (replace_tensor(lambda t: "encoders.farsi.head.bias",
                                        lambda v: v.index_fill(0, torch.tensor([0]), math.inf)), "non-finite"),
}


@pytest.mark.parametrize("how", list(SIGNED_TENSORS))
def test_tensors_must_fit_the_model_and_be_finite(tmp_path, how):
    make, phrase = SIGNED_TENSORS[how]
    path, name = make(tmp_path)
    refused(path, repr(name), phrase)


@pytest.mark.parametrize("to", ["BF16", "I16"])
def test_a_relabelled_dtype_is_refused_even_with_a_recomputed_digest(tmp_path, to):
    path = saved(tmp_path)
    name = first_float(read_raw(path)[0])
    edit(path, header_fn=relabel(to), sign=True)
    refused(path, repr(name), f"is stored as {to}, where F16 is expected")


@pytest.mark.parametrize("extra", [True, False])
def test_an_extra_or_missing_tensor_is_refused(tmp_path, extra):
    model = make_model()
    tensors = dict(model.state_dict())
    if extra:
        tensors["backdoor"] = torch.zeros(3)
    else:
        del tensors["decoders.label.bias"]
    path = tmp_path / "ckpt" / MODEL_FILE
    atomic_write(path, pack(tensors, {"model_config": to_dict(model.cfg), "dtype": "float32", "info": {}}))
    refused(path, "'backdoor'" if extra else "lacks the tensors ['decoders.label.bias']")


# -- metadata of the wrong type or size ---------------------------------------------------------------------


def config_edit(**change):
    def fn(meta):
        meta["model_config"].update(change)
    return fn


META_EDITS = {
    'version "2"': (lambda m: m.update(version="2"), "format version is '2', not a whole number"),
    "version true": (lambda m: m.update(version=True), "not a whole number"),
    "version 0": (lambda m: m.update(version=0), "older than this loader reads"),
    "version 99": (lambda m: m.update(version=99), "newer version (format 99)"),
    "no checksum": (lambda m: m.pop("sha256"), "no checksum"),
    "another format": (lambda m: m.update(format="pickle"), "does not say 'mvae-checkpoint'"),
    "model_config a list": (lambda m: m.update(model_config=[1, 2]), "model_config is refused"),
    "audio a list": (config_edit(audio=[8000]), "audio must be an object"),
    "hidden a text": (config_edit(hidden="16"), "hidden must be a whole number, not '16'"),
    "hidden 200000": (config_edit(hidden=200_000), "hidden is 200000; it must lie between 1 and 4096"),
    "latent_dim 0": (config_edit(latent_dim=0), "latent_dim is 0"),
    "unknown field": (config_edit(hiden=16), "unknown ModelConfig fields: ['hiden']"),
    "unknown architecture": (config_edit(architecture="rnn"), "architecture is 'rnn'"),
    "sample rate 10**9": (set_audio("sample_rate", 10**9), "audio.sample_rate is 1000000000"),
    "sample rate NaN": (set_audio("sample_rate", math.nan), "audio.sample_rate must be a whole number"),
    "Griffin-Lim 10**6 iterations": (set_audio("griffin_lim_iters", 10**6), "audio.griffin_lim_iters is 1000000"),
    "n_mels 10**5": (set_audio("n_mels", 100_000), "audio.n_mels is 100000"),
    "dtype float64": (lambda m: m.update(dtype="float64"), "dtype is 'float64'"),
    "info a list": (lambda m: m.update(info=[1]), "info metadata is not an object"),
}


@pytest.mark.parametrize("how", list(META_EDITS))
def test_metadata_of_the_wrong_type_or_size_is_refused(tmp_path, how):
    fn, phrase = META_EDITS[how]
    path = saved(tmp_path)
    edit(path, meta_fn=fn, sign=how != "no checksum")
    refused(path, phrase)


@pytest.mark.parametrize("raw", ["[1, 2]", "not json", '"text"', "null"])
def test_metadata_that_is_not_an_object_is_refused(tmp_path, raw):
    path = saved(tmp_path)
    header, data = read_raw(path)
    header["__metadata__"]["mvae"] = raw
    write_raw(path, header, data)
    refused(path, "damaged", "metadata")


@pytest.mark.parametrize("header_fn", [lambda h: h.pop("__metadata__"), lambda h: h.update(__metadata__=[1]),
                                       lambda h: h["__metadata__"].update(mvae=7)])
def test_a_header_without_mvae_metadata_is_refused(tmp_path, header_fn):
    path = saved(tmp_path)
    header, data = read_raw(path)
    header_fn(header)
    write_raw(path, header, data)
    refused(path, "damaged", "no MVAE metadata")


@pytest.mark.parametrize("change", [
    lambda e: e.update(dtype="F8_E4M3"), lambda e: e.update(shape=[-1]), lambda e: e.update(shape="16"),
    lambda e: e.update(data_offsets=[0]), lambda e: e.update(data_offsets=[10, 2]), lambda e: e.update(extra=1),
])
def test_malformed_header_entries_are_refused_before_reading(tmp_path, change):
    path = saved(tmp_path)
    header, data = read_raw(path)
    change(header[first_float(header)])
    write_raw(path, header, data)
    refused(path, "damaged")


# -- model.json ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("change, key", [
    (lambda m: m["model_config"]["audio"].update(sample_rate=9000), "model_config"),
    (lambda m: m["model_config"].update(hidden=32), "model_config"),
    (lambda m: m.update(dtype="float32"), "dtype"),
    (lambda m: m.update(version=3), "version"),
])
def test_an_edited_model_json_is_refused_and_a_missing_one_is_fine(tmp_path, change, key):
    path = saved(tmp_path, acc=0.5)
    copy = path.parent / MODEL_JSON
    meta = json.loads(copy.read_text())
    change(meta)
    copy.write_text(json.dumps(meta))
    message = refused(copy, "does not match the metadata inside", str(path), f"['{key}']", "Restore it")
    copy.write_text("{ not json")
    refused(copy, "does not match")
    copy.unlink()
    assert load_model(path.parent)[1]["info"]["acc"] == 0.5
    assert message


def test_a_model_json_one_save_behind_in_its_training_record_is_accepted(tmp_path):
    """A run killed between writing model.safetensors and model.json leaves the old record in the copy."""
    path = saved(tmp_path, acc=0.5)
    copy = path.parent / MODEL_JSON
    behind = copy.read_text()
    save_model(path.parent, make_model(), {"acc": 0.6}, dtype="float16")
    copy.write_text(behind)
    assert load_model(path.parent)[1]["info"]["acc"] == 0.6


def test_read_metadata_verifies_too(tmp_path):
    path = saved(tmp_path, acc=0.5)
    assert read_metadata(path.parent)["info"]["acc"] == 0.5
    edit(path, meta_fn=lambda m: m["info"].update(acc=0.9))
    refused(path, "checksum", load=read_metadata)


# -- format 1 ----------------------------------------------------------------------------------------------


def pack_v1(tensors: dict, meta: dict) -> bytes:
    """How format 1 was written: a digest over tensor names and bytes only."""
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    h = hashlib.sha256()
    for key in sorted(tensors):
        h.update(key.encode())
        h.update(tensors[key].reshape(-1).view(torch.uint8).numpy().tobytes())
    return st_save(tensors, metadata={"mvae": json.dumps(dict(meta, format="mvae-checkpoint", version=1,
                                                                    sha256=h.hexdigest()))})


@pytest.fixture
def v1_file(tmp_path) -> Path:
    model = make_model("conv-batchnorm")
    tensors = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    path = tmp_path / "v1" / MODEL_FILE
    atomic_write(path, pack_v1(tensors, {"model_config": to_dict(model.cfg), "dtype": "float16", "info": {"a": 1}}))
    return path


def test_format_1_files_load_by_their_own_rule_and_upgrade_bit_for_bit(v1_file):
    before, meta = unpack(v1_file)
    assert meta["version"] == 1
    load_model(v1_file)
    from mvae.upgrade import main

    # Format 1's checksum did not cover the metadata: resealed only when the user vouches for it.
    assert main([str(v1_file.parent)]) == 2
    assert unpack(v1_file)[1]["version"] == 1
    assert main([str(v1_file.parent), "--trust-metadata"]) == 0
    after, meta2 = unpack(v1_file)
    # The upgrade adds the lean runtime's program and changes nothing else.
    assert meta2["version"] == VERSION and "runtime" in meta2
    assert {k: v for k, v in meta2.items() if k not in ("version", "sha256", "runtime")} == \
        {k: v for k, v in meta.items() if k not in ("version", "sha256")}
    assert set(before) == set(after)
    for k in before:
        assert before[k].dtype == after[k].dtype and before[k].tobytes() == after[k].tobytes(), k
    assert upgrade(v1_file) == v1_file  # already current: left as it is


def test_format_1_files_get_every_check_but_the_new_digest(v1_file):
    edit(v1_file, data_fn=lambda d: d.__setitem__(3, d[3] ^ 1) or d)
    refused(v1_file, "checksum")
    model = make_model("conv-batchnorm")
    bad = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    bad[FIRST_WEIGHT] = bad[FIRST_WEIGHT].long()
    atomic_write(v1_file, pack_v1(bad, {"model_config": to_dict(model.cfg), "dtype": "float16", "info": {}}))
    refused(v1_file, "is stored as I64")


# -- memory: hostile sizes are refused before anything is allocated or read -----------------------------------


def run_bounded(code: str) -> tuple[str, float]:
    """Runs `code` in a fresh interpreter; returns its output and its peak RSS in MB (torch's allocations count).

    The peak is VmHWM, which starts afresh at exec; ru_maxrss would carry over the high-water mark of this
    (forking) test process."""
    script = textwrap.dedent(code) + textwrap.dedent("""
        import resource
        try:
            with open("/proc/self/status") as status:
                peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        except OSError:  # no procfs: an upper bound that may include the parent's peak
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print("RSS_MB", peak / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    rss = float(out.stdout.rsplit("RSS_MB", 1)[1])
    return out.stdout, rss


LOAD_AND_REPORT = """
    import sys, time
    from mvae.checkpoint import load_model, unpack
    from mvae.errors import CheckpointError
    for reader, path in {cases!r}:
        started = time.perf_counter()
        try:
            dict(load_model=load_model, unpack=unpack)[reader](path)
            print("LOADED", path)
        except CheckpointError as exc:
            print("REFUSED", exc)
        print("SECONDS", time.perf_counter() - started)
"""


def refused_in_bounded_memory(cases: list[tuple[str, Path]]) -> list[str]:
    """Each (reader, path) loaded in one fresh interpreter; their messages, once peak RSS is checked."""
    out, rss = run_bounded(LOAD_AND_REPORT.format(cases=[(reader, str(path)) for reader, path in cases]))
    messages = [line for line in out.splitlines() if line.startswith(("REFUSED", "LOADED"))]
    assert len(messages) == len(cases) and all(m.startswith("REFUSED") for m in messages), out
    assert rss < RSS_LIMIT_MB, f"peak RSS {rss:.0f} MB"
    return messages


def test_hidden_200000_is_refused_before_the_model_is_built(tmp_path):
    model = make_model()
    meta = {"model_config": dict(to_dict(model.cfg), hidden=200_000), "dtype": "float32", "info": {}}
    path = tmp_path / "ckpt" / MODEL_FILE
    atomic_write(path, pack(model.state_dict(), meta))
    # Few Griffin-Lim iterations, so that the vocoder's budget (1024 frames of 1024 points) is not what refuses it.
    big = dict(to_dict(model.cfg), hidden=4096, audio=dict(to_dict(model.cfg.audio), n_mels=256, n_frames=1024,
                                                            n_fft=1024, griffin_lim_iters=4))
    path2 = tmp_path / "ckpt2" / MODEL_FILE
    atomic_write(path2, pack(model.state_dict(), {"model_config": big, "dtype": "float32", "info": {}}))
    hidden, params = refused_in_bounded_memory([("load_model", path.parent), ("load_model", path2.parent)])
    assert str(path) in hidden and "hidden is 200000; it must lie between 1 and 4096" in hidden
    assert str(path2) in params and "parameters; at most 50,000,000 are loaded" in params


SPARSE = 3 * 2**30


def sparse_file(path: Path, header: dict) -> None:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.parent.mkdir(parents=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + SPARSE)  # a hole: no disk used, but reading it would cost 3 GB


def test_a_3_gb_sparse_file_is_not_read(tmp_path):
    meta = read_raw(saved(tmp_path))[0]["__metadata__"]
    claims = {"nothing": {},
              "a model tensor": {FIRST_WEIGHT: {"dtype": "F16", "shape": [SPARSE // 2], "data_offsets": [0, SPARSE]}},
              "a tensor of unknown purpose": {"blob": {"dtype": "U8", "shape": [SPARSE], "data_offsets": [0, SPARSE]}}}
    cases, expected = [], []
    for claim, entries in claims.items():
        for reader in ("load_model", "unpack"):
            path = tmp_path / f"{reader}-{claim}" / MODEL_FILE
            sparse_file(path, {"__metadata__": meta, **entries})
            assert path.stat().st_size > SPARSE
            cases.append((reader, path))
            expected.append("truncated or padded" if claim == "nothing" else
                            f"more than the {MAX_DATA_BYTES} read here" if reader == "unpack" else "lacks the tensors")
    for (reader, path), message, phrase in zip(cases, refused_in_bounded_memory(cases), expected):
        assert str(path) in message and phrase in message, (reader, path, message)


# -- training state ----------------------------------------------------------------------------------------


def trained_state(tmp_path, kind="mlp"):
    model = make_model(kind)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sum(p.sum() for p in model.parameters()).backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(5)
    history = [{"epoch": 1, "train": {"loss": 1.0}, "test": {"elbo": -2.0}, "seconds": 3.5}]
    save_training_state(tmp_path, model, optimizer, generator,
                        {"epoch": 3, "batch": 7, "history": history, "partial": {"loss": 2.0, "n": 1},
                         "wall_seconds": 4.0})
    return model, optimizer, generator, history


def fresh(model):
    other = MVAE(model.cfg)
    return other, torch.optim.Adam(other.parameters(), lr=1e-3), torch.Generator().manual_seed(99)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_training_state_round_trip(tmp_path, kind):
    model, optimizer, generator, history = trained_state(tmp_path, kind)
    fresh_model, fresh_opt, fresh_gen = fresh(model)
    meta = load_training_state(tmp_path, fresh_model, fresh_opt, fresh_gen)
    assert (meta["epoch"], meta["batch"], meta["history"]) == (3, 7, history)
    assert torch.equal(fresh_gen.get_state(), generator.get_state())
    for a, b in zip(model.parameters(), fresh_model.parameters()):
        assert torch.equal(a, b)
    sa, sb = optimizer.state_dict(), fresh_opt.state_dict()
    for idx in sa["state"]:
        assert torch.equal(sa["state"][idx]["exp_avg_sq"], sb["state"][idx]["exp_avg_sq"])
        assert float(sa["state"][idx]["step"]) == float(sb["state"][idx]["step"])
    assert sb["param_groups"][0]["lr"] == 1e-3 and sb["param_groups"][0]["betas"] == (0.9, 0.999)


def resign_state(path: Path, meta_fn=None, tensors_fn=None) -> None:
    tensors, meta = unpack(path)
    tensors = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
    if meta_fn:
        meta_fn(meta)
    if tensors_fn:
        tensors_fn(tensors)
    atomic_write(path, pack(tensors, meta))


STATE_EDITS = {
    'epoch "3"': (dict(meta_fn=lambda m: m.update(epoch="3")), "epoch is '3', not a whole number"),
    "epoch -1": (dict(meta_fn=lambda m: m.update(epoch=-1)), "epoch is -1"),
    "batch missing": (dict(meta_fn=lambda m: m.pop("batch")), "batch is None"),
    "history a text": (dict(meta_fn=lambda m: m.update(history="x")), "history is 'x'"),
    "history without seconds": (dict(meta_fn=lambda m: m["history"][0].pop("seconds")), "its history"),
    "partial a list": (dict(meta_fn=lambda m: m.update(partial=[1])), "partial is [1]"),
    "wall_seconds NaN": (dict(meta_fn=lambda m: m.update(wall_seconds=math.nan)), "wall_seconds is nan"),
    "train_config a list": (dict(meta_fn=lambda m: m.update(train_config=[1])), "train_config is [1]"),
    "param_groups missing": (dict(meta_fn=lambda m: m.pop("param_groups")), "param_groups is None"),
    "param_groups empty": (dict(meta_fn=lambda m: m.update(param_groups=[])), "param_groups is []"),
    "lr a text": (dict(meta_fn=lambda m: m["param_groups"][0].update(lr="fast")), "settings of this Adam"),
    "betas of three": (dict(meta_fn=lambda m: m["param_groups"][0].update(betas=[0.9, 0.9, 0.9])), "Adam"),
    "params renumbered": (dict(meta_fn=lambda m: m["param_groups"][0].update(params=[0, 0])), "Adam"),
    "unknown setting": (dict(meta_fn=lambda m: m["param_groups"][0].update(evil=1)), "Adam"),
    "optim_scalars a list": (dict(meta_fn=lambda m: m.update(optim_scalars=[])), "optim_scalars"),
    "optim_scalars bad key": (dict(meta_fn=lambda m: m.update(optim_scalars={"x.step": 1})), "optim_scalars"),
    "optim_scalars for no parameter": (dict(meta_fn=lambda m: m.update(optim_scalars={"999.step": 1})),
                                       "optim_scalars"),
    "other model settings": (dict(meta_fn=lambda m: m["model_config"].update(hidden=32)), "other model settings"),
    "model_config missing": (dict(meta_fn=lambda m: m.pop("model_config")), "other model settings"),
    "generator as int64": (dict(tensors_fn=lambda t: t.update(generator=t["generator"].long())),
                           "'generator' is stored as I64, where U8 is expected"),
    "generator missing": (dict(tensors_fn=lambda t: t.pop("generator")), "lacks the tensors ['generator']"),
    "moment of another shape": (dict(tensors_fn=lambda t: t.update({"optim.0.exp_avg": torch.zeros(3)})),
                                "'optim.0.exp_avg' has shape [3]"),
    "moment for no parameter": (dict(tensors_fn=lambda t: t.update({"optim.999.exp_avg": torch.zeros(3)})),
                                "'optim.999.exp_avg' that the model does not have"),
    "NaN moment": (dict(tensors_fn=lambda t: t["optim.0.exp_avg"].fill_(math.nan)), "non-finite"),
    "model weight as float16": (dict(tensors_fn=lambda t: t.update({f"model.{FIRST_WEIGHT}":
                                                                    t[f"model.{FIRST_WEIGHT}"].half()})),
                                "is stored as F16, where F32 is expected"),
}


@pytest.mark.parametrize("how", list(STATE_EDITS))
def test_tampered_training_state_is_a_clear_error(tmp_path, how):
    change, phrase = STATE_EDITS[how]
    model, *_ = trained_state(tmp_path)
    resign_state(tmp_path / STATE_FILE, **change)
    fresh_model, fresh_opt, fresh_gen = fresh(model)
    with pytest.raises(CheckpointError) as err:
        load_training_state(tmp_path, fresh_model, fresh_opt, fresh_gen)
    assert str(tmp_path / STATE_FILE) in str(err.value) and phrase in str(err.value), str(err.value)


def test_an_unsigned_edit_of_the_training_state_is_caught_by_the_digest(tmp_path):
    model, *_ = trained_state(tmp_path)
    edit(tmp_path / STATE_FILE, meta_fn=lambda m: m.update(epoch=1))
    with pytest.raises(CheckpointError, match="checksum"):
        load_training_state(tmp_path, *fresh(model))


# -- config validation --------------------------------------------------------------------------------------


def test_default_and_test_configs_are_valid():
    for cfg in (ModelConfig(), TrainConfig(), AudioConfig(), *CONFIGS.values(),
                ModelConfig(latent_dim=4, hidden=16, audio=AudioConfig(n_mels=8, n_frames=8))):
        assert cfg.validate() is cfg
    assert model_config_from_dict(json.loads(json.dumps(to_dict(ModelConfig())))) == ModelConfig()
    shipped = json.loads((SHIPPED / MODEL_JSON).read_text())
    model_config_from_dict(shipped["model_config"])
    train_config_from_dict(shipped["info"]["train_config"])


@pytest.mark.parametrize("data, phrase", [
    ({"latent_dim": 2000}, "latent_dim is 2000"),
    ({"conv_channels": 10**6}, "conv_channels is 1000000"),
    ({"hidden": True}, "hidden must be a whole number, not True"),
    ({"hidden": 16.0}, "hidden must be a whole number"),
    ({"label_weight": math.inf}, "label_weight must be a finite number"),
    ({"modalities": ["speech", "speech"]}, "modalities must be distinct"),
    ({"modalities": []}, "modalities must be distinct"),
    ({"recon_weights": {"speech": -1.0}}, "recon_weights['speech'] is -1.0"),
    ({"recon_weights": {"tamil": 1.0}}, "recon_weights may only name"),
    ({"recon_weights": [1.0]}, "recon_weights must be a mapping"),
    ({"style_kl_weights": {"tamil": 2.0}}, "style_kl_weights may only name"),
    ({"style_kl_weights": {"speech": -2.0}}, "style_kl_weights['speech'] is -2.0"),
    ({"speech_likelihood": "cauchy"}, "speech_likelihood is 'cauchy'"),
    ({"image_conv_batchnorm": "yes"}, "image_conv_batchnorm must be true or false"),
    ({"audio": {"hop_length": 1024}}, "audio.hop_length (1024) must not exceed half of audio.n_fft (512 // 2 = 256)"),
    ({"audio": {"hop_length": 512}}, "audio.hop_length (512) must not exceed half of audio.n_fft"),
    ({"audio": {"griffin_lim_iters": 512}}, "make Griffin-Lim cost"),
    ({"audio": {"f_max": 5000.0}}, "f_max <= sample_rate / 2"),
    ({"audio": {"n_frames": 0}}, "audio.n_frames is 0"),
    ({"audio": {"max_input_rate": 10**7}}, "audio.max_input_rate is 10000000"),
    ({"audio": {"aug_snr_db": [40.0, 12.0]}}, "aug_snr_db must be (low, high)"),
    ({"audio": {"aug_snr_db": "loud"}}, "aug_snr_db must be a list"),
    ({"audio": "8 kHz"}, "audio must be an object of AudioConfig fields, not str"),
    ("hidden", "must be an object of ModelConfig fields"),
])
def test_model_config_values_are_checked_with_the_field_named(data, phrase):
    with pytest.raises(ValueError) as err:
        model_config_from_dict(data)
    assert phrase in str(err.value)


@pytest.mark.parametrize("data, phrase", [
    ({"epochs": -1}, "epochs is -1"), ({"batch_size": 0}, "batch_size is 0"), ({"lr": math.nan}, "lr must be"),
    ({"lr_schedule": "step"}, "lr_schedule is 'step'"), ({"seed": -1}, "seed is -1"),
])
def test_train_config_values_are_checked(data, phrase):
    with pytest.raises(ValueError, match=phrase.replace("(", r"\(")):
        train_config_from_dict(data)


def test_a_new_integer_field_gets_a_default_bound():
    """A field added later (say a style code's size) is bounded though it names no range of its own."""
    @dataclasses.dataclass
    class Extended(ModelConfig):
        style_dim: int = 0
        style_scale: float = 1.0

    assert Extended(style_dim=8).validate().style_dim == 8
    with pytest.raises(ValueError, match="style_dim is 1000000; it must lie between 0 and 4096"):
        Extended(style_dim=10**6).validate()
    with pytest.raises(ValueError, match="style_dim must be a whole number"):
        Extended(style_dim="8").validate()
    with pytest.raises(ValueError, match="style_scale must be a finite number"):
        Extended(style_scale=math.nan).validate()


def test_the_upgrade_command_reports_a_damaged_file(tmp_path, capsys):
    from mvae.upgrade import main

    path = saved(tmp_path)
    assert main([str(path.parent), "--dry-run"]) == 0
    assert "format 2, verified" in capsys.readouterr().out
    path.write_bytes(path.read_bytes()[:100])
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: The checkpoint") and str(path) in err


def test_the_shipped_files_verify_with_the_command(capsys, tmp_path):
    from mvae.upgrade import main

    copy = tmp_path / "default"
    copy.mkdir()
    for name in (MODEL_FILE, MODEL_JSON):
        shutil.copy(SHIPPED / name, copy / name)
    before = load_model(copy)[0].state_dict()
    assert main([str(copy)]) == 0
    assert unpack(copy / MODEL_FILE)[1]["version"] == VERSION
    after = load_model(copy)[0].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
