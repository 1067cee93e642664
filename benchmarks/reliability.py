"""What visitors coming and going leave behind on the server.

    python benchmarks/reliability.py [--cycles 100]

Opens the real page in headless Chromium, presses Start, waits for the video to play, then
closes the tab, `--cycles` times. Prints one JSON object: the server's RSS (MiB; its child,
the chat model's process, apart), threads and
open file descriptors, and `/health`'s live sessions and streams, after a warm-up of WARM_UP
cycles (the baseline) and after all cycles (each read once the server has settled), and the
seconds per cycle.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WARM_UP = 5
SETTLE_SECONDS = 5.0


def _server_state(pid: int, url: str) -> dict[str, float]:
    from tests.browser.harness import rss_mb

    with urllib.request.urlopen(url + "/health", timeout=5) as response:
        health = json.loads(response.read())
    import psutil

    children = psutil.Process(pid).children(recursive=True)  # the chat model's process
    return {
        "rss_mb": round(rss_mb(pid), 1),
        "children_rss_mb": round(sum(c.memory_info().rss for c in children) / 2**20, 1),
        "threads": len(os.listdir(f"/proc/{pid}/task")),
        "open_files": len(os.listdir(f"/proc/{pid}/fd")),
        "sessions": health["sessions"],
        "streaming": health["streaming"],
    }


def main() -> None:
    from tests.browser.harness import PersonaPage, chromium, running_app

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=100)
    args = parser.parse_args()
    with running_app(PERSONA_MAX_STREAMS="2") as (url, process), chromium() as browser:

        def cycle() -> None:
            page = PersonaPage(browser, url)
            page.start()
            page.close()

        for _ in range(WARM_UP):
            cycle()
        time.sleep(SETTLE_SECONDS)
        baseline = _server_state(process.pid, url)
        start = time.monotonic()
        for _ in range(args.cycles):
            cycle()
        seconds = (time.monotonic() - start) / max(args.cycles, 1)
        time.sleep(SETTLE_SECONDS)
        after = _server_state(process.pid, url)
    print(
        json.dumps(
            {
                "cycles": args.cycles,
                "seconds_per_cycle": round(seconds, 2),
                "baseline": baseline,
                "after": after,
                "rss_growth_mb": round(after["rss_mb"] - baseline["rss_mb"], 1),
                "children_rss_growth_mb": round(
                    after["children_rss_mb"] - baseline["children_rss_mb"], 1
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
