"""The cost argument: wall time for UPO (offline) and for TRL's GRPO (online RL) to raise a designer score.

Both start from the same small model, fine-tuned briefly (SFT) on the example responses so that it writes
text, use the same prompts (examples/data/pairs.jsonl) and the same reward function (`readability` by
default). UPO trains on the pairs' existing responses; GRPO samples its own. Every `--eval_every` steps the
designer score of the policy's samples on the held-out prompts is measured (fixed seed); the table gives the
training wall time (evaluation excluded) at which each method first reaches a given gain.

    python bench/online_vs_offline.py --steps 60 --eval_every 10
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, TrainerCallback  # noqa: E402

from upo import UPOConfig, UPOTrainer  # noqa: E402
from upo.rewards import resolve_reward_funcs  # noqa: E402


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def sft_model(tokenizer, rows, steps: int, seed: int = 0):
    """A ~3M-parameter Llama taught to write like the example responses (the common starting point)."""
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config)
    texts = [r["prompt"] + " " + r[side] + tokenizer.eos_token for r in rows for side in ("chosen", "rejected")]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(steps):
        batch = tokenizer([texts[(step * 8 + i) % len(texts)] for i in range(8)], return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model


@torch.no_grad()
def designer_score(model, tokenizer, prompts, reward, samples: int = 2, max_new_tokens: int = 40) -> float:
    model.eval()
    torch.manual_seed(1234)
    tokenizer.padding_side = "left"
    batch = tokenizer([p for p in prompts for _ in range(samples)], return_tensors="pt", padding=True)
    out = model.generate(**batch, do_sample=True, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
    tokenizer.padding_side = "right"
    texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    scores = [s for s in reward([p for p in prompts for _ in range(samples)], texts) if s is not None]
    model.train()
    return sum(scores) / max(len(scores), 1)


class Curve(TrainerCallback):
    """Training wall time (evaluation excluded) and designer score every `every` steps."""

    def __init__(self, tokenizer, prompts, reward, every):
        self.tokenizer, self.prompts, self.reward, self.every = tokenizer, prompts, reward, every
        self.points, self.train_time = [], 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.train_time += time.perf_counter() - self.start
        if state.global_step % self.every == 0:
            score = designer_score(model, self.tokenizer, self.prompts, self.reward)
            self.points.append((state.global_step, self.train_time, score))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reward", default="readability")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--eval_every", type=int, default=10)
    parser.add_argument("--sft_steps", type=int, default=150)
    parser.add_argument("--learning_rate", type=float, default=5e-4)
    parser.add_argument("--tokenizer", default=str(ROOT / "tests" / "fixtures" / "tiny_tokenizer"))
    args = parser.parse_args()
    torch.set_num_threads(2)

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    train_rows = read_jsonl(ROOT / "examples" / "data" / "pairs.jsonl")
    eval_prompts = [r["prompt"] for r in read_jsonl(ROOT / "examples" / "data" / "pairs_eval.jsonl")]
    (reward,) = resolve_reward_funcs([args.reward])
    start = sft_model(tokenizer, train_rows, args.sft_steps)
    baseline = designer_score(start, tokenizer, eval_prompts, reward)
    common = dict(output_dir=tempfile.mkdtemp(), max_steps=args.steps, learning_rate=args.learning_rate,
                  per_device_train_batch_size=8, logging_steps=10_000, save_strategy="no", report_to="none",
                  use_cpu=True, bf16=False, seed=0, disable_tqdm=True)

    curves = {}
    upo_curve = Curve(tokenizer, eval_prompts, reward, args.eval_every)
    UPOTrainer(copy.deepcopy(start), args=UPOConfig(**common, alpha=1.0, max_length=256),
               train_dataset=Dataset.from_list(train_rows), processing_class=tokenizer,
               reward_funcs=[reward], callbacks=[upo_curve]).train()
    curves["UPO (offline, the pairs' responses)"] = upo_curve.points

    from trl import GRPOConfig, GRPOTrainer

    grpo_curve = Curve(tokenizer, eval_prompts, reward, args.eval_every)
    GRPOTrainer(model=copy.deepcopy(start), reward_funcs=[reward], processing_class=tokenizer,
                args=GRPOConfig(**common, num_generations=4, max_completion_length=40, gradient_checkpointing=False),
                train_dataset=Dataset.from_list([{"prompt": r["prompt"]} for r in train_rows]),
                callbacks=[grpo_curve]).train()
    curves["GRPO (online, 4 samples per prompt)"] = grpo_curve.points

    print(f"designer objective: {args.reward}; start (SFT) score {baseline:.2f}; "
          f"{args.steps} steps of 8 prompts/pairs, lr {args.learning_rate}\n")
    print("| method | step | training wall time (s) | designer score | gain |\n|---|---|---|---|---|")
    for name, points in curves.items():
        for step, seconds, score in points:
            print(f"| {name} | {step} | {seconds:.1f} | {score:.2f} | {score - baseline:+.2f} |")
    target = max(max(s for _, _, s in points) for points in curves.values()) - baseline
    print(f"\n| method | time to reach half the best gain ({target / 2:+.2f}) | best gain |\n|---|---|---|")
    for name, points in curves.items():
        hit = next((t for _, t, s in points if s - baseline >= target / 2), None)
        best = max(s for _, _, s in points) - baseline
        print(f"| {name} | {'not reached' if hit is None else f'{hit:.1f} s'} | {best:+.2f} |")


if __name__ == "__main__":
    main()
