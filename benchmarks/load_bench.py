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
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

from mvae.evaluation.render import replace_block
from mvae.store import atomic_write, atomic_write_json
from tests.served_app import CHROMIUM, LAUNCH_ARGS, served_app
from webapp.pool import WAITING

ROOT = Path(__file__).resolve().parents[1]

PEAK_LIMIT_MB = 1200
RETURN_LIMIT_MB = 50
HOSTILE_RATE = 44_101
DIGIT_ONE = [(140 + 0.4 * i, 50 + 9 * i) for i in range(21)]  # the Farsi 1: one downward stroke
RECORDING = "5_theo_1.wav"
TIMEOUT_MS = 300_000  # a failure bound only
# The probe's files: the most the front end's caps let through (8 channels, 384 kHz, 60 s), as FLAC.
FLAC_RATE, FLAC_CHANNELS, FLAC_SECONDS = 384_000, 8, 60
VOICE_REPEATS = 2  # the recording twice: about 0.6 s of voice, which makes the file about 600 KB
HOSTILE_SESSIONS = 20
HEALTH_PERIOD_S = 0.5
HEALTH_TIMEOUT_S = 2.0  # a health check slower than this counts as unanswered
# Alerts a page shows while there is no answer yet: its prompts and the pool's waiting notice.
NOT_ANSWERS = ("Draw a ", "Record or upload a spoken digit", WAITING)


class RssSampler(threading.Thread):
    """The server's resident set (its children included) every `period` seconds, in MB."""

    def __init__(self, pid: int, period: float = 0.05):
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.period = period
        self.samples: list[float] = []
        self.running = threading.Event()
        self.running.set()

    def rss_mb(self) -> float:
        total = self.process.memory_info().rss
        for child in self.process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total / 2**20

    def run(self) -> None:
        while self.running.is_set():
            self.samples.append(self.rss_mb())
            time.sleep(self.period)

    def peak_since(self, start: int) -> float:
        return max(self.samples[start:], default=self.rss_mb())

    def stop(self) -> None:
        self.running.clear()
        self.join()


class HealthProbe(threading.Thread):
    """GET /_stcore/health every `period` seconds: whether each answered 200 within HEALTH_TIMEOUT_S, and how fast."""

    def __init__(self, url: str, period: float = HEALTH_PERIOD_S):
        super().__init__(daemon=True)
        self.url = f"{url}/_stcore/health"
        self.period = period
        self.checks: list[tuple[bool, float]] = []
        self.missed_at: list[float] = []  # seconds after the start of each check that went unanswered
        self.started = time.perf_counter()
        self.running = threading.Event()
        self.running.set()

    def run(self) -> None:
        while self.running.is_set():
            began = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=HEALTH_TIMEOUT_S) as response:
                    ok = response.status == 200
            except OSError:
                ok = False
            took = time.perf_counter() - began
            self.checks.append((ok, took))
            if not ok:
                self.missed_at.append(round(began - self.started, 1))
            time.sleep(max(0.0, self.period - took))

    def stop(self) -> dict:
        self.running.clear()
        self.join()
        return {"checks": len(self.checks), "answered": sum(ok for ok, _ in self.checks),
                "median_s": round(percentile([t for _, t in self.checks], 50), 3),
                "max_s": round(max((t for _, t in self.checks), default=float("nan")), 2),
                "missed_at_s": self.missed_at}


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


# -- one visitor ---------------------------------------------------------------------------------------------------
async def shown(page) -> str:
    """The digit the page shows, or the first message in words (an input refused, or the demo busy)."""
    answer = page.locator("[data-testid='stMetric']").filter(has_text="Predicted digit") \
        .locator("[data-testid='stMetricValue']")
    words = page.locator("[data-testid='stAlertContainer']")
    for text in NOT_ANSWERS:
        words = words.filter(has_not_text=text)
    await answer.or_(words).first.wait_for(timeout=TIMEOUT_MS)
    if await answer.count():
        return await answer.inner_text()
    # The message's own text, without the name of its icon (a ligature in the icon font, text in the page).
    return "message: " + await words.first.locator("[data-testid='stMarkdownContainer']").inner_text()


async def settled(page) -> None:
    await page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for()
    await page.wait_for_timeout(300)


async def upload_page(page, url: str):
    """The Speak page with its file uploader showing; the uploader's input."""
    await page.goto(f"{url}/speak")
    await page.get_by_text("WAV file", exact=True).click()
    chooser = page.locator("[data-testid='stFileUploaderDropzoneInput']")
    await chooser.wait_for(state="attached")
    await settled(page)
    return chooser


async def one_session(browser, url: str, rounds: int, wav: Path, hostile: Path | None) -> dict:
    """One visitor in its own browser context: `rounds` times a drawing and an upload."""
    times, errors, answers = [], [], []
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        for round_ in range(rounds):
            try:
                await page.goto(f"{url}/draw")
                pad = page.locator("canvas.upper-canvas")
                await pad.wait_for()
                await settled(page)
                box = await pad.bounding_box()
                await page.mouse.move(box["x"] + DIGIT_ONE[0][0], box["y"] + DIGIT_ONE[0][1])
                await page.mouse.down()
                for x, y in DIGIT_ONE[1:]:
                    await page.mouse.move(box["x"] + x, box["y"] + y, steps=2)
                start = time.perf_counter()
                await page.mouse.up()
                answers.append(("drawing", await shown(page)))
                times.append(time.perf_counter() - start)

                chooser = await upload_page(page, url)
                upload = hostile if (hostile is not None and round_ == 0) else wav
                start = time.perf_counter()
                await chooser.set_input_files(str(upload))
                answers.append((upload.name, await shown(page)))
                times.append(time.perf_counter() - start)
                if await page.locator("[data-testid='stException']").count():
                    errors.append("a traceback on the page")
            except Exception as exc:  # a hung or broken page is what this counts
                errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    finally:
        await context.close()
    return {"times": times, "errors": errors, "answers": answers}


