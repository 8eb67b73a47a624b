import glob
import io
import os
import struct
from fractions import Fraction

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

from mvae.config import AudioConfig
from mvae.errors import InputError
from mvae.signals.audio import AudioFrontEnd, PreparedSpeech, wav_bytes
from mvae.signals.augment import augment_speech, augment_speech_warped, change_speed_pitch
from mvae.signals.resampling import MAX_RATIO_TERM, resample, resample_ratio
from mvae.signals.waveform import _as_float

CFG = AudioConfig()
SR = CFG.sample_rate


@pytest.fixture(scope="module")
def fe():
    return AudioFrontEnd(CFG)


def tone(freq, seconds, rate=SR, amp=0.5):
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def speech_like(rate, seconds=1.0):
    """Three partials under a smooth envelope, sampled exactly at `rate`, all below 8 kHz Nyquist."""
    t = np.arange(int(seconds * rate)) / rate
    env = np.exp(-(((t - seconds / 2) / (seconds / 5)) ** 2))
    partials = sum(a * np.sin(2 * np.pi * f * t) for a, f in ((0.4, 310), (0.3, 1130), (0.2, 2470)))
    return (env * partials).astype(np.float32)


def dominant_hz(wave, rate=SR):
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.argmax(spec) * rate / len(wave)


def in_silence(wave, before, after, noise=1e-4, seed=0):
    rng = np.random.default_rng(seed)
    out = np.concatenate([np.zeros(before, np.float32), wave, np.zeros(after, np.float32)])
    return (out + noise * rng.standard_normal(len(out))).astype(np.float32)


def encode(wave, rate, subtype="PCM_16", fmt="WAV"):
    buf = io.BytesIO()
    sf.write(buf, wave, rate, subtype=subtype, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("freq", [440.0, 700.0])
def test_tone_keeps_its_pitch_through_log_mel_and_griffin_lim(fe, freq):
    log_mel = fe.log_mel(tone(freq, CFG.num_samples / SR))
    wave = fe.waveform_from_log_mel(log_mel)
    assert wave.dtype == np.float32 and wave.shape == (CFG.num_samples,)
    assert dominant_hz(wave) == pytest.approx(freq, rel=0.03)
    assert np.abs(wave).max() == pytest.approx(CFG.target_peak, rel=1e-3)
    np.testing.assert_array_equal(wave, fe.waveform_from_log_mel(log_mel))


def test_waveform_from_log_mel_batch_matches_single(fe):
    batch = fe.log_mel(np.stack([tone(440, CFG.num_samples / SR), tone(700, CFG.num_samples / SR)]))
    waves = fe.waveform_from_log_mel(batch)
    assert waves.shape == (2, CFG.num_samples)
    np.testing.assert_allclose(waves[1], fe.waveform_from_log_mel(batch[1]), atol=1e-4)
    assert dominant_hz(waves[0]) == pytest.approx(440, rel=0.03)


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "FLOAT"])
def test_decode_any_wav_gives_the_same_mono_8k_signal(fe, rate, subtype):
    ref = speech_like(SR)
    ref = ref - ref.mean()
    for channels in (1, 2):
        wave = speech_like(rate)
        wave = wave if channels == 1 else np.stack([wave, 0.6 * wave], axis=1)  # mono mix = 0.8 x
        # decode streams the file: mono at the model's rate comes out, whatever went in.
        mono, got_rate = fe.decode(encode(wave, rate, subtype))
        assert got_rate == SR and mono.dtype == np.float32 and mono.ndim == 1 and abs(len(mono) - len(ref)) <= 1
        assert abs(float(mono.mean())) < 1e-3
        n = min(len(mono), len(ref))
        assert np.corrcoef(mono[:n], ref[:n])[0, 1] > 0.995
        assert mono[:n].std() / ref[:n].std() == pytest.approx(1.0 if channels == 1 else 0.8, rel=0.03)


@pytest.mark.parametrize("fmt,min_corr", [("FLAC", 0.999), ("OGG", 0.95)])
def test_decode_flac_and_ogg(fe, fmt, min_corr):
    wave = speech_like(16000)
    subtype = "PCM_16" if fmt == "FLAC" else "VORBIS"
    mono, rate = fe.decode(encode(wave, 16000, subtype, fmt))
    assert rate == SR
    ref = speech_like(SR)
    n = min(len(mono), len(ref))
    assert np.corrcoef(mono[:n], ref[:n])[0, 1] > min_corr


