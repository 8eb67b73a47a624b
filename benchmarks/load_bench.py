"""Concurrent visitors in real Chromium sessions against one `streamlit run app.py` on 127.0.0.1.

Ordinary levels. For each number of sessions (4, 8 and 12 by default) the sessions run at once, each in its
own browser context of one headless Chromium. Each session does `--rounds` rounds of: draw a digit with the
mouse on the Draw page, then upload a spoken digit (a real FSDD recording) on the Speak page; the time to
result is from the mouse-up or the file choice until the predicted digit, or a message in words, is shown.
One session in each round uploads a hostile WAV instead: 9 KB at 44,101 Hz, a rate whose exact resampling
ratio is costly; it must be answered (a digit or a message in words) like any other.

The hostile mix. `--hostile-sessions` sessions (20 by default) open the Speak page, wait for one another,
and then all upload at once an 8-channel, 384 kHz, 60 s FLAC named `.wav`: every other one 200 KB of
zeros, the rest about 600 KB holding a real FSDD recording upsampled (both made here at run time, never
stored). Each session must be answered or refused in words (a digit, the front end's message, or the
app's "busy"), the server's health check (/_stcore/health, polled every 0.5 s) must keep answering, the
server's memory must stay under 1.2 GB and come back within 50 MB of where it was before the mix.

The server's resident memory (its children included) is sampled every 50 ms by a thread (psutil): before
the first session, at the peak, and after the last session has closed and the server has had `--settle`
seconds to give memory back. Nothing leaves the machine: the server listens on 127.0.0.1 and the browser
is given no other address.

    python -m benchmarks.load_bench --data-dir DATA_DIR                     # the levels, then the mix
    python -m benchmarks.load_bench --data-dir DATA_DIR --sessions 4        # one level, then the mix
    python -m benchmarks.load_bench --data-dir DATA_DIR --sessions --readme README.md   # the mix alone
    python -m benchmarks.load_bench --render --readme README.md    # the table of the stored results again

(from the repository's root, so that `tests` imports as a package).

Writes the results as JSON (`--out`, default benchmarks/load_results.json), prints a Markdown table and,
with `--readme FILE`, puts that table into FILE's <!-- load:start --> ... <!-- load:end --> block
(`--render` does only that, from the stored results).
Exit status 1 when any target is missed: an error, a peak over 1.2 GB, memory not back within 50 MB, or
(in the mix) a health check unanswered.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

from benchmarks.visitors import (
    HEALTH_PERIOD_S,
    HEALTH_TIMEOUT_S,
    HealthProbe,
    RssSampler,
    percentile,
    sessions_at_once,
    uploads_at_once,
)
from mvae import registry
from mvae.data.sources import recordings_folder
from mvae.evaluation.render import replace_block
from mvae.store import atomic_write, atomic_write_json
from tests.served_app import CHROMIUM, served_app

ROOT = Path(__file__).resolve().parents[1]

PEAK_LIMIT_MB = 1200
RETURN_LIMIT_MB = 50
HOSTILE_RATE = 44_101
RECORDING = "5_theo_1.wav"
# The probe's files: the most the front end's caps let through (8 channels, 384 kHz, 60 s), as FLAC.
FLAC_RATE, FLAC_CHANNELS, FLAC_SECONDS = 384_000, 8, 60
VOICE_REPEATS = 2  # the recording twice: about 0.6 s of voice, which makes the file about 600 KB
HOSTILE_SESSIONS = 20


# -- inputs -------------------------------------------------------------------------------------------------------
def hostile_wav(rate: int = HOSTILE_RATE) -> bytes:
    """9 KB of a tone at 44,101 Hz: a rate whose exact ratio to 8 kHz has a huge numerator."""
    t = np.arange(4_500) / rate
    buf = io.BytesIO()
    sf.write(buf, 0.5 * np.sin(2 * np.pi * 440 * t), rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def hostile_flac(voice: np.ndarray | None = None, seconds: int = FLAC_SECONDS) -> bytes:
    """An 8-channel 384 kHz FLAC of `seconds`: `voice` (mono at 384 kHz) on every channel at the start, then
    zeros. Written a second at a time, so that making it costs a few MB here, not the 1.5 GB it decodes to."""
    buf = io.BytesIO()
    block = np.zeros((FLAC_RATE, FLAC_CHANNELS), np.float32)
    with sf.SoundFile(buf, "w", FLAC_RATE, FLAC_CHANNELS, subtype="PCM_16", format="FLAC") as out:
        for second in range(seconds):
            block[:] = 0
            if voice is not None:
                part = voice[second * FLAC_RATE:(second + 1) * FLAC_RATE]
                block[:len(part)] = part[:, None]
            out.write(block)
    return buf.getvalue()


def upsampled(path: Path, repeats: int = VOICE_REPEATS) -> np.ndarray:
    """A recording at FLAC_RATE (linear interpolation: only the content's size and shape matter), `repeats` times."""
    wave, rate = sf.read(path, dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    t = np.arange(int(len(wave) * FLAC_RATE / rate)) * rate / FLAC_RATE
    return np.tile(np.interp(t, np.arange(len(wave)), wave).astype(np.float32), repeats)


# -- measuring ------------------------------------------------------------------------------------------------------
def run_level(url: str, sampler: RssSampler, sessions: int, rounds: int, wav: Path, hostile: Path,
              settle_s: float) -> dict:
    before = sampler.rss_mb()
    mark = len(sampler.samples)
    started = time.perf_counter()
    results = asyncio.run(sessions_at_once(url, sessions, rounds, wav, hostile))
    wall = time.perf_counter() - started
    peak = sampler.peak_since(mark)
    time.sleep(settle_s)
    after = sampler.rss_mb()
    times = [t for r in results for t in r["times"]]
    errors = [e for r in results for e in r["errors"]]
    hostile_answers = [a for r in results for name, a in r["answers"] if name == hostile.name]
    refused = sum(a.startswith("message: ") for r in results for name, a in r["answers"] if name != hostile.name)
    return {"sessions": sessions, "rounds": rounds, "results": len(times), "wall_s": round(wall, 1),
            "p50_s": round(percentile(times, 50), 2), "p95_s": round(percentile(times, 95), 2),
            "max_s": round(max(times, default=float("nan")), 2), "errors": errors, "refused": refused,
            "hostile_answer": hostile_answers, "rss_before_mb": round(before), "rss_peak_mb": round(peak),
            "rss_after_mb": round(after),
            "met": {"no_errors": not errors, "peak": peak <= PEAK_LIMIT_MB,
                    "returned": after - before <= RETURN_LIMIT_MB}}


def hostile_mix(url: str, sampler: RssSampler, uploads: list[Path], settle_s: float) -> dict:
    """Every upload at once, one visitor each, with the server's memory and health watched throughout."""
    before = sampler.rss_mb()
    mark = len(sampler.samples)
    health = HealthProbe(url)
    health.start()
    started = time.perf_counter()
    results = asyncio.run(uploads_at_once(url, uploads))
    wall = time.perf_counter() - started
    peak = sampler.peak_since(mark)
    time.sleep(settle_s)
    after = sampler.rss_mb()
    checks = health.stop()
    times = [r["seconds"] for r in results if r["seconds"] is not None]
    answered = [r["answer"] for r in results if r["answer"] and not r["answer"].startswith("message: ")]
    refusals = [r["answer"].removeprefix("message: ") for r in results
                if r["answer"] and r["answer"].startswith("message: ")]
    errors = [f"{r['file']}: {r['error']}" for r in results if r["error"]]
    began = [r["began"] for r in results if r["began"] is not None]
    # The health checks' times count from the probe's start; so do these, to tell page loads from uploads.
    uploads_s = [round(min(began) - health.started, 1), round(max(began) - health.started, 1)] if began else None
    return {"sessions": len(uploads), "files": {name: sum(r["file"] == name for r in results)
                                                for name in sorted({u.name for u in uploads})},
            "answered": len(answered), "refused": len(refusals), "errors": errors,
            "answers": sorted(set(answered)), "refusals": sorted(set(refusals)), "wall_s": round(wall, 1),
            "p50_s": round(percentile(times, 50), 2), "max_s": round(max(times, default=float("nan")), 2),
            "health": checks, "uploads_at_s": uploads_s, "rss_before_mb": round(before), "rss_peak_mb": round(peak),
            "rss_after_mb": round(after),
            "met": {"answered_or_refused": not errors and len(answered) + len(refusals) == len(uploads),
                    "health": checks["checks"] > 0 and checks["answered"] == checks["checks"],
                    "peak": peak <= PEAK_LIMIT_MB, "returned": after - before <= RETURN_LIMIT_MB}}


def missed(level: dict) -> str:
    names = ", ".join(k for k, v in level["met"].items() if not v)
    return f"**no** ({names})" if names else "yes"


def markdown(report: dict) -> str:
    lines = [f"Load ({report['date']}, {report['machine']})"]
    if report["levels"]:
        lines += ["", f"Ordinary visitors: {report['rounds']} rounds of a drawing and an upload per session, one "
                  f"upload in each level a {report['hostile_rate']:,} Hz WAV.", "",
                  "| sessions | results | p50 | p95 | errors | refused in words | RSS before | RSS peak | RSS after "
                  "| met |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for level in report["levels"]:
            lines.append(f"| {level['sessions']} | {level['results']} | {level['p50_s']:.2f} s | "
                         f"{level['p95_s']:.2f} s | {len(level['errors'])} | {level.get('refused', 0)} | "
                         f"{level['rss_before_mb']} MB | {level['rss_peak_mb']} MB | {level['rss_after_mb']} MB | "
                         f"{missed(level)} |")
    mix = report.get("hostile_mix")
    if mix:
        files = ", ".join(f"{count} × {name} ({report['hostile_files'][name] / 1000:.0f} KB)"
                          for name, count in mix["files"].items())
        health = mix["health"]
        lines += ["", f"Hostile mix: {mix['sessions']} sessions upload at once an 8-channel 384 kHz 60 s FLAC named "
                  f".wav ({files}).", "",
                  "| sessions | answered | refused in words | errors | p50 | max | health checks answered | "
                  "RSS before | RSS peak | RSS after | met |", "|---|---|---|---|---|---|---|---|---|---|---|",
                  f"| {mix['sessions']} | {mix['answered']} | {mix['refused']} | {len(mix['errors'])} | "
                  f"{mix['p50_s']:.2f} s | {mix['max_s']:.2f} s | {health['answered']} of {health['checks']} "
                  f"(median {1000 * health['median_s']:.0f} ms, slowest {health['max_s']:.2f} s) | "
                  f"{mix['rss_before_mb']} MB | {mix['rss_peak_mb']} MB | "
                  f"{mix['rss_after_mb']} MB | {missed(mix)} |", ""]
        lines += [f"Refused with: {'; '.join(f'“{m}”' for m in mix['refusals']) or 'none'}."]
        if health["missed_at_s"]:
            at = ", ".join(f"{t:g}" for t in health["missed_at_s"])
            uploads = mix.get("uploads_at_s")
            when = (f" (the {mix['sessions']} browser contexts open the Speak page first; the uploads went out "
                    f"{uploads[0]:g}–{uploads[1]:g} s after it began)") if uploads else ""
            lines += ["", f"Health checks unanswered within {HEALTH_TIMEOUT_S:g} s at {at} s after the mix began"
                      f"{when}."]
    lines += ["", f"Targets: no errors (every visitor answered or told why in words), peak RSS ≤ {PEAK_LIMIT_MB} MB, "
              f"RSS after within {RETURN_LIMIT_MB} MB of before; in the mix every health check answered within "
              f"{HEALTH_TIMEOUT_S:g} s (one every {HEALTH_PERIOD_S:g} s). p50 is the median time from the upload or "
              f"the mouse-up to the answer. Command: `{report['command']}`"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command's arguments; a measuring run also checks that Chromium and the recording are there."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("MVAE_DATA_DIR", "data"),
                        help="the prepared datasets; the uploads are FSDD recordings from it")
    parser.add_argument("--sessions", type=int, nargs="*", default=[4, 8, 12],
                        help="concurrent sessions per ordinary level (none: the hostile mix alone)")
    parser.add_argument("--rounds", type=int, default=2, help="drawing + upload rounds per session (bounded)")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after a level before RSS is read again")
    parser.add_argument("--hostile-rate", type=int, default=HOSTILE_RATE,
                        help="the sample rate of the hostile upload (8000 makes it an ordinary one)")
    parser.add_argument("--hostile-sessions", type=int, default=HOSTILE_SESSIONS,
                        help="sessions in the hostile mix of 8-channel 384 kHz FLACs named .wav (0: no mix)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "load_results.json")
    parser.add_argument("--readme", type=Path,
                        help="also put the table into this Markdown file's <!-- load:start/end --> block")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: print (and with --readme write) the table of the results in --out")
    args = parser.parse_args(argv)
    if args.render:
        return args
    if not CHROMIUM.is_file():
        parser.error(f"Debian's Chromium is not at {CHROMIUM} (apt-get install -y chromium)")
    if not 1 <= args.rounds <= 20 or not all(1 <= n <= 64 for n in args.sessions) \
            or not 0 <= args.hostile_sessions <= 64:
        parser.error("--rounds must be 1-20, each --sessions 1-64 and --hostile-sessions 0-64")
    if not args.sessions and not args.hostile_sessions:
        parser.error("nothing to run: give --sessions or --hostile-sessions")
    args.wav = recordings_folder(args.data_dir, registry.names(registry.SPEECH)[0]) / RECORDING
    if not args.wav.is_file():
        parser.error(f"{args.wav} is missing: pass --data-dir with the prepared datasets")
    return args


def ordinary_levels(url: str, sampler: RssSampler, args, hostile: Path) -> list[dict]:
    """Each level of ordinary visitors in turn, each printed as it ends."""
    levels = []
    for n in args.sessions:
        level = run_level(url, sampler, n, args.rounds, args.wav, hostile, args.settle)
        levels.append(level)
        print(f"{n} sessions: p50 {level['p50_s']} s, p95 {level['p95_s']} s, errors {len(level['errors'])}, "
              f"refused {level['refused']}, RSS {level['rss_before_mb']} → peak {level['rss_peak_mb']} → "
              f"{level['rss_after_mb']} MB; the {args.hostile_rate} Hz upload got {level['hostile_answer']}",
              flush=True)
    return levels


def the_mix(url: str, sampler: RssSampler, args, flacs: list[Path]) -> dict:
    """The hostile mix, the two FLACs taken in turn by its sessions; printed when it ends."""
    mix = hostile_mix(url, sampler, [flacs[i % 2] for i in range(args.hostile_sessions)], args.settle)
    print(f"hostile mix of {mix['sessions']}: answered {mix['answered']}, refused {mix['refused']}, "
          f"errors {mix['errors']}, p50 {mix['p50_s']} s, max {mix['max_s']} s, health {mix['health']}, "
          f"RSS {mix['rss_before_mb']} → peak {mix['rss_peak_mb']} → {mix['rss_after_mb']} MB", flush=True)
    return mix


def measure(args, tmp: Path) -> dict | None:
    """The levels, then the mix, against one served app; None when the warm-up visit fails."""
    hostile = tmp / f"hostile-{args.hostile_rate}Hz.wav"
    hostile.write_bytes(hostile_wav(args.hostile_rate))
    # Made here from the recording and deleted with the folder: nothing derived from the data is kept.
    flacs = [tmp / "flac-zeros.wav", tmp / "flac-speech.wav"]
    if args.hostile_sessions:
        flacs[0].write_bytes(hostile_flac())
        flacs[1].write_bytes(hostile_flac(upsampled(args.wav)))
    with served_app(tmp / "server.log") as server:
        sampler = RssSampler(server.pid)
        # Load the model once, as the first visitor after a deploy would, before measuring.
        warm = asyncio.run(sessions_at_once(server.url, 1, 1, args.wav, None))[0]
        if warm["errors"]:
            print(f"the warm-up visit failed: {warm['errors']}", file=sys.stderr)
            return None
        time.sleep(args.settle)
        sampler.start()
        levels = ordinary_levels(server.url, sampler, args, hostile)
        mix = the_mix(server.url, sampler, args, flacs) if args.hostile_sessions else None
        sampler.stop()
        log_tail = server.log.read_text()[-2000:]
    return {"levels": levels, "hostile_files": {path.name: path.stat().st_size for path in flacs if path.is_file()},
            "hostile_mix": mix, "server_log_tail": log_tail}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        return publish(json.loads(args.out.read_text()), args.readme)
    with tempfile.TemporaryDirectory() as tmp:
        measured = measure(args, Path(tmp))
    if measured is None:
        return 1
    given = argv if argv is not None else sys.argv[1:]
    report = {"date": datetime.now().strftime("%Y-%m-%d %H:%M"),
              "machine": f"{platform.machine()}, {psutil.cpu_count()} logical CPUs, load average "
                         f"{os.getloadavg()[0]:.1f} at the end",
              "command": "python -m benchmarks.load_bench " + shlex.join(
                  "DATA_DIR" if i and given[i - 1] == "--data-dir" else a for i, a in enumerate(given)),
              "rounds": args.rounds, "hostile_rate": args.hostile_rate, **measured}
    atomic_write_json(args.out, report)
    return publish(report, args.readme)


def publish(report: dict, readme: Path | None) -> int:
    """Prints the table (into `readme`'s load block too, when given); 1 when a target was missed."""
    table = markdown(report)
    print(table)
    if readme:
        atomic_write(readme, replace_block(readme.read_text(), "load", table).encode())
    runs = report["levels"] + ([report["hostile_mix"]] if report.get("hostile_mix") else [])
    return 0 if all(all(run["met"].values()) for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
