"""The error contract for model files, by property: `mvae.load` on generated hostile files, each resealed
with a valid digest (anyone can reseal one), answers with a model or a CheckpointError, within 5 s and
1.5 GB of traced memory (`tests.contract.within_contract`); a file it accepts runs within the same bounds.

The files start from a small model of every layer kind (convs, transposed convs, batch norm, an embedding)
and are mutated as an attacker would: programs with other operations, settings, tensor shapes and steps;
metadata with values of any JSON type; header entries; nesting past the depth limit; repeated keys;
truncation. The number of examples is bounded by the Hypothesis profile (tests/conftest.py).
"""

from __future__ import annotations

import copy
import json
import math
import struct
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

import mvae
from mvae.api_checks import MAX_SAMPLES
from mvae.config import ModelConfig, to_dict
from mvae.model.export import program
from mvae.model.model import MVAE
from mvae.runtime import ops
from mvae.store import FORMAT, MODEL_FILE, VERSION, digest
from tests.contract import within_contract

CFG = ModelConfig(architecture="conv-mlp", hidden=16, latent_dim=4, style_dim=2, conv_channels=4, image_conv_extra=1,
                  image_conv_batchnorm=True, image_decoder="conv")
_MODEL = MVAE(CFG).eval()
BASE_RUNTIME = program(_MODEL)
BASE_TENSORS = {k: v.detach().numpy().copy() for k, v in _MODEL.state_dict().items()}
BASE_META = {"model_config": json.loads(json.dumps(to_dict(CFG))), "dtype": "float32", "runtime": BASE_RUNTIME,
             "info": {}}
MAX_MADE_ELEMENTS = 2**16  # a tensor a mutated program asks for is made only this small (else left missing)
ST_NAME = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
NETWORKS = [(part, name) for part in ("encoders", "decoders") for name in (*CFG.modalities, "label")]

# -- strategies ---------------------------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=6)
junk = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                         max_size=4), max_leaves=10)
sizes = st.sampled_from([0, 1, 2, 3, 4, 7, 8, 16, 17, 28, 33, 64, 100, 4096, 4097, 10**7, 10**7 + 1, -1])
shapes = st.lists(sizes, max_size=5) | junk
op_names = st.sampled_from([*ops.OPS, "gelu", "", "__class__"]) | junk
settings = st.sampled_from(["stride", "padding", "eps", "shape", "tensors", "op", "extra"])
setting_values = sizes | st.floats() | shapes | junk


@st.composite
def program_edit(draw):
    part, name = draw(st.sampled_from(NETWORKS))
    kind = draw(st.sampled_from(["op", "setting", "shape", "delete", "duplicate", "swap", "junk step", "junk net",
                                 "insert silu", "insert flatten"]))
    return part, name, draw(st.integers(0, 40)), kind, draw(op_names), draw(settings), draw(setting_values), \
        draw(shapes), draw(junk), draw(st.integers(0, 40))


def apply_program_edit(runtime: dict, edit) -> None:
    part, name, index, kind, op, setting, value, shape, junk_value, other = edit
    steps = runtime[part][name]
    if kind == "junk net":
        runtime[part][name] = junk_value
        return
    if not isinstance(steps, list) or not steps:  # an earlier edit made it junk
        return
    i, j = index % len(steps), other % len(steps)
    step = steps[i]
    if not isinstance(step, dict) and kind in ("op", "setting", "shape"):
        return
    if kind == "op":
        step["op"] = op
    elif kind == "setting":
        step[setting] = value
    elif kind == "shape" and isinstance(step.get("tensors"), dict) and step["tensors"]:
        role = sorted(step["tensors"])[index % len(step["tensors"])]
        if isinstance(step["tensors"][role], dict):
            step["tensors"][role] = dict(step["tensors"][role], shape=shape)
    elif kind == "delete":
        del steps[i]
    elif kind == "duplicate":
        steps.insert(i, copy.deepcopy(step))
    elif kind == "swap":
        steps[i], steps[j] = steps[j], steps[i]
    elif kind == "junk step":
        steps[i] = junk_value
    elif kind.startswith("insert"):  # runs wherever the batch is numbers: such files load, and must then run
        steps.insert(i, {"op": kind.split()[1]})


@st.composite
def meta_edit(draw):
    where = draw(st.sampled_from([(), ("model_config",), ("model_config", "audio"), ("runtime",), ("runtime", "norms"),
                                  ("info",)]))
    key = draw(st.sampled_from(["dtype", "version", "format", "hidden", "latent_dim", "style_dim", "n_classes",
                                "n_fft", "hop_length", "n_mels", "n_frames", "griffin_lim_iters", "modalities",
                                "architecture", "speech", "encoders", "sha256", "model_config", "runtime"]))
    return where, key, draw(sizes | setting_values)


def apply_meta_edit(meta: dict, edit) -> None:
    where, key, value = edit
    target = meta
    for k in where:
        target = target.get(k) if isinstance(target, dict) else None
    if isinstance(target, dict):
        target[key] = value


@st.composite
def header_edit(draw):
    return draw(st.sampled_from(["dtype", "shape", "data_offsets", "extra", "drop"])), draw(st.integers(0, 200)), \
        draw(st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "F8_E4M3", "f32"]) | junk), draw(shapes)


@st.composite
def text_edit(draw):
    return draw(st.sampled_from(["none", "deep header", "deep metadata", "repeat header key", "repeat metadata key",
                                 "truncate", "pad"])), draw(st.integers(1, 200_000)), draw(st.integers(0, 2**20))


# -- files ----------------------------------------------------------------------------------------------------


