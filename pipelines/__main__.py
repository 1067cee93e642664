"""`python -m pipelines list` and `python -m pipelines bench NAME` (DESIGN.md section 2).

Each prints one JSON object on stdout; bad input exits non-zero with a clear message on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict

from pipelines.registry import PipelineUnavailableError, UnknownPipelineError, list_pipelines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="registered pipelines and whether each can run here")
    bench = commands.add_parser("bench", help="step a pipeline and print speed and memory")
    bench.add_argument("name")
    bench.add_argument("--seconds", type=float, default=10.0)
    bench.add_argument("--width", type=int)
    bench.add_argument("--height", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    if args.command == "list":
        print(json.dumps({"pipelines": [asdict(s) for s in list_pipelines()]}))
        return 0

    from pipelines.bench import bench as run_bench

    if args.seconds <= 0:
        print("error: --seconds must be positive", file=sys.stderr)
        return 2
    size = {k: v for k, v in (("width", args.width), ("height", args.height)) if v is not None}
    try:
        result = run_bench(args.name, seconds=args.seconds, **size)
    except (UnknownPipelineError, PipelineUnavailableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
