"""How a training step grows with sequence length and batch size (our DPO, optionally TRL's beside it).

    python bench/scaling.py --model tiny --candidates upo_dpo trl_dpo
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.step_time import VARIANTS  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--candidates", nargs="+", default=["upo_dpo"], choices=list(VARIANTS))
    parser.add_argument("--lengths", nargs="+", type=int, default=[40, 80, 160, 320],
                        help="Prompt words; responses half.")
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[2, 4, 8])
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    grid = [(words, 4) for words in args.lengths] + [(args.lengths[1], b) for b in args.batch_sizes if b != 4]
    print(f"model={args.model}{' +LoRA' if args.lora else ''}; median of {args.steps} steps after 1 warm-up; "
          "one process per point\n")
    columns = " | ".join(f"{c} step (s) | {c} tokens/s" for c in args.candidates)
    header = "| prompt words | response words | batch | " + columns
    print(header + "\n|" + "---|" * (3 + 2 * len(args.candidates)))
    for words, batch in grid:
        cells = []
        for candidate in args.candidates:
            cmd = [sys.executable, str(ROOT / "bench" / "step_time.py"), "--model", args.model,
                   "--candidates", candidate, "--reps", "1", "--steps", str(args.steps), "--warmup", "1",
                   "--batch_size", str(batch), "--prompt_words", str(words), "--response_words", str(words // 2),
                   "--out", "/dev/null"]
            cmd += ["--lora"] if args.lora else []
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            row = next(line for line in out.splitlines() if line.startswith(f"| {candidate} |"))
            step, tokens = (cell.strip() for cell in row.strip("|").split("|")[1:3])
            cells += [step, tokens]
        print(f"| {words} | {words // 2} | {batch} | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
