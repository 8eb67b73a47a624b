"""Concurrent visitors in real Chromium sessions against one `streamlit run app.py` on 127.0.0.1.

For each number of sessions (4, 8 and 12 by default) the sessions run at once, each in its own browser
context of one headless Chromium. Each session does `--rounds` rounds of: draw a digit with the mouse on the
Draw page, then upload a spoken digit (a real FSDD recording) on the Speak page; the time to result is from
the mouse-up or the file choice until the predicted digit is shown. One session in each round uploads a
hostile WAV instead: 9 KB at 44,101 Hz, a rate whose exact resampling ratio is costly; it must be answered
(a digit or a message in words) like any other.

The server's resident memory is sampled every 50 ms by a thread (psutil): before the first session, at the
peak, and after the last session has closed and the server has had `--settle` seconds to give memory back.
Nothing leaves the machine: the server listens on 127.0.0.1 and the browser is given no other address.

    python -m benchmarks.load_bench --data-dir DATA_DIR                # 4, 8 and 12 sessions, 2 rounds each
    python -m benchmarks.load_bench --data-dir DATA_DIR --sessions 4   # one size only

(from the repository's root, so that `tests` imports as a package).

Writes the results as JSON (`--out`, default benchmarks/load_results.json) and prints a Markdown table.
Exit status 1 when any target is missed: an error, a peak over 1.2 GB, or memory not back within 50 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

from mvae.store import atomic_write_json
from tests.served_app import CHROMIUM, LAUNCH_ARGS, served_app

ROOT = Path(__file__).resolve().parents[1]

PEAK_LIMIT_MB = 1200
RETURN_LIMIT_MB = 50
HOSTILE_RATE = 44_101
DIGIT_ONE = [(140 + 0.4 * i, 50 + 9 * i) for i in range(21)]  # the Farsi 1: one downward stroke
RECORDING = "5_theo_1.wav"
TIMEOUT_MS = 300_000  # a failure bound only


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


def hostile_wav(rate: int = HOSTILE_RATE) -> bytes:
    """9 KB of a tone at 44,101 Hz: a rate whose exact ratio to 8 kHz has a huge numerator."""
    t = np.arange(4_500) / rate
    buf = io.BytesIO()
    sf.write(buf, 0.5 * np.sin(2 * np.pi * 440 * t), rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


async def shown(page) -> str:
    """The digit the page shows, or the first message in words (an input the model refused)."""
    answer = page.locator("[data-testid='stMetric']").filter(has_text="Predicted digit") \
        .locator("[data-testid='stMetricValue']")
    words = page.locator("[data-testid='stAlertContainer']").filter(has_text="Hz")
    await answer.or_(words).first.wait_for(timeout=TIMEOUT_MS)
    return await answer.inner_text() if await answer.count() else "message: " + await words.first.inner_text()


async def settled(page) -> None:
    await page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for()
    await page.wait_for_timeout(300)


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

                await page.goto(f"{url}/speak")
                await page.get_by_text("WAV file", exact=True).click()
                chooser = page.locator("[data-testid='stFileUploaderDropzoneInput']")
                await chooser.wait_for(state="attached")
                await settled(page)
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


async def sessions_at_once(url: str, sessions: int, rounds: int, wav: Path, hostile: Path | None) -> list[dict]:
    """`sessions` visitors at once, each a context of one headless Chromium; the first sends `hostile`."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            return await asyncio.gather(*(one_session(browser, url, rounds, wav, hostile if i == 0 else None)
                                          for i in range(sessions)))
        finally:
            await browser.close()


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
    return {"sessions": sessions, "rounds": rounds, "results": len(times), "wall_s": round(wall, 1),
            "p50_s": round(percentile(times, 50), 2), "p95_s": round(percentile(times, 95), 2),
            "max_s": round(max(times, default=float("nan")), 2), "errors": errors,
            "hostile_answer": hostile_answers, "rss_before_mb": round(before), "rss_peak_mb": round(peak),
            "rss_after_mb": round(after),
            "met": {"no_errors": not errors, "peak": peak <= PEAK_LIMIT_MB,
                    "returned": after - before <= RETURN_LIMIT_MB}}


