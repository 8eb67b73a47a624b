"""The server's one bounded pool for heavy work (webapp/pool.py): it bounds how many pieces of heavy work run
at once across sessions, a request over it waits a bounded time and is then refused in words, every model
call the pages make goes through it, and the Speak page says what a FLAC named .wav is instead of decoding it.
"""

from __future__ import annotations

import io
import threading
import time
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

import mvae
from tests.helpers import open_page, tone
from webapp import pool, state
from webapp.pool import Busy, HeavyPool


# -- the pool itself -----------------------------------------------------------------------------------------
def test_the_pool_never_runs_more_than_its_slots_at_once():
    slots, callers = 2, 10
    heavy = HeavyPool(slots=slots, wait_s=30)
    lock, now, most = threading.Lock(), [0], [0]

    def work():
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.05)
        with lock:
            now[0] -= 1

    start = threading.Barrier(callers)
    threads = [threading.Thread(target=lambda: (start.wait(10), heavy.call(work))) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert most[0] == slots, f"{most[0]} ran at once through a pool of {slots}"
    assert heavy.running == 0 and heavy.waiting == 0


@contextmanager
def held(heavy: HeavyPool, slots: int = 1):
    """Every slot of `heavy` taken by other threads until the block ends."""
    taken, leave = threading.Barrier(slots + 1), threading.Event()

    def hold():
        with heavy.slot():
            taken.wait(10)
            leave.wait(60)

    threads = [threading.Thread(target=hold) for _ in range(slots)]
    for thread in threads:
        thread.start()
    taken.wait(10)
    try:
        yield leave
    finally:
        leave.set()
        for thread in threads:
            thread.join(10)


def test_a_request_over_the_pool_waits_its_bound_with_a_message_then_is_refused_in_words():
    heavy = HeavyPool(slots=1, wait_s=0.6, poll_s=0.05)
    told = []
    with held(heavy):
        began = time.monotonic()
        with pytest.raises(Busy) as refused:
            heavy.call(lambda: pytest.fail("ran without a slot"), on_wait=told.append)
        waited = time.monotonic() - began
    assert 0.5 <= waited < 3, waited
    assert str(refused.value) == pool.BUSY and "try again in a few seconds" in pool.BUSY
    assert len(told) >= 3 and told == sorted(told, reverse=True) and told[0] <= 0.6, "the wait counts down"
    assert heavy.waiting == 0


def test_a_waiting_request_runs_as_soon_as_a_slot_is_free():
    heavy = HeavyPool(slots=1, wait_s=20, poll_s=0.05)
    with held(heavy) as leave:
        threading.Timer(0.3, leave.set).start()
        began = time.monotonic()
        assert heavy.call(lambda: "ran") == "ran"
    assert time.monotonic() - began < 5


def test_when_the_queue_is_full_a_request_is_refused_at_once_and_holds_nothing():
    heavy = HeavyPool(slots=1, wait_s=20, max_waiting=1, poll_s=0.05)
    with held(heavy):
        waiter = threading.Thread(target=lambda: pytest.raises(Busy, heavy.call, lambda: None))
        heavy.wait_s = 1.0  # the waiter gives up a second from now
        waiter.start()
        while heavy.waiting < 1:
            time.sleep(0.01)
        began = time.monotonic()
        with pytest.raises(Busy):
            heavy.call(lambda: None)
        assert time.monotonic() - began < 0.5, "a full queue must refuse at once, not wait"
        waiter.join(10)
    assert heavy.waiting == 0 and heavy.running == 0


def test_a_slot_holder_may_call_through_the_pool_again_without_a_second_slot():
    heavy = HeavyPool(slots=1, wait_s=0.2)
    with heavy.slot():
        assert heavy.call(lambda: heavy.call(lambda: "nested")) == "nested"
        assert heavy.running == 1
    assert heavy.running == 0
    with heavy.slot():  # the slot came back
        pass


def test_a_failing_piece_of_work_gives_its_slot_back():
    heavy = HeavyPool(slots=1, wait_s=0.2)
    with pytest.raises(ZeroDivisionError):
        heavy.call(lambda: 1 / 0)
    assert heavy.call(lambda: "free") == "free"


def test_the_server_pool_is_sized_from_the_cores():
    assert 1 <= pool.HEAVY_SLOTS <= min(pool.MAX_HEAVY_SLOTS, pool.cpu_count())
    assert pool.POOL.slots == pool.HEAVY_SLOTS and pool.POOL.wait_s == pool.WAIT_S


# -- every model call goes through it --------------------------------------------------------------------------
def test_every_public_member_of_the_pipeline_is_sorted_into_heavy_or_light(shipped_pipeline):
    members = {name for name in [*dir(mvae.Pipeline), *vars(shipped_pipeline)] if not name.startswith("_")}
    unsorted = members - state.PooledPipeline.HEAVY - state.PooledPipeline.LIGHT
    assert not unsorted, f"say whether these take a slot of the pool: {sorted(unsorted)}"
    assert not state.PooledPipeline.HEAVY & state.PooledPipeline.LIGHT


@pytest.fixture
def one_slot(monkeypatch):
    """The app's pool swapped for one slot and a one-second wait."""
    heavy = HeavyPool(slots=1, wait_s=1.0, poll_s=0.05)
    monkeypatch.setattr(state, "POOL", heavy)
    return heavy


def test_model_calls_and_griffin_lim_run_in_a_slot(shipped_pipeline, one_slot):
    seen = {}

    def spy(name, method):
        def run(*args, **kwargs):
            seen[name] = (one_slot.running, threading.current_thread().name.startswith("mvae-heavy"))
            return method(*args, **kwargs)
        return run

    class Spied:
        def __getattr__(self, name):
            return spy(name, getattr(shipped_pipeline, name))

    pipe = state.PooledPipeline(Spied())
    decoded = pipe.generate(3, n=2, seed=0)
    # On one of the pool's long-lived workers: memory that a visitor's own thread freed would stay with it.
    assert seen == {"generate": (1, True)}, "generate ran outside the pool"
    assert one_slot.running == 0
    griffin_lim = decoded.front_end.waveform_from_log_mel
    decoded.front_end = SimpleNamespace(cfg=decoded.front_end.cfg,
                                        waveform_from_log_mel=spy("griffin-lim", griffin_lim))
    assert len(decoded.speech) == 2 and seen["griffin-lim"] == (1, True), "Griffin-Lim ran outside the pool"
    with held(one_slot):
        with pytest.raises(Busy):
            pipe.decode(np.zeros(shipped_pipeline.latent_dim, np.float32))


# -- the pages -----------------------------------------------------------------------------------------------
def wav(seconds: float = 0.6, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(5, np.random.default_rng(0), rate, seconds), rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def alerts(at) -> list[str]:
    return [m.value for m in (*at.info, *at.warning, *at.error)]


def upload(at, data: bytes, name: str = "digit.wav") -> None:
    at.segmented_control(key="speak-source").set_value("upload")
    at.run()
    at.file_uploader(key="speak-upload").set_value((name, data, "audio/wav"))
    at.run()


def test_a_visitor_over_the_pool_is_told_the_demo_is_busy_not_shown_a_traceback(one_slot):
    at = open_page("speak")
    with held(one_slot):
        upload(at, wav())
    assert not at.exception, [e.value for e in at.exception]
    assert pool.BUSY in [w.value for w in at.warning], alerts(at)
    assert not [m for m in at.metric if m.label == "Predicted digit"]
    assert not any(pool.WAITING in m for m in alerts(at)), "the waiting notice outlived the wait"


def test_a_visitor_who_waits_for_a_slot_gets_the_answer(one_slot):
    one_slot.wait_s = 60
    at = open_page("speak")
    with held(one_slot) as leave:
        threading.Timer(1.0, leave.set).start()
        upload(at, wav())
    assert not at.exception and pool.BUSY not in alerts(at)
    assert [m for m in at.metric if m.label == "Predicted digit"], alerts(at)
    assert not any(pool.WAITING in m for m in alerts(at)), "the waiting notice outlived the wait"


@pytest.mark.parametrize("name", ["digit.exe", "digit", "digit.wav.flac"])
def test_an_upload_is_judged_by_its_bytes_not_its_name(name):
    """A browser can send any name; Streamlit's own check of it would show its generic error box."""
    at = open_page("speak")
    upload(at, wav(), name=name)
    assert not at.exception and state.APOLOGY not in alerts(at), alerts(at)
    assert [m for m in at.metric if m.label == "Predicted digit"], alerts(at)
    upload(at, b"MZ" + bytes(4000), name=name)
    assert not at.exception and state.APOLOGY not in alerts(at)
    assert not [m for m in at.metric if m.label == "Predicted digit"] and at.info, "refused in words"



@pytest.mark.timeout(120)
@pytest.mark.parametrize("content", ["zeros", "a tone"])
def test_the_speak_page_refuses_the_probes_flac_named_wav_in_the_front_ends_words(shipped_pipeline, content):
    """The probe's upload: an 8-channel 384 kHz 60 s FLAC named .wav, which once cost the server 1 GB each."""
    from benchmarks.load_bench import FLAC_RATE, hostile_flac

    voice = tone(5, np.random.default_rng(0), FLAC_RATE, 0.5) if content == "a tone" else None
    data = hostile_flac(voice)
    assert len(data) < 10 * 2**20
    with pytest.raises(mvae.InputError) as refused:
        shipped_pipeline.predict({"speech": data})
    at = open_page("speak")
    upload(at, data, name="digit.wav")
    assert not at.exception and state.APOLOGY not in alerts(at), alerts(at)
    assert str(refused.value) in [m.value for m in at.info], alerts(at)
    assert not [m for m in at.metric if m.label == "Predicted digit"]


# -- a served app under the probe's hostile mix, cut short ---------------------------------------------------
MIX_SESSIONS = 4


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_served_app_answers_the_hostile_mix_in_words_within_its_memory_and_stays_healthy(tmp_path):
    """A fast version of `python -m benchmarks.load_bench`'s hostile mix: four sessions upload 8-channel
    384 kHz FLACs named .wav at once (zeros, and a tone), in real Chromium against `streamlit run app.py`."""
    import asyncio

    from benchmarks import load_bench as bench
    from tests.served_app import CHROMIUM, served_app, unavailable

    pytest.importorskip("playwright", reason="playwright is not installed (pip install -r requirements-dev.txt)")
    if not CHROMIUM.is_file():
        unavailable(f"Debian's Chromium is not at {CHROMIUM} (apt-get install -y chromium)")
    ordinary, zeros, voiced = tmp_path / "ordinary.wav", tmp_path / "zeros.wav", tmp_path / "voiced.wav"
    ordinary.write_bytes(wav())
    zeros.write_bytes(bench.hostile_flac())
    voiced.write_bytes(bench.hostile_flac(tone(5, np.random.default_rng(0), bench.FLAC_RATE, 0.5)))
    with served_app(tmp_path / "server.log") as server:
        warm = asyncio.run(bench.uploads_at_once(server.url, [ordinary]))[0]  # loads the model
        assert warm["answer"] and not warm["error"], warm
        sampler = bench.RssSampler(server.pid)
        sampler.start()
        try:
            mix = bench.hostile_mix(server.url, sampler, [zeros, voiced] * (MIX_SESSIONS // 2), settle_s=3)
        finally:
            sampler.stop()
    assert mix["answered"] + mix["refused"] == MIX_SESSIONS and not mix["errors"], mix
    assert mix["met"] == {"answered_or_refused": True, "health": True, "peak": True, "returned": True}, mix
