"""What recording costs the stream: browser fps with and without a recording, in the real page.

Alternates stretches without and with a recording (the character waving and talking in both),
then prints JSON: the median browser fps of each, the change in per cent, the server's CPU, and
the recordings' size per minute.

    python benchmarks/recording.py [--rounds 3] [--seconds 10] [--pipeline tiny_ar]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browser.harness import PersonaPage, chromium, running_app

MESSAGE = "please wave and tell me about yourself"


def _stretch(page: PersonaPage, server: psutil.Process, seconds: float) -> tuple[float, float]:
    """(browser fps, server CPU %) over `seconds` with the character acting and talking."""
    page.page.fill("#chat-input textarea", MESSAGE)
    page.page.press("#chat-input textarea", "Enter")
    server.cpu_percent()
    fps = page.fps(seconds)
    return fps, server.cpu_percent()


def _duration_s(path: Path) -> float:
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(probe.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pipeline", default="puppet", help="PERSONA_PIPELINE for the app.")
    args = parser.parse_args()
    plain, recorded, plain_cpu, recorded_cpu, mb_per_minute = [], [], [], [], []
    with running_app(PERSONA_PIPELINE=args.pipeline) as (url, process), chromium() as browser:
        server = psutil.Process(process.pid)
        page = PersonaPage(browser, url)
        page.start()
        page.fps(3.0)  # settle
        for _ in range(args.rounds):
            fps, cpu = _stretch(page, server, args.seconds)
            plain.append(fps)
            plain_cpu.append(cpu)
            page.page.click("#record-btn")
            page.page.wait_for_function(
                "document.querySelector('#record-btn').innerText.includes('Stop')"
            )
            fps, cpu = _stretch(page, server, args.seconds)
            recorded.append(fps)
            recorded_cpu.append(cpu)
            page.page.click("#record-btn")
            page.page.wait_for_selector("#recording a", timeout=15_000)
            href = page.page.get_attribute("#recording a", "href")
            file = Path(href.split("file=", 1)[1])
            mb_per_minute.append(file.stat().st_size / 2**20 / (_duration_s(file) / 60))
    without, with_ = statistics.median(plain), statistics.median(recorded)
    print(
        json.dumps(
            {
                "pipeline": args.pipeline,
                "rounds": args.rounds,
                "seconds_each": args.seconds,
                "browser_fps_p50_without": round(without, 1),
                "browser_fps_p50_recording": round(with_, 1),
                "fps_change_percent": round(100 * (with_ - without) / without, 1),
                "server_cpu_percent_p50_without": round(statistics.median(plain_cpu)),
                "server_cpu_percent_p50_recording": round(statistics.median(recorded_cpu)),
                "recording_mb_per_minute_p50": round(statistics.median(mb_per_minute), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
