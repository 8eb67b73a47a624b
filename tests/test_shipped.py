"""The shipped checkpoint on real test inputs, handed in the way the app hands them in."""

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import mvae
from mvae.data.sources import load_images
from mvae.data.sources import recordings as recordings_of
from mvae.signals.audio import wav_bytes


def drawn_on_canvas(digit28: np.ndarray, size=280, scale=200, corner=(70, 20)) -> np.ndarray:
    """A test digit drawn large and off-centre on a transparent RGBA canvas, the ink in alpha."""
    big = np.asarray(Image.fromarray(digit28).resize((scale, scale), Image.Resampling.BILINEAR))
    canvas = np.zeros((size, size, 4), np.uint8)
    top, left = corner
    canvas[top:top + scale, left:left + scale, 3] = big
    return canvas


def as_44k_stereo_wav(path) -> bytes:
    samples, rate = sf.read(path, dtype="float32")
    t = np.arange(int(len(samples) * 44100 / rate)) * rate / 44100
    mono = np.interp(t, np.arange(len(samples)), samples)
    return wav_bytes(np.stack([mono, 0.9 * mono], axis=1), 44100)


@pytest.mark.slow
def test_kannada_canvas_gives_label_images_and_speech(real_data, shipped_pipeline):
    test = load_images(real_data, "kannada", "test")
    rows = np.arange(0, 10_000, 250)  # 40 digits, every class
    correct = 0
    for row in rows:
        pred = shipped_pipeline.predict({"kannada": drawn_on_canvas(test.images[row])})
        correct += pred.label == test.labels[row]
    assert correct / len(rows) >= 0.9
    assert pred.images["farsi"].shape == (28, 28) and pred.images["kannada"].shape == (28, 28)
    assert pred.speech.sample_rate == 8000 and np.abs(pred.speech.waveform).max() > 0.1


@pytest.mark.slow
def test_fsdd_recording_as_44k_stereo(real_data, shipped_pipeline):
    recordings = recordings_of(real_data, "speech", "test")[::10]  # 30 recordings, every digit and speaker
    correct = 0
    for rec in recordings:
        pred = shipped_pipeline.predict({"speech": as_44k_stereo_wav(rec.path)})
        correct += pred.label == rec.digit
    assert correct / len(recordings) >= 0.9
    assert set(pred.images) == {"farsi", "kannada"} and len(pred.speech.waveform) > 4000


def test_empty_canvas_and_silence_are_refused(shipped_pipeline):
    with pytest.raises(mvae.InputError, match="empty"):
        shipped_pipeline.predict({"kannada": np.zeros((280, 280, 4), np.uint8)})
    with pytest.raises(mvae.InputError, match="silent"):
        shipped_pipeline.predict({"speech": wav_bytes(np.zeros((88200, 2), np.float32), 44100)})


# The bar test scores the evaluator's 500 speech pairs, but only at the bar's temperature (the means cost a
# second Griffin-Lim pass), so its draws of the noise are not the table's; everything else is computed as the
# evaluator does. Fewer pairs would save minutes, but a direction into speech 3 points over its bar then
# falls under it by chance (Kannada -> speech read 89 % on the first 200 of the 500 pairs the table reads at
# 93 %), and every line the model meets is held.
SHIPPED_TEST_SPEECH_PAIRS = 500


