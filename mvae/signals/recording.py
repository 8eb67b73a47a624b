"""A recording's file bytes -> its samples, mono at the model's rate.

The container is told from the bytes, not from a name, and must be one of ACCEPTED_FORMATS; the header's
rate, channels and length are held to the budget before a sample is decoded; a file that ends before its
header says it does is refused rather than heard as a shorter word. libsndfile and mpg123 quietly read
what is there, so each container's truncation is told from its own layout: a WAV's data chunk, an MPEG
stream's frames, an Ogg stream's pages.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf

from ..config import AudioConfig
from ..errors import InputError
from .waveform import (
    DECODE_BLOCK_SAMPLES,
    MAX_CHANNELS,
    MAX_INPUT_RATE,
    MAX_INPUT_SAMPLES,
    MAX_INPUT_SECONDS,
    MonoStream,
    check_rate,
)

FORMATS = "WAV, FLAC or OGG"
# Containers identified from the bytes (soundfile's format) that are decoded; the rest of what libsndfile
# reads (AIFF, AU, VOC, MAT5, ...) is refused, as no browser records it and each one is more parser exposed.
# MP3 is decoded (people have it) but not advertised: its truncation is told by walking its frames.
ACCEPTED_FORMATS = ("WAV", "WAVEX", "FLAC", "OGG", "MP3")


def wav_shortfall(data: bytes) -> tuple[int, int] | None:
    """(bytes present, bytes declared) of a WAV's data chunk when the file ends before it does, else None.

    libsndfile quietly reads what is there, so a cut-off upload would be heard as a shorter word.
    """
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        return None
    order = "<" if data[:4] == b"RIFF" else ">"
    pos = 12
    while pos + 8 <= len(data):
        (size,) = struct.unpack(order + "I", data[pos + 4:pos + 8])
        if data[pos:pos + 4] == b"data":
            present = len(data) - pos - 8
            if size in (0, 0xFFFFFFFF):  # a streaming writer that never filled the size in
                return None
            return (present, size) if present < size else None
        pos += 8 + size + (size & 1)
    return None


# MPEG audio frame headers (ISO 11172-3 and 13818-3): kbit/s by bitrate index, for MPEG-1 layers I-III and
# for MPEG-2/2.5 layer I and layers II/III; sample rates by version bits (3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5).
_MPEG_KBPS = {
    (True, 3): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 1): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 3): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 1): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
ID3V1_SIZE = 128


def _looks_like(data: bytes) -> str | None:
    """The accepted container whose signature the bytes start with, if any: an unreadable file that starts
    like one was most likely cut off before its header ended, which a person can act on."""
    for magic, container in ((b"RIFF", "WAV"), (b"RIFX", "WAV"), (b"fLaC", "FLAC"), (b"OggS", "OGG"), (b"ID3", "MP3")):
        if data.startswith(magic):
            return container
    return "MP3" if len(data) >= 4 and _mpeg_frame_size(data[:4]) else None


def _mpeg_frame_size(header: bytes) -> int | None:
    """The length in bytes of the MPEG audio frame this 4-byte header starts, or None if it is not one (or is
    free-format, whose length the header does not give)."""
    b1, b2 = header[1], header[2]
    if header[0] != 0xFF or b1 & 0xE0 != 0xE0:
        return None
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3  # layer bits: 3 is layer I, 1 is layer III
    rate_index, kbps_index, padding = (b2 >> 2) & 3, b2 >> 4, (b2 >> 1) & 1
    if version == 1 or layer == 0 or rate_index == 3 or kbps_index in (0, 15):
        return None
    rate = _MPEG_RATES[version][rate_index]
    bits_per_s = 1000 * _MPEG_KBPS[(version == 3, layer)][kbps_index]
    if layer == 3:
        return (12 * bits_per_s // rate + padding) * 4
    slots = 72 if layer == 1 and version != 3 else 144  # MPEG-2 layer III frames hold half the samples
    return slots * bits_per_s // rate + padding


def _mp3_frames(data: bytes):
    """(start, size) of each MPEG audio frame from the first (after an ID3v2 tag) until bytes that are not a
    frame header (a trailing tag, a free-format stream) or the end; the last may run past the end."""
    end = len(data) - (ID3V1_SIZE if data[-ID3V1_SIZE:-ID3V1_SIZE + 3] == b"TAG" else 0)
    pos = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        size = 0
        for byte in data[6:10]:  # syncsafe: 7 bits a byte
            size = size << 7 | (byte & 0x7F)
        pos = 10 + size + (10 if data[5] & 0x10 else 0)
    while pos < end:
        size = _mpeg_frame_size(data[pos:pos + 4]) if end - pos >= 4 else (4 if data[pos] == 0xFF else None)
        if size is None:
            return
        yield pos, size
        pos += size


def _mp3_shortfall(data: bytes) -> tuple[int, int] | None:
    """(bytes present, bytes the stream needs) when an MPEG audio stream ends inside a frame, else None.

    mpg123 decodes what is there, so a cut-off upload would be heard as a shorter word. A cut exactly
    between frames leaves a valid, shorter stream, which only a Xing/Info/VBRI header's frame count
    tells apart (`decode` compares it with what was decoded).
    """
    end = len(data) - (ID3V1_SIZE if data[-ID3V1_SIZE:-ID3V1_SIZE + 3] == b"TAG" else 0)
    for pos, size in _mp3_frames(data):
        if pos + size > end:
            return end, pos + size
    return None


def _mp3_counts_frames(data: bytes) -> bool:
    """Whether the stream's first frame is a Xing, Info or VBRI header, whose frame count mpg123 reports
    as the length: exact then, where without one it is a guess from the file's size."""
    for pos, size in _mp3_frames(data):
        first = data[pos:pos + size]
        return any(tag in first for tag in (b"Xing", b"Info", b"VBRI"))
    return False


