"""Print how well card prose is read into an appearance, and how fast (JSON).

python benchmarks/appearance.py [--cases benchmarks/data/appearance_descriptions.json]

Each case is a character description (plain prose, W++, PList, Ali:Chat, booru tags; some with
no appearance, some describing a second person) with the expected colour names per field and
hair style. A colour counts as right when it lies within --tolerance (Euclidean RGB, 0-255 per
channel) of the expected name's colour in the extractor's own lexicon, read for that field
("dark" hair and "dark" skin differ). A field the extractor fills where none is expected is a
false fill.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from persona.appearance import PART_OF_FIELD, appearance_from_text, resolve_colour

CASES = Path(__file__).resolve().parent / "data" / "appearance_descriptions.json"
REPEATS = 20


def _distance(a: str, b: str) -> float:
    return math.dist(*((int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in (a, b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=Path, default=CASES)
    parser.add_argument("--tolerance", type=float, default=60.0)
    args = parser.parse_args()
    cases = json.loads(args.cases.read_text())
    fields = [*PART_OF_FIELD, "hair_style"]
    expected = dict.fromkeys(fields, 0)
    right = dict.fromkeys(fields, 0)
    unexpected = dict.fromkeys(fields, 0)
    false_fills, mistakes, per_card_ms = 0, [], []
    for case in cases:
        start = time.perf_counter()
        for _ in range(REPEATS):
            derived = appearance_from_text(case["text"])
        per_card_ms.append((time.perf_counter() - start) * 1000 / REPEATS)
        appearance = derived.appearance.model_dump()
        for field in fields:
            want = case["expected"].get(field)
            if want is None:
                unexpected[field] += 1
                if field in derived.found:
                    false_fills += 1
                    mistakes.append({"id": case["id"], "field": field, "want": None,
                                     "got": derived.found[field]})  # fmt: skip
                continue
            expected[field] += 1
            if field == "hair_style":
                ok = field in derived.found and appearance[field] == want
            else:
                target = resolve_colour(want, PART_OF_FIELD[field])
                if target is None:
                    raise SystemExit(f"{case['id']}: the lexicon has no colour {want!r}")
                ok = (
                    field in derived.found
                    and _distance(appearance[field], target) <= args.tolerance
                )
            right[field] += ok
            if not ok:
                mistakes.append({"id": case["id"], "field": field, "want": want,
                                 "got": derived.found.get(field)})  # fmt: skip
    n_expected, n_unexpected = sum(expected.values()), sum(unexpected.values())
    result = {
        "cases": len(cases),
        "tolerance_rgb": args.tolerance,
        "accuracy": {f: round(right[f] / expected[f], 3) if expected[f] else None for f in fields},
        "expected": expected,
        "overall_accuracy": round(sum(right.values()) / n_expected, 3),
        "false_fills": false_fills,
        "false_fill_rate": round(false_fills / n_unexpected, 3),
        "median_ms_per_card": round(statistics.median(per_card_ms), 3),
        "max_ms_per_card": round(max(per_card_ms), 3),
        "mistakes": mistakes,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
