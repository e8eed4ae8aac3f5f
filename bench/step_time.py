"""Training-step benchmark: our DPO, our UPO and TRL's DPOTrainer on the same model, data and batches.

Each candidate runs in its own process (so peak RSS is its own), candidates are interleaved over several
repetitions, and the report gives medians and ratios taken pair by pair within a repetition: this machine
is shared and noisy, so only side-by-side ratios mean much.

    python bench/step_time.py --model tiny --reps 5            # ~5M-parameter Llama, SmolLM2's vocabulary
    python bench/step_time.py --model smollm2 --lora --reps 3  # SmolLM2-135M-Instruct with LoRA r=16
    python bench/step_time.py --smoke                          # a couple of steps, for CI

`--tokens` is the number of tokens of work per step in TRL's count (every response with its prompt).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Candidate name -> UPOConfig options (None: TRL's DPOTrainer). `upo_upo` adds a designer reward.
VARIANTS = {
    "trl_dpo": None,
    "upo_dpo": {},
    "upo_upo": {"alpha": 1.0},
    "upo_dpo_separate": {"shared_prompt": False},
    "upo_dpo_padding_free": {"padding_free": True},
    "upo_dpo_chunked": {"logps_chunk_size": 256},
}
CANDIDATES = ("trl_dpo", "upo_dpo", "upo_upo")
WORDS = ("the a of to and in is it you that for on with as are this be at or have from by not what all were "
         "we when your can said there use an each which she do how their if will up other about out many then "
         "them these so some her would make like him into time has look two more write go see number no way could "
         "people my than first water been call who oil its now find long down day did get come made may part").split()


def make_pairs(n: int, prompt_words: int, response_words: int, seed: int = 0) -> list[dict]:
    """Synthetic pairs with lengths spread +-50% around the targets, so batches carry realistic padding."""
    rng = random.Random(seed)

    def text(mean: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(max(1, int(mean * rng.uniform(0.5, 1.5)))))

    return [{"prompt": text(prompt_words), "chosen": " " + text(response_words), "rejected": " " + text(response_words)}
            for _ in range(n)]


def mean_length(pairs, tokenizer) -> float:
    return statistics.fmean(len(tokenizer(p["prompt"] + p["chosen"])["input_ids"]) for p in pairs)


def length_reward(prompts, completions, **kwargs):
    return [float(len(c.split())) for c in completions]


def build_model(args):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from upo.models import resolve_model_path

    if args.model == "smollm2" or args.tokenizer is None:
        path = resolve_model_path("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or path)
    if args.model == "smollm2":
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), tokenizer
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=96, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(config), tokenizer


def worker(args) -> dict:
    """One candidate, one process: train warmup + steps, time each step."""
    import copy

    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    torch.set_num_threads(args.threads)
    model, tokenizer = build_model(args)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    pairs = make_pairs(args.batch_size * (args.warmup + args.steps), args.prompt_words, args.response_words)
    dataset = Dataset.from_list(pairs)
    peft_config = None
    if args.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    ref_model = None if args.lora else copy.deepcopy(model)  # the same reference handling for every candidate

    class StepTimer(TrainerCallback):
        times: list[float] = []

        def on_step_begin(self, *a, **k):
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter() - self.start)

    common = dict(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch_size,
                  max_steps=args.warmup + args.steps, learning_rate=1e-6, logging_steps=10_000, save_strategy="no",
                  report_to="none", use_cpu=True, bf16=False, max_length=args.max_length, seed=0, disable_tqdm=True)
    timer = StepTimer()
    if args.worker == "trl_dpo":
        from trl import DPOConfig, DPOTrainer

        config = DPOConfig(gradient_checkpointing=False, pad_to_multiple_of=None, **common)
        trainer = DPOTrainer(model=model, ref_model=ref_model, args=config, train_dataset=dataset,
                             processing_class=tokenizer, peft_config=peft_config, callbacks=[timer])
    else:
        from upo import UPOConfig, UPOTrainer

        upo = args.worker == "upo_upo"
        config = UPOConfig(**common, **VARIANTS[args.worker], **json.loads(args.upo_options))
        trainer = UPOTrainer(model, ref_model=ref_model, args=config, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=peft_config, callbacks=[timer], reward_funcs=[length_reward] if upo else None)
    trainer.train()
    step = statistics.median(timer.times[args.warmup :])
    tokens = args.batch_size * 2 * mean_length(pairs, tokenizer)
    return {
        "candidate": args.worker,
        "step_s": step,
        "tokens_per_s": tokens / step,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }


def run_candidate(candidate: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", candidate] + args.passthrough
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TQDM_DISABLE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"{candidate} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(results: list[list[dict]], args) -> str:
    by = {c: [rep[c] for rep in results] for c in args.candidates}
    lines = [f"model={args.model}{' +LoRA' if args.lora else ''}, batch={args.batch_size} pairs, "
             f"prompt~{args.prompt_words} words, responses~{args.response_words} words, {args.steps} timed steps "
             f"after {args.warmup} warm-up, {len(results)} repetitions, {args.threads} threads", "",
             "| candidate | median step (s) | tokens/s | peak RSS (MB) |", "|---|---|---|---|"]
    for c, runs in by.items():
        lines.append(f"| {c} | {statistics.median(r['step_s'] for r in runs):.3f} | "
                     f"{statistics.median(r['tokens_per_s'] for r in runs):.0f} | "
                     f"{statistics.median(r['peak_rss_mb'] for r in runs):.0f} |")
    lines += ["", "| ratio (median of per-repetition ratios) | value |", "|---|---|"]

    def ratio(key, a, b):
        if a in by and b in by:
            values = [x[key] / y[key] for x, y in zip(by[a], by[b])]
            lines.append(f"| {key}: {a} / {b} | {statistics.median(values):.3f} (per repetition: "
                         f"{', '.join(f'{v:.2f}' for v in values)}) |")

    ratio("step_s", "upo_upo", "upo_dpo")
    ratio("tokens_per_s", "upo_dpo", "trl_dpo")
    ratio("peak_rss_mb", "upo_dpo", "trl_dpo")
    for variant in ("upo_dpo_separate", "upo_dpo_padding_free", "upo_dpo_chunked"):
        ratio("step_s", variant, "upo_dpo")
        ratio("peak_rss_mb", variant, "upo_dpo")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    parser.add_argument("--tokenizer", default=None, help="Tokenizer folder for the tiny model (default SmolLM2's).")
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--prompt_words", type=int, default=120)
    parser.add_argument("--response_words", type=int, default=60)
    parser.add_argument("--max_length", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(VARIANTS))
    parser.add_argument("--upo_options", default="{}", help="JSON of extra UPOConfig options for our candidates.")
    parser.add_argument("--smoke", action="store_true", help="1 repetition of 2 steps on a tiny model, for CI.")
    parser.add_argument("--out", default=None, help="Also write the results as JSON here.")
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.warmup, args.reps, args.prompt_words, args.response_words = 2, 1, 1, 20, 10
    if args.worker:
        print(json.dumps(worker(args)))
        return
    args.passthrough = [a for a in sys.argv[1:] if a not in ("--smoke",)]
    if args.smoke:
        args.passthrough += ["--steps", "2", "--warmup", "1", "--prompt_words", "20", "--response_words", "10"]
    results = []
    for rep in range(args.reps):
        order = args.candidates[rep % len(args.candidates) :] + args.candidates[: rep % len(args.candidates)]
        results.append({c: run_candidate(c, args) for c in order})
        print(f"repetition {rep + 1}/{args.reps}: " + ", ".join(f"{c} {r['step_s']:.3f}s" for c, r in results[-1].items()),
              file=sys.stderr)
    print(report(results, args))
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=2, default=str))


if __name__ == "__main__":
    main()
