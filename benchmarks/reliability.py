"""How the server holds up against visitors who come and go, crowd in, vanish, flood and fuzz.

    python benchmarks/reliability.py [--parts churn,concurrent,vanished,flood,fuzz]
                                     [--cycles 100]

Prints one JSON object with a key per part:
- churn: open the real page in headless Chromium, press Start, wait for the video to play,
  close the tab, `--cycles` times. The server's RSS (MiB; its child, the chat model's
  process, apart), threads, open file descriptors and `/health`'s sessions and streams, after
  a warm-up of WARM_UP cycles (the baseline) and after all cycles, each read once the server
  has settled; and the seconds per cycle.
- concurrent: MAX_STREAMS pages stream at once (each one's frame rate in its browser), then
  one more presses Start: is it refused, and does the page say so where the video is
  (`#stream-busy`)? `/health` must count MAX_STREAMS streams throughout.
- vanished: a browser killed outright while it streams (VANISHED times): seconds until its
  stream slot is free again.
- flood: FLOOD_MESSAGES messages of 2,000 characters sent from one streaming page as fast as
  it can send them: how many were taken, the server's peak thread count, the stream's frame
  rate during the flood, and Enter -> status for "please nod" before and after it.
- fuzz: without a browser, random chat text and damaged card files against a streaming
  `Session` (offline brain, rate limit lifted so every message is read): how many were
  tried and taken, and how many broke anything (an exception other than a refusal, the
  stream stopping, the chat losing its history, a warning logged). Must be 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browser.harness import health

PARTS = ("churn", "concurrent", "vanished", "flood", "fuzz")
MAX_STREAMS = 4
WARM_UP = 5
SETTLE_SECONDS = 8.0
"""Longer than the server's wait before it collects a closed connection's garbage."""
VANISHED = 3
FLOOD_MESSAGES = 400
FUZZ_MESSAGES = 300
FUZZ_CARDS = 200


def _server_state(pid: int, url: str) -> dict[str, float]:
    import psutil

    from tests.browser.harness import rss_mb

    answer = health(url)
    children = psutil.Process(pid).children(recursive=True)  # the chat model's process
    return {
        "rss_mb": round(rss_mb(pid), 1),
        "children_rss_mb": round(sum(c.memory_info().rss for c in children) / 2**20, 1),
        "threads": len(os.listdir(f"/proc/{pid}/task")),
        "open_files": len(os.listdir(f"/proc/{pid}/fd")),
        "sessions": answer["sessions"],
        "streaming": answer["streaming"],
    }


def churn(url: str, pid: int, browser: object, cycles: int) -> dict:
    from tests.browser.harness import PersonaPage

    def cycle() -> None:
        page = PersonaPage(browser, url)
        page.start()
        page.close()

    for _ in range(WARM_UP):
        cycle()
    time.sleep(SETTLE_SECONDS)
    baseline = _server_state(pid, url)
    start = time.monotonic()
    for _ in range(cycles):
        cycle()
    seconds = (time.monotonic() - start) / max(cycles, 1)
    time.sleep(SETTLE_SECONDS)
    after = _server_state(pid, url)
    return {
        "cycles": cycles,
        "seconds_per_cycle": round(seconds, 2),
        "baseline": baseline,
        "after": after,
        "rss_growth_mb": round(after["rss_mb"] - baseline["rss_mb"], 1),
        "children_rss_growth_mb": round(after["children_rss_mb"] - baseline["children_rss_mb"], 1),
    }


def concurrent(url: str, browser: object) -> dict:
    from tests.browser.harness import PersonaPage

    pages = [PersonaPage(browser, url) for _ in range(MAX_STREAMS + 1)]
    try:
        for page in pages[:MAX_STREAMS]:
            page.start()
        fps = [round(page.fps(3.0), 1) for page in pages[:MAX_STREAMS]]
        refused = pages[-1]
        refused.page.click("#start-btn")
        busy = refused.page.locator("#persona-video #stream-busy")
        with contextlib.suppress(Exception):  # a timeout here is the figure: not refused
            busy.wait_for(timeout=15_000)
        streaming = health(url)["streaming"]
        return {
            "streams": MAX_STREAMS,
            "fps": fps,
            "fps_median": round(statistics.median(fps), 1),
            "extra_refused": not refused.connected(),
            "refusal_shown_on_video": busy.count() == 1,
            "health_streaming": streaming,
        }
    finally:
        for page in pages:
            page.close()


def vanished(url: str, browser: object) -> dict:
    from tests.browser.harness import PersonaPage, killable_chromium

    freed = []
    for _ in range(VANISHED):
        with killable_chromium(browser) as (doomed, kill):
            before = health(url)["streaming"]
            PersonaPage(doomed, url).start()
            kill()
            killed = time.monotonic()
            while health(url)["streaming"] > before and time.monotonic() - killed < 60:
                time.sleep(0.1)
            freed.append(round(time.monotonic() - killed, 2))
    return {"viewers": VANISHED, "seconds_to_free": freed, "median_s": statistics.median(freed)}


@contextlib.contextmanager
def _peak_threads(pid: int) -> Iterator[Callable[[], int]]:
    """Samples the server's thread count every 50 ms; yields a function for the peak."""
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            with contextlib.suppress(OSError):
                peak[0] = max(peak[0], len(os.listdir(f"/proc/{pid}/task")))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield lambda: peak[0]
    finally:
        done.set()
        sampler.join()


