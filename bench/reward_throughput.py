"""Designer-reward scoring throughput: texts per second for each built-in objective, scored in batches.

    python bench/reward_throughput.py --texts 2000 --reps 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.step_time import make_pairs  # noqa: E402
from upo.rewards import resolve_reward_funcs  # noqa: E402

OBJECTIVES = ["readability", "non_offensive", "length", "sentiment", "keywords:required=water|time,banned=oil"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    pairs = make_pairs(args.texts, 10, 40)
    prompts, texts = [p["prompt"] for p in pairs], [p["chosen"] for p in pairs]
    print(f"{args.texts} texts of ~40 words, batch of all texts per call, median of {args.reps} repetitions\n")
    print("| objective | texts/s | ms per 1000 texts |\n|---|---|---|")
    for spec, func in zip(OBJECTIVES, resolve_reward_funcs(OBJECTIVES)):
        func(prompts[:8], texts[:8])  # first call loads lazy models and lexicons
        times = []
        for _ in range(args.reps):
            start = time.perf_counter()
            func(prompts, texts)
            times.append(time.perf_counter() - start)
        t = statistics.median(times)
        print(f"| {spec} | {args.texts / t:,.0f} | {1000 * t / args.texts * 1000:.1f} |")


if __name__ == "__main__":
    main()