def test_prepare_accepts_every_layout_and_integer_pcm_alike(fe):
    wave = in_silence(tone(300, 0.4, rate=16000), 4000, 6000)
    reference = fe.prepare(wave, 16000)
    stereo = np.stack([wave, wave], axis=1)
    int16 = np.round(wave * 32767).astype(np.int16)
    for samples in (stereo, stereo.T, torch.from_numpy(stereo.T.copy()), int16):
        got = fe.prepare(samples, 16000)
        assert got.span == reference.span
        loud = reference.log_mel > reference.log_mel.max() - 10  # quantisation noise only moves the quiet bins
        np.testing.assert_allclose(got.log_mel[loud], reference.log_mel[loud], atol=2e-2, rtol=0)


def test_trim_finds_a_tone_in_silence(fe):
    start, length = 4000, 3200
    wave = in_silence(tone(300, length / SR), start, 6000)
    s, e = fe.trim(wave)
    assert abs(s - start) <= CFG.trim_frame and abs(e - (start + length)) <= CFG.trim_frame

    prepared = fe.prepare(wave, SR)
    assert isinstance(prepared, PreparedSpeech) and prepared.sample_rate == SR
    assert prepared.span == (s, e) and len(prepared.waveform) == len(wave)
    assert np.abs(prepared.voiced).max() == pytest.approx(CFG.target_peak, rel=1e-5)
    assert prepared.log_mel.shape == (CFG.n_mels, CFG.n_frames) and prepared.log_mel.dtype == np.float32


QUIET = 1e-4 * np.random.default_rng(0).standard_normal(8000)


@pytest.mark.parametrize("wave", [np.zeros(8000, np.float32), QUIET, np.round(QUIET * 32767).astype(np.int16)])
def test_silence_is_rejected(fe, wave):
    with pytest.raises(InputError, match="silent"):
        fe.prepare(wave, SR)


def test_a_click_is_too_short_to_be_speech(fe):
    wave = np.zeros(8000, np.float32)
    wave[4000:4010] = 0.8
    with pytest.raises(InputError, match="louder than the background"):
        fe.prepare(wave, SR)


def test_header_only_wav_is_no_recording(fe):
    header = b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 2, 44100, 176400, 4, 16)
    header += b"data" + struct.pack("<I", 0)
    assert len(header) == 44
    for data in (header, b""):
        with pytest.raises(InputError, match="no recording"):
            fe.prepare_bytes(data)


def test_unreadable_bytes_name_the_formats_that_work(fe):
    png = b"\x89PNG\r\n\x1a\n" + bytes(200)
    wav = encode(tone(300, 0.5), SR)
    for data in (np.random.default_rng(0).bytes(4000), png, wav[:30]):
        with pytest.raises(InputError, match="not readable audio.*WAV, FLAC or OGG"):
            fe.decode(data)
    with pytest.raises(InputError, match="bytes"):
        fe.decode("speech.wav")


def test_ten_minute_wav_is_refused_from_its_header(fe, monkeypatch):
    data = encode(np.zeros(SR * 600, np.int16), SR)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the samples were decoded before the length was checked")

    monkeypatch.setattr(sf, "read", no_decoding)
    with pytest.raises(InputError, match=r"600\.0 s.*under 60 s"):
        fe.decode(data)