def flood(url: str, pid: int, browser: object) -> dict:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from tests.browser.harness import PersonaPage

    page = PersonaPage(browser, url)
    try:
        page.start()
        before = page.send("please nod", "action: nod")["status_ms"]
        page.page.wait_for_timeout(3000)  # the nod ends
        threads_before = len(os.listdir(f"/proc/{pid}/task"))
        frames_before = page.page.evaluate("window.__probe.frames.length")
        started = time.monotonic()
        with _peak_threads(pid) as peak:
            for n in range(FLOOD_MESSAGES):
                page.page.fill("#chat-input textarea", f"{n} " + "blah " * 399)
                page.page.press("#chat-input textarea", "Enter")
            seconds = time.monotonic() - started
            frames = page.page.evaluate("window.__probe.frames.length") - frames_before
            page.page.wait_for_timeout(1000)  # the last answers arrive
            taken = sum(bool(re.match(r"\d+ blah", m)) for m in page.chat_messages())
            flood_ended, tries, after = time.monotonic(), 0, None
            while after is None and time.monotonic() - flood_ended < 120:
                tries += 1  # refused while earlier messages wait: a visitor tries again
                with contextlib.suppress(PlaywrightTimeout):
                    after = page.send("please nod", "action: nod", timeout_s=2)["status_ms"]
            nod_taken_s = time.monotonic() - flood_ended
            peak_threads = peak()
        return {
            "messages": FLOOD_MESSAGES,
            "seconds": round(seconds, 1),
            "taken_and_shown": taken,
            "threads_before": threads_before,
            "threads_peak": peak_threads,
            "browser_fps_during": round(frames / seconds, 1),
            "nod_status_ms_before": round(before),
            "nod_after_flood": {
                "tries": tries,
                "seconds_until_taken": round(nod_taken_s, 1),
                "status_ms": None if after is None else round(after),
            },
        }
    finally:
        page.close()


def _fuzz_text(rng: random.Random) -> str:
    """Hostile chat text: random code points from many planes (controls, NUL, lone
    surrogates, zero-width and direction marks, combining marks, CJK, emoji), markup and
    template syntax, very long words, and lengths around the limit."""
    pools = [
        (0x00, 0x7F),
        (0x80, 0x24F),
        (0x300, 0x36F),
        (0x590, 0x6FF),
        (0x200B, 0x206F),
        (0x3000, 0x30FF),
        (0x4E00, 0x4FFF),
        (0xD800, 0xDFFF),
        (0xFE00, 0xFF5E),
        (0x1F300, 0x1FAFF),
        (0xE0000, 0xE007F),
        (0x10FFF0, 0x10FFFF),
    ]
    pieces = [
        "please wave",
        "![x](http://127.0.0.1:9/p.png)",
        "<img src=x onerror=alert(1)>",
        "<script>alert(1)</script>",
        "{{char}} {{user}} %s {0} ${x}",
        "*smiles*",
        "\n" * 50,
        "a" * rng.randint(100, 2100),
        "\u202eevaw esaelp",
        "ｐｌｅａｓｅ ｗａｖｅ",
        "\x00",
    ]
    parts = []
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.4:
            parts.append(rng.choice(pieces))
        else:
            low, high = rng.choice(pools)
            parts.append("".join(chr(rng.randint(low, high)) for _ in range(rng.randint(1, 80))))
    return "".join(parts)