def tensors_for(runtime, base: dict) -> dict:
    """The tensors a mutated program reads, where it names them well and they are small: the base's where the
    shape is unchanged, made afresh otherwise (class indices cannot be read as tensors, so all are floats)."""
    out, rng = {}, np.random.default_rng(0)
    try:
        refs = [ref for part in ("encoders", "decoders") for steps in runtime[part].values() for step in steps
                for ref in step.get("tensors", {}).values()]
        refs += [ref for norm in runtime["norms"].values() for ref in norm.values()]
    except (AttributeError, TypeError, KeyError):
        return dict(base)
    for ref in refs:
        try:
            name, shape = ref["name"], tuple(ref["shape"])
            ok = isinstance(name, str) and all(type(d) is int and d > 0 for d in shape) \
                and math.prod(shape) <= MAX_MADE_ELEMENTS
        except (TypeError, KeyError):
            continue
        if not ok or name in out:
            continue
        out[name] = base[name] if name in base and base[name].shape == shape else \
            np.abs(rng.standard_normal(shape)).astype(np.float32) + np.float32(0.5)
    for name, value in base.items():  # what a program no longer reads stays, as an attacker might leave it
        out.setdefault(name, value)
    return out


def entries_and_data(tensors: dict) -> tuple[dict, bytes]:
    entries, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        array = np.asarray(tensors[name]).copy(order="C")  # ascontiguousarray would make a 0-d tensor 1-d
        raw = array.tobytes()
        entries[name] = {"dtype": ST_NAME[array.dtype], "shape": list(array.shape),
                         "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    return entries, b"".join(chunks)


def write(path: Path, header_text: str, data: bytes) -> None:
    raw = header_text.encode("utf-8", "surrogatepass")
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def hostile_file(path: Path, program_edits, meta_edits, header_edits, text) -> None:
    meta = copy.deepcopy(BASE_META)
    for e in program_edits:
        apply_program_edit(meta["runtime"], e)
    tensors = tensors_for(meta["runtime"], BASE_TENSORS)
    for e in meta_edits:
        apply_meta_edit(meta, e)
    entries, data = entries_and_data(tensors)
    names = sorted(entries)
    for kind, index, dtype, shape in header_edits:
        name = names[index % len(names)]
        if kind == "drop":
            entries.pop(name, None)
        elif kind == "extra":
            entries[name] = dict(entries.get(name, {}), extra=dtype)
        elif name in entries:
            entries[name] = dict(entries[name], **{kind: dtype if kind == "dtype" else shape})
    meta = dict(meta, format=meta.get("format", FORMAT), version=meta.get("version", VERSION))
    try:
        meta["sha256"] = digest(entries, meta, data)  # resealed: only the loader's other checks stand in the way
        meta_text = json.dumps(meta)
        header_text = json.dumps({**entries, "__metadata__": {"mvae": "@META@"}})
    except (TypeError, ValueError):  # NaN keys and the like that JSON cannot carry: the base file, resealed
        meta = dict(BASE_META, format=FORMAT, version=VERSION)
        entries, data = entries_and_data(BASE_TENSORS)
        meta["sha256"] = digest(entries, meta, data)
        meta_text, header_text = json.dumps(meta), json.dumps({**entries, "__metadata__": {"mvae": "@META@"}})
    kind, depth, cut = text
    if kind == "deep metadata":
        meta_text = meta_text[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
    elif kind == "repeat metadata key":
        meta_text = meta_text[:-1] + ', "dtype": "float16"}'
    header_text = header_text.replace('"@META@"', json.dumps(meta_text))
    if kind == "deep header":
        header_text = header_text[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
    elif kind == "repeat header key":
        header_text = header_text[:-1] + f", {json.dumps(names[0])}: {json.dumps(entries.get(names[0]))}}}"
    write(path, header_text, data)
    if kind == "truncate":
        blob = path.read_bytes()
        path.write_bytes(blob[:cut % len(blob)])
    elif kind == "pad":
        path.write_bytes(path.read_bytes() + bytes(cut % 4096 + 1))


# -- the property -------------------------------------------------------------------------------------------


def loads_within_contract(path: Path) -> None:
    outcome = within_contract(mvae.load, path.parent)
    if isinstance(outcome, Exception):
        assert str(path) in str(outcome) or str(path.parent) in str(outcome), outcome
        return
    # Accepted: then it runs within the same bounds, at the largest batch the API allows.
    within_contract(outcome.generate, 3, n=MAX_SAMPLES)
    within_contract(outcome.predict, {"label": 3})


@given(st.lists(program_edit(), min_size=1, max_size=4))
def test_hostile_programs(program_edits):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MODEL_FILE
        hostile_file(path, program_edits, [], [], ("none", 1, 0))
        loads_within_contract(path)


@given(st.lists(meta_edit(), min_size=1, max_size=4), st.lists(header_edit(), max_size=2))
@example([((), "dtype", ["float32"])], [])  # found by the thorough profile: an unhashable dtype
@example([((), "info", 1)], [("dtype", 0, ["F32"], [])])
def test_hostile_metadata_and_headers(meta_edits, header_edits):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MODEL_FILE
        hostile_file(path, [], meta_edits, header_edits, ("none", 1, 0))
        loads_within_contract(path)


@given(st.lists(program_edit(), max_size=1), text_edit())
def test_hostile_text(program_edits, text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MODEL_FILE
        hostile_file(path, program_edits, [], [], text)
        loads_within_contract(path)


def test_the_base_file_loads_and_runs():
    """The unmutated file is accepted, so that the properties above reach past the first checks."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MODEL_FILE
        hostile_file(path, [], [], [], ("none", 1, 0))
        pipe = within_contract(mvae.load, path.parent)
        assert isinstance(pipe, mvae.Pipeline)
        assert pipe.generate(3, n=2).probs.shape == (2, CFG.n_classes)