OGG_PAGE_HEADER = 27  # "OggS", version, flags, granule, serial, sequence, CRC, segment count
OGG_LAST_PAGE = 0x04  # the flag of a logical stream's final page


def _ogg_truncated(data: bytes) -> bool:
    """Whether an Ogg stream ends inside a page or before its final page.

    libsndfile takes an Ogg file's length from the last complete page it finds, so a cut-off upload would
    be heard as a shorter word; every page says how long it is, and the last one is flagged as such.
    The walk stops, finding nothing, at bytes that are not a page.
    """
    pos, flags = 0, OGG_LAST_PAGE
    while pos < len(data):
        head = data[pos:pos + 4]
        if head != b"OggS":  # a page's start cut short, or bytes that are not a page
            return len(head) < 4 and b"OggS".startswith(head)
        if pos + OGG_PAGE_HEADER > len(data):
            return True
        segments = data[pos + OGG_PAGE_HEADER - 1]
        table = data[pos + OGG_PAGE_HEADER:pos + OGG_PAGE_HEADER + segments]
        if len(table) < segments:
            return True
        flags = data[pos + 5]
        pos += OGG_PAGE_HEADER + segments + sum(table)
        if pos > len(data):
            return True
    return not flags & OGG_LAST_PAGE


def decode(data: bytes, cfg: AudioConfig) -> np.ndarray:
    """File bytes -> the recording as mono float32 at cfg's rate.

    The samples are read a block at a time, each mixed to mono and resampled as it comes, so that the
    memory a request takes does not grow with what the header declares.
    """
    data, info = _checked_info(data)
    rate = check_rate(info.samplerate)
    check_size(cfg, info.frames, rate, info.channels)
    stream = MonoStream(rate, cfg.sample_rate, info.frames)
    block = np.empty((min(DECODE_BLOCK_SAMPLES // info.channels, info.frames), info.channels), np.float32)
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            # Never more than the header declared, which the budget allowed, whatever follows it.
            while stream.frames < info.frames:
                want = min(len(block), info.frames - stream.frames)
                got = f.read(want, dtype="float32", always_2d=True, out=block[:want])
                if len(got) == 0:
                    break
                stream.feed(got)
    except InputError:  # the samples' own fault (NaN, say), said as such: a ValueError too
        raise
    except (RuntimeError, TypeError, ValueError, EOFError, OverflowError) as exc:
        raise InputError(f"The {info.format} file is damaged or truncated; please give the complete file, or "
                         "record again.") from exc
    # An MP3's length without a frame count is mpg123's guess from the file's size and first bitrate;
    # there the walk of its frames is the check.
    counted = info.format != "MP3" or _mp3_counts_frames(data)
    if counted and stream.frames < info.frames:
        raise _truncated(info.format, stream.frames / info.frames)
    return stream.finish()


def _checked_info(data) -> tuple[bytes, object]:
    """The bytes and soundfile's reading of their header, once the container is one this demo reads and the
    file holds all that its header declares."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"Audio must be given as file bytes ({FORMATS}), not {type(data).__name__}.")
    data = bytes(data)
    if len(data) == 0:
        raise InputError("There is no recording: the audio is empty. Record or upload a spoken digit.")
    try:
        info = sf.info(io.BytesIO(data))
    except (RuntimeError, TypeError, ValueError, EOFError, OverflowError) as exc:
        container = _looks_like(data)
        hint = ""
        if container:
            article = "an" if container in ("OGG", "MP3") else "a"
            hint = f" They start like {article} {container} file that is cut off: give the complete file."
        raise InputError(f"These bytes are not readable audio; please give a {FORMATS} file.{hint}") from exc
    if info.format not in ACCEPTED_FORMATS:
        raise InputError(f"This is an audio file of a kind this demo does not read ({info.format_info}); please "
                         f"give a {FORMATS} file.")
    shortfall = wav_shortfall(data)
    if shortfall:
        raise _truncated(info.format, shortfall[0] / shortfall[1])
    if (info.format == "MP3" and _mp3_shortfall(data)) or (info.format == "OGG" and _ogg_truncated(data)):
        raise _truncated(info.format)
    if info.frames <= 0:
        raise InputError("There is no recording: the audio file holds no samples. Record or upload a spoken digit.")
    return data, info


def _truncated(container: str, fraction: float | None = None) -> InputError:
    # Never "100 %": a file missing only its last bytes holds 99 % of its audio.
    held = ("it ends partway through" if fraction is None
            else f"it holds only {min(round(100 * fraction), 99)}% of its audio")
    return InputError(f"The {container} file is truncated: {held}. Please give the complete file, or record "
                      "again.")


def check_size(cfg: AudioConfig, n: int, rate: int, channels: int) -> None:
    """Refuses, from the header or the array's shape alone, a recording of n frames over the budget: cfg's
    limits or the library's ceilings, whichever are lower."""
    max_rate = min(cfg.max_input_rate, MAX_INPUT_RATE)
    max_s = min(cfg.max_input_s, MAX_INPUT_SECONDS)
    if rate > max_rate:
        raise InputError(f"The sample rate is {rate} Hz; please use {max_rate} Hz or less.")
    if channels > MAX_CHANNELS:
        raise InputError(f"The recording has {channels} channels; please use mono or stereo audio "
                         f"(at most {MAX_CHANNELS}).")
    if n > max_s * rate:
        raise InputError(f"The recording is {n / rate:.1f} s long; please keep it under {max_s:g} s "
                         "(one spoken digit).")
    if n * channels > MAX_INPUT_SAMPLES:
        raise InputError(f"The recording is too much audio to process: {channels} channels x {n / rate:.1f} s "
                         f"at {rate} Hz is {n * channels / 1e6:.0f} M samples, over the "
                         f"{MAX_INPUT_SAMPLES / 1e6:.0f} M this demo reads. A spoken digit needs a few seconds: "
                         "please record in mono (or stereo) at 48000 Hz or less.")
    if n < cfg.min_input_s * rate:
        raise InputError(f"The recording is only {1000 * n / rate:.0f} ms long; please record at least "
                         f"{cfg.min_input_s:g} s.")
