"""Drive the real page in headless Chromium and print JSON latency and speed figures.

Browser fps, Enter -> status shows the new action, Enter -> first video frame that differs from
the frame before Enter (a new pose, CHANGE_THRESHOLD) and that first visibly moves
(MOVE_THRESHOLD), server start-up time and RSS. Medians over several messages.

    python benchmarks/app_latency.py [--trials 8] [--pipeline tiny_ar]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browser.harness import PersonaPage, chromium, rss_mb, running_app

MESSAGES = [
    ("please wave", "wave"),
    ("clap your hands", "clap"),
    ("jump", "jump"),
    ("take a bow", "bow"),
    ("shrug", "shrug"),
    ("point over there", "point"),
]
GESTURE_GAP_SECONDS = 2.5


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--pipeline", default="puppet", help="PERSONA_PIPELINE for the app.")
    args = parser.parse_args()
    started = time.monotonic()
    with running_app(PERSONA_PIPELINE=args.pipeline) as (url, process), chromium() as browser:
        startup_s = time.monotonic() - started
        page = PersonaPage(browser, url)
        click = time.monotonic()
        page.start()
        playing_s = time.monotonic() - click
        fps = page.fps(5.0)
        status_ms, changed_ms, moved_ms = [], [], []
        for i in range(args.trials):
            text, action = MESSAGES[i % len(MESSAGES)]
            page.page.wait_for_timeout(GESTURE_GAP_SECONDS * 1000)
            timings = page.send(text, f"action: {action}")
            status_ms.append(timings["status_ms"])
            for figures, key in ((moved_ms, "moved_frame_ms"), (changed_ms, "changed_frame_ms")):
                if timings[key] is not None:
                    figures.append(timings[key])
        result = {
            "pipeline": args.pipeline,
            "browser_fps": round(fps, 1),
            "enter_to_status_ms_p50": _median(status_ms),
            "enter_to_changed_frame_ms_p50": _median(changed_ms),
            "enter_to_changed_frame_ms_max": round(max(changed_ms), 1) if changed_ms else None,
            "trials_without_new_pose": args.trials - len(changed_ms),
            "enter_to_moved_frame_ms_p50": _median(moved_ms),
            "enter_to_moved_frame_ms_max": round(max(moved_ms), 1) if moved_ms else None,
            "trials_without_movement": args.trials - len(moved_ms),
            "trials": args.trials,
            "server_ready_s": round(startup_s, 2),
            "click_to_playing_s": round(playing_s, 2),
            "server_rss_mb": round(rss_mb(process.pid), 1),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
