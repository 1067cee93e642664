"""Print the offline interpreter's accuracy and per-message latency on the labelled set (JSON).

python benchmarks/interpreter_accuracy.py [--cases tests/data/interpreter_cases.jsonl]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from persona.evaluation import CASES, evaluate, load_cases
from persona.interpreter import OfflineInterpreter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=Path, default=CASES)
    args = parser.parse_args()
    start = time.perf_counter()
    interpreter = OfflineInterpreter()
    load_s = time.perf_counter() - start
    interpreter.read("warm up")
    result = evaluate(interpreter, load_cases(args.cases))
    result["model_load_s"] = round(load_s, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