@pytest.mark.slow
def test_shipped_checkpoint_meets_the_bar_and_its_report(real_data):
    """The evaluator, re-run on the real test splits with the judges of rule 1 (real training data only),
    finds every line of the bar that the shipped model holds met, and the report shipped beside the
    checkpoint (the README's table) says what it finds, the generative lines included, met or not."""
    import json

    from mvae.evaluation.bar import BAR, GENERATION_TEMPERATURE, HELD_LINES, ROBUSTNESS_AIM, meets_bar
    from mvae.evaluation.judges import judges_id
    from mvae.evaluation.report import evaluate_checkpoint
    from mvae.inference import DEFAULT_CHECKPOINT
    from mvae.store import EVAL_JSON

    report = evaluate_checkpoint(DEFAULT_CHECKPOINT, real_data, progress=False, write=False,
                                 speech_pairs=SHIPPED_TEST_SPEECH_PAIRS, temperatures=(GENERATION_TEMPERATURE,))
    assert report["meets_bar"] == meets_bar(report)
    assert set(HELD_LINES) <= set(report["meets_bar"])
    failed = {k: v for k, v in report["meets_bar"].items() if k in HELD_LINES and not v}
    assert not failed, f"the shipped checkpoint misses the bar {BAR} on {sorted(failed)}"
    short = {k: v for k, v in report["robustness"].items() if v < ROBUSTNESS_AIM}
    assert len(report["robustness"]) == 16 and not short, f"stand-ins for real users under the aim: {short}"
    shipped = json.loads((DEFAULT_CHECKPOINT / EVAL_JSON).read_text())
    assert shipped.get("judges_id") == judges_id(), "eval.json was judged by other judges: re-run the evaluator"

    def speech_tolerance(value, key):
        # A reading of its clips against one of the table's draws: 3.5 standard errors of the difference of two
        # proportions, so that the 20 such figures (two judges, ten directions) rarely stray past it by chance.
        # A proportion near 0 or 1 is taken as 0.05 or 0.95, so that the margin never closes. The table hears
        # each test recording once in its own voice, however many pairs it draws for the other directions.
        p = min(max(value, 0.05), 0.95)
        table = shipped["coherence_pairs"]["speech_target"]
        if key == "speech->speech":
            table = shipped["coherence_pairs"].get("speech_itself", {}).get("speech", table)
        return 3.5 * (p * (1 - p) * (1 / SHIPPED_TEST_SPEECH_PAIRS + 1 / table)) ** 0.5

    def tolerance(section, key):
        # Speech targets are scored on other draws of the noise here than in eval.json, and the label's digits
        # are drawn after them from the same random stream: allow their sampling error (about 2.5 standard
        # errors of 200 and of 2,000 draws, so loose for 500). Everything else is computed exactly as in
        # eval.json.
        return 0.08 if key.endswith("speech") else 0.03 if section in ("label_coherence",
                                                                       "reconstruction_coherence") else 0.005

    sections = ("unimodal_accuracy", "extra_accuracy", "accuracy", "coherence", "label_coherence", "robustness",
                "reconstruction_coherence", "diversity", "frechet", "live_dimensions")
    for section in sections:
        for key, value in report[section].items():
            assert abs(shipped[section][key] - value) <= tolerance(section, key) * max(1.0, abs(value)), \
                f"eval.json {section}/{key} is stale"
    # A line whose figure lies within that sampling error of its bar may fall either side of it here.
    bars = {"label_coherence": BAR["label_coherence_min"], "coherence": BAR["coherence_min"]}
    borderline = {f"{section}/{key}" for section, bar in bars.items() for key, value in shipped[section].items()
                  if abs(value - bar) <= tolerance(section, key)}
    # An intelligibility ratio carries its direction's sampling error over the judge's reading of real speech.
    for judge, section in shipped["speech_judges"].items():
        vocoded = section["real_fsdd_test"]["vocoded"]
        borderline |= {f"intelligibility/{judge}/{key}" for key, value in section["intelligibility_ratio"].items()
                       if value is None or abs(value - BAR["intelligibility_ratio_min"])
                       <= speech_tolerance(value * vocoded, key) / vocoded}
    assert set(shipped["meets_bar"]) == set(report["meets_bar"])
    differing = {k for k, ok in report["meets_bar"].items() if shipped["meets_bar"][k] != ok} - borderline
    assert not differing, f"eval.json says otherwise of the lines {sorted(differing)}"
    # Every direction into speech by both speech judges (the FSDD-free one included), and what each reads on the
    # real FSDD test recordings, raw and vocoded (computed exactly as in eval.json).
    assert set(report["speech_judges"]) == set(shipped["speech_judges"]) == {"speech", "speech_synthetic"}
    for name, section in report["speech_judges"].items():
        for key, value in section["real_fsdd_test"].items():
            assert abs(shipped["speech_judges"][name]["real_fsdd_test"][key] - value) <= 0.005, \
                f"eval.json speech_judges/{name}/real_fsdd_test/{key} is stale"
        for key, value in section["directions"].items():
            table = shipped["speech_judges"][name]["directions"][key]
            assert abs(table - value) <= speech_tolerance(table, key), \
                f"eval.json speech_judges/{name}/directions/{key} is stale: {value} here, " \
                f"{table} in eval.json"
    for script, halftone in report["halftone"].items():
        assert abs(shipped["halftone"][script]["ratio"] - halftone["ratio"]) < 0.005, \
            f"eval.json halftone/{script} is stale"