def test_bad_rates_lengths_and_values_are_refused(fe):
    with pytest.raises(InputError, match="384000 Hz or less"):
        fe.decode(encode(np.zeros(400_000 // 10, np.int16), 400_000))
    with pytest.raises(InputError, match="ms long"):
        fe.prepare(tone(300, 0.02), SR)
    with pytest.raises(InputError, match="Hz or more"):
        fe.prepare(tone(300, 1.0, rate=1000), 1000)
    for rate in (8000.5, float("nan"), "8000"):
        with pytest.raises(InputError, match="whole number"):
            fe.prepare(tone(300, 1.0), rate)
    with pytest.raises(InputError, match="NaN"):
        fe.prepare(np.full(8000, np.nan, np.float32), SR)
    with pytest.raises(InputError, match="channels"):
        fe.prepare(np.zeros((20, 20), np.float32), SR)


def test_dc_offset_and_clipping_still_prepare(fe):
    start, length = 4000, 4000
    loud = np.clip(5 * in_silence(tone(300, length / SR), start, 4000), -1, 1) + 0.3
    assert np.abs(fe.to_mono(loud, SR).mean()) < 1e-3
    prepared = fe.prepare_bytes(wav_bytes(np.clip(loud, -1, 1), SR))
    assert abs(prepared.span[0] - start) <= CFG.trim_frame
    assert abs(prepared.span[1] - (start + length)) <= CFG.trim_frame
    assert np.isfinite(prepared.log_mel).all()


def test_fix_length_centres_pads_and_crops(fe):
    size = CFG.num_samples
    assert size == 8064
    short = np.ones(1000, np.float32)
    out = fe.fix_length(short)
    assert out.shape == (size,) and np.flatnonzero(out)[[0, -1]].tolist() == [3532, 4531]
    assert np.flatnonzero(fe.fix_length(short, offset=100))[0] == 3632
    assert np.flatnonzero(fe.fix_length(short, offset=-10**6))[0] == 0
    assert np.flatnonzero(fe.fix_length(short, offset=10**6))[-1] == size - 1

    long = np.arange(10_000, dtype=np.float32)
    assert fe.fix_length(long)[[0, -1]].tolist() == [968, 968 + size - 1]
    assert fe.fix_length(long, offset=100)[0] == 868  # the clip moves later, so the window starts earlier
    assert fe.fix_length(long, offset=10**6)[0] == 0
    np.testing.assert_array_equal(fe.fix_length(np.arange(size, dtype=np.float32)), np.arange(size))


def test_log_mel_shape_and_batch_equals_single(fe):
    rng = np.random.default_rng(1)
    batch = rng.standard_normal((5, CFG.num_samples)).astype(np.float32) * 0.3
    mels = fe.log_mel(batch)
    assert mels.shape == (5, CFG.n_mels, CFG.n_frames) and mels.dtype == np.float32
    # Row-major: a strided log-mel bank made every training step copy it (a tenth slower).
    assert mels.flags.c_contiguous and torch.from_numpy(mels).is_contiguous()
    for i in range(5):
        single = fe.log_mel(batch[i])
        assert single.shape == (CFG.n_mels, CFG.n_frames) and single.flags.c_contiguous
        np.testing.assert_allclose(mels[i], single, atol=1e-4, rtol=1e-4)
    assert fe.log_mel(np.zeros(CFG.num_samples)).min() == pytest.approx(np.log(CFG.log_floor))
    with pytest.raises(InputError, match="fix_length"):
        fe.log_mel(np.zeros(1000))


def test_speed_and_pitch_changes_are_what_they_say(fe):
    wave = tone(400, 1.0)
    faster = change_speed_pitch(wave, speed=1.1)
    assert len(faster) == pytest.approx(len(wave) / 1.1, rel=0.01)
    assert dominant_hz(faster) == pytest.approx(440, rel=0.01)
    higher = change_speed_pitch(wave, semitones=2.0)
    assert len(higher) == pytest.approx(len(wave), rel=0.01)
    assert dominant_hz(higher) == pytest.approx(400 * 2 ** (2 / 12), rel=0.01)
    lower_slower = change_speed_pitch(wave, speed=0.9, semitones=-1.0)
    assert len(lower_slower) == pytest.approx(len(wave) / 0.9, rel=0.01)
    assert dominant_hz(lower_slower) == pytest.approx(400 * 0.9 * 2 ** (-1 / 12), rel=0.01)


def test_a_warped_copy_is_the_augmented_copy_before_its_noise_and_level(fe):
    from dataclasses import replace

    voiced = fe.prepare(in_silence(tone(300, 0.5), 2000, 2000), SR).voiced
    for seed in range(5):
        copy, warped = augment_speech_warped(fe.cfg, voiced, np.random.default_rng(seed))
        np.testing.assert_array_equal(copy, augment_speech(fe.cfg, voiced, np.random.default_rng(seed)))
        assert warped.dtype == np.float32 and len(warped) == len(copy)
        # Without a level change, what the copy adds to its warped voice is noise at a drawn SNR.
        level_kept = replace(fe.cfg, aug_gain_db=0.0)
        copy, warped = augment_speech_warped(level_kept, voiced, np.random.default_rng(seed))
        snr_db = 20 * np.log10(np.sqrt(np.mean(warped.astype(np.float64) ** 2) / np.mean((copy - warped) ** 2.0)))
        assert fe.cfg.aug_snr_db[0] - 0.5 < snr_db < fe.cfg.aug_snr_db[1] + 0.5, snr_db
        # The warped voice is the speed and pitch change alone: a 300 Hz tone moves off 300 Hz.
        assert not np.allclose(warped[:len(voiced)], voiced[:len(warped)], atol=1e-2)
    same = augment_speech_warped(fe.cfg, voiced, np.random.default_rng(0), strength=0.0)
    np.testing.assert_array_equal(same[0], voiced)
    np.testing.assert_array_equal(same[1], voiced)


def test_augment_is_deterministic_and_changes_the_signal(fe):
    voiced = fe.prepare(in_silence(tone(300, 0.5), 2000, 2000), SR).voiced
    a = augment_speech(fe.cfg, voiced, np.random.default_rng(7))
    np.testing.assert_array_equal(a, augment_speech(fe.cfg, voiced, np.random.default_rng(7)))
    b = augment_speech(fe.cfg, voiced, np.random.default_rng(8))
    assert a.dtype == np.float32 and np.isfinite(a).all()
    assert len(a) != len(b) or not np.allclose(a, b)
    n = min(len(a), len(voiced))
    assert not np.allclose(a[:n], voiced[:n], atol=1e-2)
    np.testing.assert_array_equal(augment_speech(fe.cfg, voiced, np.random.default_rng(7), strength=0.0), voiced)

    lengths = np.array([len(augment_speech(fe.cfg, voiced, np.random.default_rng(s))) for s in range(20)])
    assert lengths.min() >= len(voiced) / (1 + CFG.aug_speed) - 2
    assert lengths.max() <= len(voiced) / (1 - CFG.aug_speed) + 2
    assert lengths.std() > 0.02 * len(voiced)


def test_wav_bytes_round_trip():
    wave = tone(300, 0.25)
    data = wav_bytes(wave, SR)
    back, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == SR and data[:4] == b"RIFF"
    np.testing.assert_allclose(back, wave, atol=1 / 32767)


def test_real_fsdd_recordings_prepare():
    root = os.environ.get("MVAE_DATA_DIR")
    files = sorted(glob.glob(os.path.join(root, "fsdd", "recordings", "*.wav")))[::300] if root else []
    if not files:
        pytest.skip("set MVAE_DATA_DIR to a folder holding fsdd/recordings/*.wav to check real recordings")
    fe = AudioFrontEnd(CFG)
    for path in files:
        with open(path, "rb") as f:
            prepared = fe.prepare_bytes(f.read())
        start, end = prepared.span
        assert 0.1 * SR < end - start <= len(prepared.waveform)
        assert np.isfinite(prepared.log_mel).all() and prepared.log_mel.max() > 0


COMMON_RATES = (4000, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 176400, 192000,
                352800, 384000)


@pytest.mark.parametrize("rate", COMMON_RATES)
def test_common_rates_are_resampled_exactly(rate):
    """The rounding leaves these ratios alone, so they are resampled as scipy does at the exact ratio."""
    assert resample_ratio(Fraction(SR, rate)) == Fraction(SR, rate)
    wave = speech_like(rate, 0.25)
    ratio = Fraction(SR, rate)
    expected = resample_poly(wave, ratio.numerator, ratio.denominator).astype(np.float32) if rate != SR else wave
    np.testing.assert_allclose(resample(wave, Fraction(SR, rate)), expected, atol=1e-5, rtol=0)


def test_every_input_rate_rounds_to_small_terms_within_a_thousandth():
    rates = np.concatenate([np.arange(4000, 9000),
                            np.random.default_rng(0).integers(4000, CFG.max_input_rate + 1, 20000),
                            [CFG.max_input_rate, 383_999, 44_101, 22_051]])
    for rate in rates.tolist():
        frac = resample_ratio(Fraction(SR, rate))
        assert max(frac.numerator, frac.denominator) <= MAX_RATIO_TERM, rate
        assert abs(float(frac * rate / SR) - 1) < 1 / MAX_RATIO_TERM, rate


@pytest.mark.parametrize("rate", [4001, 8001, 22051, 44101, 96001, 383999])
def test_odd_rates_keep_the_pitch_and_length(fe, rate):
    seconds = 4.0  # 0.25 Hz bins: the pitch is read to a few parts in ten thousand
    mono = fe.to_mono(tone(1000.0, seconds, rate=rate), rate)
    assert abs(len(mono) - seconds * SR) <= seconds * SR / MAX_RATIO_TERM
    assert dominant_hz(mono) == pytest.approx(1000.0, rel=1 / MAX_RATIO_TERM)


def test_resampling_factors_out_of_range_are_refused():
    for ratio in (Fraction(1, 65), 65, 0):
        with pytest.raises(InputError, match="factor must lie between"):
            resample_ratio(ratio)
    with pytest.raises(InputError, match="384000 Hz or less"):
        AudioFrontEnd(CFG).to_mono(np.zeros(10**6, np.float32), 10**6)


SIXTEEN_BIT = np.round(np.sin(np.arange(800) / 5) * 20000)  # peak 20000 of 32768


@pytest.mark.parametrize("samples, full_scale, centre", [
    (SIXTEEN_BIT.astype(np.int16), 2**15, 0),
    (SIXTEEN_BIT.astype(np.int32), 2**15, 0),  # 16-bit PCM held in a wider array
    (SIXTEEN_BIT.astype(np.int64), 2**15, 0),
    ((SIXTEEN_BIT * 2**8).astype(np.int32), 2**23, 0),  # 24-bit PCM, right-justified
    ((SIXTEEN_BIT * 2**16).astype(np.int32), 2**31, 0),  # 32-bit PCM, as soundfile reads it
    ((SIXTEEN_BIT * 2**16).astype(np.int64), 2**31, 0),
    ((SIXTEEN_BIT * 2**48).astype(np.int64), 2**63, 0),
    ((SIXTEEN_BIT / 2**8).astype(np.int8), 2**7, 0),
    ((SIXTEEN_BIT / 2**8 + 128).astype(np.uint8), 2**7, 2**7),  # 8-bit WAV: offset binary
    ((SIXTEEN_BIT / 2**8 + 128).astype(np.uint32), 2**7, 2**7),
    ((SIXTEEN_BIT + 2**15).astype(np.uint16), 2**15, 2**15),
    ((SIXTEEN_BIT + 2**15).astype(np.uint64), 2**15, 2**15),
], ids=lambda v: getattr(v, "dtype", v))
def test_integer_samples_are_read_by_their_range(samples, full_scale, centre):
    expected = (samples.astype(np.float64) - centre) / full_scale
    got = _as_float(samples)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert 0.5 < np.abs(got).max() < 1  # every one of them is heard near full scale, none as silence


def test_wide_integer_recordings_prepare_like_int16(fe):
    wave = in_silence(tone(300, 0.4, rate=16000), 4000, 6000)
    int16 = np.round(wave * 32767).astype(np.int16)
    reference = fe.prepare(int16, 16000)
    for samples in (int16.astype(np.int32), int16.astype(np.int64), int16.tolist(), int16.astype(np.int32) * 65536):
        got = fe.prepare(samples, 16000)
        assert got.span == reference.span
        np.testing.assert_allclose(got.log_mel, reference.log_mel, atol=1e-4, rtol=0)


@pytest.mark.parametrize("rate", [4000, 4001, 7999, 8000, 8001, 11025, 16000, 22051, 44101, 48000, 383999])
def test_the_streamed_resampler_is_resample_whatever_the_blocks(rate):
    """Fed in blocks of any size, with the DC offset removed afterwards, the streamed resampler gives what
    resampling the whole signal less its mean gives (and so scipy's resample_poly, above)."""
    from mvae.signals.resampling import StreamResampler as _StreamResampler

    rng = np.random.default_rng(rate)
    for n in (0, 1, 7, 3000, 50_000):
        x = (rng.standard_normal(n) + 0.3).astype(np.float32)
        want = resample(x - x.mean(), Fraction(SR, rate)) if n else np.zeros(0, np.float32)
        for block in (1, 61, 4096, 10**6):
            if n > 5000 and block < 4096:  # small blocks of a long signal: slow, and no new case
                continue
            streamed = _StreamResampler(Fraction(SR, rate), n)
            for start in range(0, n, block):
                streamed.feed(x[start:start + block])
            got = streamed.finish(float(x.astype(np.float64).mean()) if n else 0.0)
            assert got.dtype == np.float32 and got.shape == want.shape, (n, block)
            np.testing.assert_allclose(got, want, atol=2e-5, rtol=0)


def test_the_streamed_resampler_holds_only_a_window_of_its_input():
    from mvae.signals.resampling import StreamResampler as _StreamResampler

    streamed = _StreamResampler(Fraction(SR, 48000), 48000 * 10)
    for _ in range(10):
        streamed.feed(np.zeros(48000, np.float32))
        assert len(streamed.held) < streamed.taps + streamed.down  # the filter's reach, not what came before
    assert len(streamed.finish()) == SR * 10
    with pytest.raises(ValueError, match="sized for"):
        streamed.feed(np.zeros(1, np.float32))