def _fuzz_card(rng: random.Random, originals: list[bytes]) -> bytes:
    """A damaged card file: bytes flipped, cut short or spliced in, or a JSON card with a
    field swapped for something hostile (huge, deeply nested, the wrong type, invisible)."""
    blob = bytearray(rng.choice(originals))
    kind = rng.randrange(4)
    if kind == 0:
        for _ in range(rng.randint(1, 20)):
            blob[rng.randrange(len(blob))] = rng.randrange(256)
    elif kind == 1:
        del blob[rng.randrange(len(blob)) :]
    elif kind == 2:
        at = rng.randrange(len(blob))
        blob[at:at] = rng.randbytes(rng.randint(1, 4000))
    else:
        card = json.loads(originals[0])
        hostile = [
            None,
            7,
            [],
            {},
            "x" * 300_000,
            "\u202e\u200b",
            "[" * 5000 + "]" * 5000,
            [[[[[[[["deep"]]]]]]]],
            "N" * 101,
            "  ",
            "<b>bold</b>",
            True,
            -1e308,
        ]
        field = rng.choice(
            [
                "name",
                "description",
                "personality",
                "first_mes",
                "mes_example",
                "extensions",
                "tags",
                "scenario",
                "system_prompt",
            ]
        )
        card["data"][field] = rng.choice(hostile)
        if rng.random() < 0.3:
            card["spec"] = rng.choice(hostile)
        return json.dumps(card).encode()
    return bytes(blob)


class _Complaints(logging.Handler):
    """Collects what Persona logs as a warning or worse: a failed reply is a break too."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"logged: {record.name}: {record.getMessage()}")


def fuzz(seed: int = 0) -> dict:
    """In process, through the same `Session` methods the page's events call."""
    import ui.session
    from persona.cards import CARDS_DIR
    from ui.session import Session, SessionError

    ui.session.SEND_BURST = FUZZ_MESSAGES  # every message is read: the rate limit is not fuzzed
    rng = random.Random(seed)
    session = Session("puppet", "offline")
    taken = 0
    frames = session.frames()
    broken: list[str] = []
    complaints = _Complaints()
    for name in ("persona", "ui", "pipelines"):
        logging.getLogger(name).addHandler(complaints)

    def still_working(what: str) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            next(frames)
            runner = session.runner
            if runner is not None and runner.running and runner.showing is not None:
                return
            time.sleep(1 / 30)
        broken.append(f"{what}: the stream stopped ({session.status()})")

    for n in range(FUZZ_MESSAGES):
        text = _fuzz_text(rng)
        before = len(session.chat_history())
        try:
            sent = session.send(text)
            taken += sent
            for _ in session.follow():
                next(frames)
            after = len(session.chat_history())
            if after < min(before + 2 * sent, 200):
                broken.append(f"message {n}: the chat lost messages ({before} -> {after})")
        except Exception as error:  # anything at all is a break
            broken.append(f"message {n}: {type(error).__name__}: {error}")
        still_working(f"message {n}")
    originals = [(CARDS_DIR / name).read_bytes() for name in ("bram.json", "mira.png")]
    refused = 0
    for n in range(FUZZ_CARDS):
        try:
            session.upload_card(_fuzz_card(rng, originals))
        except SessionError:
            refused += 1
        except Exception as error:
            broken.append(f"card {n}: {type(error).__name__}: {error}")
        still_working(f"card {n}")
    session.select_card("Bram")
    answered = list(session.chat("please wave"))[-1][0][-1]["content"]
    if "wave" not in answered.lower():
        broken.append(f"after the fuzz, 'please wave' got {answered!r}")
    session.close()
    broken += complaints.messages
    return {
        "messages_tried": FUZZ_MESSAGES,
        "messages_taken": taken,
        "cards_tried": FUZZ_CARDS,
        "cards_refused": refused,
        "broke_anything": len(broken),
        "breaks": broken[:10],
    }


def main() -> None:
    from tests.browser.harness import chromium, running_app

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--cycles", type=int, default=100)
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    figures: dict[str, dict] = {}
    if set(parts) - {"fuzz"}:
        with (
            running_app(PERSONA_MAX_STREAMS=str(MAX_STREAMS)) as (url, process),
            chromium() as browser,
        ):
            measures = {
                "churn": lambda: churn(url, process.pid, browser, args.cycles),
                "concurrent": lambda: concurrent(url, browser),
                "vanished": lambda: vanished(url, browser),
                "flood": lambda: flood(url, process.pid, browser),
            }
            for part in parts:
                if part in measures:
                    figures[part] = measures[part]()
                    print(json.dumps({part: figures[part]}), file=sys.stderr, flush=True)
    if "fuzz" in parts:
        figures["fuzz"] = fuzz()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