# Draws of temperature 1 a heard digit's own voice is the mean of: one draw of 300 recordings moves its ratio by
# about 0.05, three by about 0.03.
OWN_VOICE_DRAWS = 3


@pytest.mark.slow
def test_a_heard_digit_keeps_its_digit_in_its_own_voice_for_a_listener_who_never_heard_fsdd(real_data):
    """Every FSDD test recording decoded again in its own voice (its shared latent and its voice's style from its
    own posterior) and read after Griffin-Lim by the judge that never heard FSDD: at the means and at
    temperature 1 (the mean of OWN_VOICE_DRAWS draws, so that one draw's luck decides nothing), at least the
    bar's share of what that judge reads on the same recordings through the same vocoder."""
    from mvae import checkpoint
    from mvae.evaluation.bar import BAR
    from mvae.evaluation.draws import readings, test_batch
    from mvae.evaluation.judges import load_judges
    from mvae.inference import DEFAULT_CHECKPOINT
    from mvae.signals.audio import AudioFrontEnd

    model, _ = checkpoint.load_model(DEFAULT_CHECKPOINT)
    front_end = AudioFrontEnd(model.cfg.audio)
    judges, _ = load_judges()
    batch = test_batch(model, real_data, front_end, pairs=10_000, seed=0, once="speech")
    assert len(batch["speech"]) == 300, "every FSDD test recording once"
    found = readings(model, {"speech_synthetic": judges["speech_synthetic"]}, batch, front_end,
                     draws=OWN_VOICE_DRAWS, sources=("speech",), columns=("means", "both drawn"))
    real = found["real speech (vocoded)"][""]["speech_synthetic"]
    ratios = {draw: read["speech_synthetic"] / real for draw, read in found["speech->speech"].items()}
    short = {draw: round(r, 3) for draw, r in ratios.items() if r < BAR["intelligibility_ratio_min"]}
    assert not short, f"a heard digit in its own voice reads under {BAR['intelligibility_ratio_min']} of real: {short}"


def test_shipped_checkpoint_was_trained_by_the_recipe_train_py_defaults_to():
    """`python train.py --data-dir data --out runs/mine` trains the shipped model, not some other one."""
    import dataclasses

    from mvae import checkpoint
    from mvae.config import shipped_configs, train_config_from_dict
    from mvae.inference import DEFAULT_CHECKPOINT

    model, meta = checkpoint.load_model(DEFAULT_CHECKPOINT)
    recipe_model, recipe_train = shipped_configs()
    # The log-mel contrast is chosen after training (train.py's last step), so the recipe cannot name it; the
    # readings it was chosen by are in the checkpoint, and the chosen one is the one it decodes with.
    assert dataclasses.replace(model.cfg, log_mel_contrast=recipe_model.log_mel_contrast) == recipe_model
    assert recipe_train.tune_contrast
    tuned = meta["info"]["log_mel_contrast"]
    assert model.cfg.log_mel_contrast == tuned["chosen"] != 1.0 and tuned["split"] == "train"
    # An option added after the run was trained is absent from its record: it trained with that option's
    # default, the behaviour from before the option.
    trained = dataclasses.asdict(train_config_from_dict(meta["info"]["train_config"]))
    # A run trained before the option existed had its contrast chosen by the same function afterwards.
    differing = {k: (trained[k], v) for k, v in dataclasses.asdict(recipe_train).items()
                 if trained[k] != v and k != "tune_contrast"}
    assert not differing, f"the shipped checkpoint was trained otherwise than the recipe: {differing}"