async def one_upload(browser, url: str, upload: Path, ready) -> dict:
    """One visitor of the hostile mix: opens the Speak page, waits until every visitor is ready, uploads."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    result = {"file": upload.name, "answer": None, "seconds": None, "error": None, "began": None}
    try:
        try:
            chooser = await upload_page(page, url)
        finally:
            await ready.wait()  # even a visitor whose page failed must not keep the others waiting
        start = result["began"] = time.perf_counter()
        await chooser.set_input_files(str(upload))
        result["answer"] = await shown(page)
        result["seconds"] = time.perf_counter() - start
        await settled(page)
        if await page.locator("[data-testid='stException']").count():
            result["error"] = "a traceback on the page"
    except Exception as exc:  # a hung or broken page is what this counts
        result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    finally:
        await context.close()
    return result


async def in_browser(visit, count: int, *args):
    """`count` visitors at once, each a context of one headless Chromium: visit(browser, i, *args)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            return await asyncio.gather(*(visit(browser, i, *args) for i in range(count)))
        finally:
            await browser.close()


async def sessions_at_once(url: str, sessions: int, rounds: int, wav: Path, hostile: Path | None) -> list[dict]:
    """`sessions` visitors at once; the first sends `hostile`."""
    return await in_browser(lambda browser, i: one_session(browser, url, rounds, wav, hostile if i == 0 else None),
                            sessions)


async def uploads_at_once(url: str, uploads: list[Path]) -> list[dict]:
    """One visitor per upload; all choose their file at the same moment."""
    ready = asyncio.Barrier(len(uploads))
    return await in_browser(lambda browser, i: one_upload(browser, url, uploads[i], ready), len(uploads))


# -- measuring ------------------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


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


def main(argv: list[str] | None = None) -> int:
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
        report = json.loads(args.out.read_text())
        return publish(report, args.readme)
    if not CHROMIUM.is_file():
        parser.error(f"Debian's Chromium is not at {CHROMIUM} (apt-get install -y chromium)")
    if not 1 <= args.rounds <= 20 or not all(1 <= n <= 64 for n in args.sessions) \
            or not 0 <= args.hostile_sessions <= 64:
        parser.error("--rounds must be 1-20, each --sessions 1-64 and --hostile-sessions 0-64")
    if not args.sessions and not args.hostile_sessions:
        parser.error("nothing to run: give --sessions or --hostile-sessions")
    wav = Path(args.data_dir) / "fsdd" / "recordings" / RECORDING
    if not wav.is_file():
        parser.error(f"{wav} is missing: pass --data-dir with the prepared datasets")

    with tempfile.TemporaryDirectory() as tmp:
        hostile = Path(tmp) / f"hostile-{args.hostile_rate}Hz.wav"
        hostile.write_bytes(hostile_wav(args.hostile_rate))
        # Made here from the recording and deleted with the folder: nothing derived from the data is kept.
        flacs = [Path(tmp) / "flac-zeros.wav", Path(tmp) / "flac-speech.wav"]
        if args.hostile_sessions:
            flacs[0].write_bytes(hostile_flac())
            flacs[1].write_bytes(hostile_flac(upsampled(wav)))
        with served_app(Path(tmp) / "server.log") as server:
            sampler = RssSampler(server.pid)
            # Load the model once, as the first visitor after a deploy would, before measuring.
            warm = asyncio.run(sessions_at_once(server.url, 1, 1, wav, None))[0]
            if warm["errors"]:
                print(f"the warm-up visit failed: {warm['errors']}", file=sys.stderr)
                return 1
            time.sleep(args.settle)
            sampler.start()
            levels, mix = [], None
            for n in args.sessions:
                level = run_level(server.url, sampler, n, args.rounds, wav, hostile, args.settle)
                levels.append(level)
                print(f"{n} sessions: p50 {level['p50_s']} s, p95 {level['p95_s']} s, errors {len(level['errors'])}, "
                      f"refused {level['refused']}, RSS {level['rss_before_mb']} → peak {level['rss_peak_mb']} → "
                      f"{level['rss_after_mb']} MB; the {args.hostile_rate} Hz upload got {level['hostile_answer']}",
                      flush=True)
            if args.hostile_sessions:
                uploads = [flacs[i % 2] for i in range(args.hostile_sessions)]
                mix = hostile_mix(server.url, sampler, uploads, args.settle)
                print(f"hostile mix of {mix['sessions']}: answered {mix['answered']}, refused {mix['refused']}, "
                      f"errors {mix['errors']}, p50 {mix['p50_s']} s, max {mix['max_s']} s, health {mix['health']}, "
                      f"RSS {mix['rss_before_mb']} → peak {mix['rss_peak_mb']} → {mix['rss_after_mb']} MB",
                      flush=True)
            sampler.stop()
            log_tail = server.log.read_text()[-2000:]
        files = {path.name: path.stat().st_size for path in flacs if path.is_file()}
    given = argv if argv is not None else sys.argv[1:]
    report = {"date": datetime.now().strftime("%Y-%m-%d %H:%M"),
              "machine": f"{platform.machine()}, {psutil.cpu_count()} logical CPUs, load average "
                         f"{os.getloadavg()[0]:.1f} at the end",
              "command": "python -m benchmarks.load_bench " + shlex.join(
                  "DATA_DIR" if i and given[i - 1] == "--data-dir" else a for i, a in enumerate(given)),
              "rounds": args.rounds, "hostile_rate": args.hostile_rate, "levels": levels,
              "hostile_files": files, "hostile_mix": mix, "server_log_tail": log_tail}
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
