"""How many tokens each batch layout computes, and which share of them is padding.

TRL's DPOTrainer computes the `separate` layout. Counts come from the real collator on the benchmark's data, with
batches drawn in random order and with `train_sampling_strategy="group_by_length"` (transformers'
LengthGroupedSampler on the `length` column that upo's tokenisation writes).

    python bench/padding.py --batch_size 4 --prompt_words 120 --response_words 60
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.step_time import make_pairs  # noqa: E402
from upo.data.collator import LAYOUTS, PreferenceCollator  # noqa: E402
from upo.data.tokenization import tokenize_pair  # noqa: E402


def main():
    from transformers import AutoTokenizer

    from upo.models import resolve_model_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--prompt_words", type=int, default=120)
    parser.add_argument("--response_words", type=int, default=60)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--tokenizer", default=None)
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or resolve_model_path("smollm2-135m-instruct"))
    pairs = make_pairs(args.batch_size * args.batches, args.prompt_words, args.response_words)
    rows = [tokenize_pair(tokenizer, p["prompt"], p["chosen"], p["rejected"]) for p in pairs]
    print(f"{args.batches} batches of {args.batch_size} pairs, prompt ~{args.prompt_words} words, responses "
          f"~{args.response_words} words\n")
    print("| batches | layout | computed tokens | real tokens | padding share | tokens vs separate, random |\n"
          "|---|---|---|---|---|---|")
    baseline = None
    for strategy, order in batch_orders(rows, args.batch_size).items():
        for layout in LAYOUTS:
            collate = PreferenceCollator(tokenizer.pad_token_id or 0, layout=layout)
            computed = real = 0
            for i in range(0, len(order), args.batch_size):
                chunk = [rows[j] for j in order[i : i + args.batch_size]]
                computed += collate(chunk)["input_ids"].numel()
                prompts = (2 if layout == "separate" else 1) * sum(len(r["prompt_ids"]) for r in chunk)
                real += prompts + sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in chunk)
            baseline = baseline or computed
            print(f"| {strategy} | {layout} | {computed:,} | {real:,} | {1 - real / computed:.1%} | "
                  f"{computed / baseline:.2f} |")


def batch_orders(rows: list[dict], batch_size: int, seed: int = 0) -> dict[str, list[int]]:
    """The order in which the trainer would draw the rows: random, or grouped by length (same seed)."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    lengths = [len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows]
    generator = torch.Generator().manual_seed(seed)
    grouped = LengthGroupedSampler(batch_size, lengths=lengths, generator=torch.Generator().manual_seed(seed))
    return {"random": torch.randperm(len(rows), generator=generator).tolist(), "group_by_length": list(grouped)}

if __name__ == "__main__":
    main()