def markdown(report: dict) -> str:
    lines = [f"Load ({report['date']}, {report['machine']}; {report['rounds']} rounds of a drawing and an upload "
             f"per session, one upload in each level a {report['hostile_rate']:,} Hz WAV)", "",
             "| sessions | results | p50 | p95 | errors | RSS before | RSS peak | RSS after | met |",
             "|---|---|---|---|---|---|---|---|---|"]
    for level in report["levels"]:
        missed = ", ".join(k for k, v in level["met"].items() if not v)
        met = f"**no** ({missed})" if missed else "yes"
        lines.append(f"| {level['sessions']} | {level['results']} | {level['p50_s']:.2f} s | {level['p95_s']:.2f} s | "
                     f"{len(level['errors'])} | {level['rss_before_mb']} MB | {level['rss_peak_mb']} MB | "
                     f"{level['rss_after_mb']} MB | {met} |")
    lines += ["", f"Targets: no errors, peak RSS ≤ {PEAK_LIMIT_MB} MB, RSS after within {RETURN_LIMIT_MB} MB of "
              "before. "
              f"Command: `{report['command']}`"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("MVAE_DATA_DIR", "data"),
                        help="the prepared datasets; the uploads are FSDD recordings from it")
    parser.add_argument("--sessions", type=int, nargs="+", default=[4, 8, 12], help="concurrent sessions per level")
    parser.add_argument("--rounds", type=int, default=2, help="drawing + upload rounds per session (bounded)")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after a level before RSS is read again")
    parser.add_argument("--hostile-rate", type=int, default=HOSTILE_RATE,
                        help="the sample rate of the hostile upload (8000 makes it an ordinary one)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "load_results.json")
    args = parser.parse_args(argv)
    if not CHROMIUM.is_file():
        parser.error(f"Debian's Chromium is not at {CHROMIUM} (apt-get install -y chromium)")
    if not 1 <= args.rounds <= 20 or not all(1 <= n <= 64 for n in args.sessions):
        parser.error("--rounds must be 1-20 and each --sessions 1-64")
    wav = Path(args.data_dir) / "fsdd" / "recordings" / RECORDING
    if not wav.is_file():
        parser.error(f"{wav} is missing: pass --data-dir with the prepared datasets")

    with tempfile.TemporaryDirectory() as tmp:
        hostile = Path(tmp) / f"hostile-{args.hostile_rate}Hz.wav"
        hostile.write_bytes(hostile_wav(args.hostile_rate))
        with served_app(Path(tmp) / "server.log") as server:
            sampler = RssSampler(server.pid)
            # Load the model once, as the first visitor after a deploy would, before measuring.
            warm = asyncio.run(sessions_at_once(server.url, 1, 1, wav, None))[0]
            if warm["errors"]:
                print(f"the warm-up visit failed: {warm['errors']}", file=sys.stderr)
                return 1
            time.sleep(args.settle)
            sampler.start()
            levels = []
            for n in args.sessions:
                level = run_level(server.url, sampler, n, args.rounds, wav, hostile, args.settle)
                levels.append(level)
                print(f"{n} sessions: p50 {level['p50_s']} s, p95 {level['p95_s']} s, errors {len(level['errors'])}, "
                      f"RSS {level['rss_before_mb']} → peak {level['rss_peak_mb']} → {level['rss_after_mb']} MB; "
                      f"the {args.hostile_rate} Hz upload got {level['hostile_answer']}", flush=True)
            sampler.stop()
            log_tail = server.log.read_text()[-2000:]
    report = {"date": datetime.now().strftime("%Y-%m-%d %H:%M"),
              "machine": f"{platform.machine()}, {psutil.cpu_count()} logical CPUs, load average "
                         f"{os.getloadavg()[0]:.1f} at the end",
              "command": "python -m benchmarks.load_bench " + " ".join(argv if argv is not None else sys.argv[1:]),
              "rounds": args.rounds, "hostile_rate": args.hostile_rate, "levels": levels, "server_log_tail": log_tail}
    atomic_write_json(args.out, report)
    print(markdown(report))
    return 0 if all(all(level["met"].values()) for level in levels) else 1


if __name__ == "__main__":
    sys.exit(main())
