"""Soak run: many steps of UPO on a tiny model with periodic evaluation and checkpoints, recording resident memory.

    .venv/bin/python scripts/soak.py --steps 1500 --out runs/soak

Trains a 0.2M-parameter Llama (built from a config, the tokenizer committed under tests/fixtures) with the
designer term on, evaluates and checkpoints every `--every` steps (keeping two checkpoints), and samples
the process's resident set size (RSS) at each log. Prints, and writes to `OUT/soak.json`, the RSS after
warm-up, at the end and at its highest, and the growth after warm-up; exits 1 when the growth reaches
`--max_growth` (5 %). Results are recorded in docs/RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import psutil  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, TrainerCallback  # noqa: E402

from upo import UPOConfig, UPOTrainer  # noqa: E402

TOKENIZER = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tiny_tokenizer"
WORDS = ("the sky is blue and the grass is green thank you for asking here is a short clear answer water boils "
         "at one hundred degrees reading is fun short words help please explain how plants grow").split()


def pairs(n: int, seed: int) -> Dataset:
    rng = random.Random(seed)

    def text(k):
        return " " + " ".join(rng.choice(WORDS) for _ in range(k)) + "."

    rows = [{"prompt": f"Human: question {i}{text(rng.randint(3, 12))} Assistant:", "chosen": text(rng.randint(4, 20)),
             "rejected": text(rng.randint(2, 20))} for i in range(n)]
    return Dataset.from_list(rows)


def politeness(prompts, completions, **kwargs):
    """A designer objective: 1 if the response thanks or says please."""
    return [float("thank" in c or "please" in c) for c in completions]


class MemoryRecorder(TrainerCallback):
    """RSS (MiB) of this process at every log, with the step."""

    def __init__(self):
        self.process = psutil.Process()
        self.samples: list[tuple[int, float]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.samples.append((state.global_step, self.process.memory_info().rss / 2**20))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--every", type=int, default=100, help="evaluate and checkpoint every N steps")
    parser.add_argument("--warmup", type=int, default=300, help="steps before the memory baseline is taken")
    parser.add_argument("--max_growth", type=float, default=0.05)
    parser.add_argument("--out", default="runs/soak")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0,
                         eos_token_id=1, bos_token_id=1)
    model = LlamaForCausalLM(config)
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    recorder = MemoryRecorder()
    out = Path(args.out)
    trainer = UPOTrainer(
        model,
        args=UPOConfig(
            output_dir=str(out / "run"), max_steps=args.steps, per_device_train_batch_size=4, learning_rate=1e-4,
            logging_steps=10, eval_strategy="steps", eval_steps=args.every, per_device_eval_batch_size=8,
            save_strategy="steps", save_steps=args.every, save_total_limit=2, report_to="none", use_cpu=True,
            max_length=64, seed=0, disable_tqdm=True, overwrite_output_dir=True,
        ),
        train_dataset=pairs(512, seed=0), eval_dataset=pairs(32, seed=1), processing_class=tokenizer,
        reward_funcs=[politeness], callbacks=[recorder],
    )
    start = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - start

    after_warmup = [rss for step, rss in recorder.samples if step >= args.warmup]
    baseline = after_warmup[0]
    final, peak = after_warmup[-1], max(after_warmup)
    growth = (peak - baseline) / baseline
    result = {
        "steps": trainer.state.global_step, "seconds": round(elapsed, 1), "evaluations": sum(
            "eval_loss" in log for log in trainer.state.log_history),
        "checkpoints_written": args.steps // args.every, "warmup_steps": args.warmup,
        "rss_mib_first_log": round(recorder.samples[0][1], 1), "rss_mib_after_warmup": round(baseline, 1),
        "rss_mib_final": round(final, 1), "rss_mib_peak_after_warmup": round(peak, 1),
        "growth_after_warmup": round(growth, 4), "samples": [(s, round(r, 1)) for s, r in recorder.samples],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    ok = growth < args.max_growth
    print(f"RSS growth after warm-up (peak vs step {args.warmup}): {growth:+.2%} -> {'OK' if ok else 'TOO HIGH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
