"""Visitors of a served app in headless Chromium, and the watchers of its server: its memory and its health.

A visitor draws a digit with the mouse on the Draw page or uploads a file on the Speak page, and waits for the
predicted digit or a message in words; `benchmarks.load_bench` runs many at once and reports what they saw.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil

from tests.served_app import CHROMIUM, LAUNCH_ARGS
from webapp.pool import WAITING

DIGIT_ONE = [(140 + 0.4 * i, 50 + 9 * i) for i in range(21)]  # the Farsi 1: one downward stroke
TIMEOUT_MS = 300_000  # a failure bound only
HEALTH_PERIOD_S = 0.5
HEALTH_TIMEOUT_S = 2.0  # a health check slower than this counts as unanswered
# Alerts a page shows while there is no answer yet: its prompts and the pool's waiting notice.
NOT_ANSWERS = ("Draw a ", "Record or upload a spoken digit", WAITING)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


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
