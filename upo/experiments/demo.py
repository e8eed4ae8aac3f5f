"""`upo demo`: DPO and UPO side by side on SmolLM2-135M-Instruct and the shipped chit-chat pairs, on a CPU.

The smallest complete run of the method: the default model prepared from its wheel, DPO and UPO trained
with a LoRA adapter on the same pairs, budget and seed, both evaluated on held-out prompts against the
reference model, and the comparison printed and plotted. It is a two-run frontier (`upo.experiments.frontier`), so it
resumes where it stopped and its folder reads like any frontier's. About 10 minutes on 2 CPU cores.

Designer objectives: readability (Flesch reading ease) and non-offensiveness (alt-profanity-check), with
the same weight; the preference labels do not encode them (`upo score`). The user's preference: the fixed
preference scorer, similarity to what the human actually answered (`upo.eval.scorers`).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from upo.config import UPOConfig
from upo.eval.tables import side_by_side
from upo.experiments.frontier import collect_results, load_frontier_config, run_frontier
from upo.models import resolve_model_path
from upo.threads import choose_num_threads


def demo_config(output_dir: str, steps: int = 48, eval_prompts: int = 64, alpha: float | None = None,
                aw_temperature: float | None = None, learning_rate: float = 2e-4,
                train_data: str = "examples/data/chitchat_train.jsonl",
                eval_data: str = "examples/data/chitchat_eval.jsonl", model: str = "smollm2-135m-instruct") -> dict:
    """The demo as a frontier config: DPO and UPO, identical but for UPO's designer term (`alpha`, and the
    temperature of its advantage weights). UPO runs at UPOConfig's defaults (its `alpha` and `aw_temperature` unless
    given, the designer term per sequence), chosen on the grids that docs/RESULTS.md links, not on the demo. UPO's run
    names its alpha (UPOConfig's default when none is given), as it always has: its training key stays the same."""
    upo_options = {"alpha": UPOConfig.alpha if alpha is None else alpha}
    if aw_temperature is not None:
        upo_options["aw_temperature"] = aw_temperature
    return {
        "output_dir": output_dir,
        "model_name_or_path": model,
        "dataset": train_data,
        "train_pairs": steps * 4,  # one epoch over the first pairs: the reference log-probs cover those alone
        "eval_data": eval_data,
        "reward_funcs": ["readability", "non_offensive"],
        "reward_weights": [1.0, 1.0],
        "train": {"use_peft": True, "lora_r": 16, "lora_alpha": 32, "beta": 0.1, "learning_rate": learning_rate,
                  "max_steps": steps, "per_device_train_batch_size": 4, "max_length": 256,
                  "precompute_ref_log_probs": True, "precompute_ref_batch_size": 16, "logging_steps": 4,
                  "use_cpu": True, "seed": 0},
        "eval": {"max_prompts": eval_prompts, "max_new_tokens": 24, "batch_size": 32},
        "runs": [{"name": "DPO", "options": {"alpha": 0.0}},
                 {"name": "UPO", "options": upo_options}],
    }


def compare_line(dpo: dict, upo: dict, results: dict) -> str:
    """UPO against DPO in words: designer gain in std and win-rate gap, each with its 90% interval over the prompts
    (`collect_results`' UPO run against DPO), KL, and whether the gain is measurable."""
    unit = results["reference_designer_std"] or 1.0
    check = next((g for g in results.get("groups") or [] if "gain_std" in g), {})
    low, high = check.get("gain_std_ci90", (None, None))
    gap_low, gap_high = check.get("win_rate_gap_ci90", (None, None))
    gain = (upo["designer_score"] - dpo["designer_score"]) / unit
    gain_interval = f" (90% interval {low:+.2f}..{high:+.2f})" if low is not None else ""
    gap_interval = f" ({100 * gap_low:+.1f}..{100 * gap_high:+.1f})" if gap_low is not None else ""
    text = (f"UPO vs DPO: designer score {gain:+.2f} std{gain_interval}, 1 std = {unit:.3f} (the reference's spread "
            f"over the prompts); win rate {100 * (upo['win_rate'] - dpo['win_rate']):+.1f} points{gap_interval}; "
            f"KL {upo['kl'] - dpo['kl']:+.2f}.")
    if low is None:
        return text
    if low > 0:
        return text + "\nThe designer gain is measurable: its interval excludes 0."
    return text + ("\nAt this budget the designer scores differ within the noise (the interval includes 0). "
                   "docs/RESULTS.md reports longer runs, over seeds.")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="upo demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default=None, help="Default: runs/demo-<date>-<time>.")
    parser.add_argument("--steps", type=int, default=48, help="Training steps of 4 pairs, for each of DPO and UPO.")
    parser.add_argument("--eval_prompts", type=int, default=64, help="Held-out prompts to evaluate on.")
    parser.add_argument("--alpha", type=float, default=None,
                        help="UPO's weight of the designer term (default: UPOConfig's).")
    parser.add_argument("--aw_temperature", type=float, default=None,
                        help="UPO's advantage-weight temperature (default: UPOConfig's).")
    parser.add_argument("--learning_rate", type=float, default=2e-4)
    parser.add_argument("--num_threads", default="auto",
                        help="torch CPU threads: a number, or 'auto' (1 when other processes keep the CPU busy, "
                        "where more threads are much slower; else torch's default).")
    args = parser.parse_args(argv)
    import torch

    start = time.perf_counter()
    threads = choose_num_threads(args.num_threads)
    output_dir = args.output_dir or time.strftime("runs/demo-%Y%m%d-%H%M%S")
    shown = threads or f"{torch.get_num_threads()} (torch's default)"
    print(f"[demo] output: {output_dir}; torch threads: {shown}", flush=True)
    print("[demo] 1/4 preparing SmolLM2-135M-Instruct from its wheel (converted once, then cached)", flush=True)
    resolve_model_path("smollm2-135m-instruct")
    config = load_frontier_config(demo_config(output_dir, args.steps, args.eval_prompts, args.alpha,
                                              args.aw_temperature, args.learning_rate))
    alpha = UPOConfig.alpha if args.alpha is None else args.alpha
    temperature = UPOConfig.aw_temperature if args.aw_temperature is None else args.aw_temperature
    print(f"[demo] 2/4 + 3/4 training DPO and UPO (alpha={alpha}, aux_loss={UPOConfig.aux_loss}, "
          f"aw_temperature={temperature}) with "
          f"LoRA, {args.steps} steps of 4 pairs each, "
          f"then evaluating them and the reference on {args.eval_prompts} held-out prompts", flush=True)

    def log(line: str) -> None:
        line = re.sub(r"^\[frontier [0-9.]+ min\] ", "", line)  # one clock is enough
        print(f"[demo {(time.perf_counter() - start) / 60:4.1f} min] {line}", flush=True)

    run_frontier(config, num_threads=threads, log=log)
    results = collect_results(config)
    summaries = [{**results["reference"], "name": "reference"}] + [r["summary"] for r in results["runs"]]
    print("\n[demo] 4/4 results on held-out prompts (greedy replies; preference = similarity to the human reply)\n")
    print(side_by_side(summaries))
    dpo, upo = (r["summary"] for r in results["runs"])
    print("\n" + compare_line(dpo, upo, results))
    print(f"Plot: {Path(output_dir) / 'frontier.png'}; tables: {Path(output_dir) / 'frontier.md'}; "
          f"replies: {Path(output_dir) / 'runs'}/*/eval_summary.json")
    print(f"[demo] done in {(time.perf_counter() - start) / 60:.1f} min")
    (Path(output_dir) / "demo_summary.json").write_text(json.dumps({"summaries": summaries, "seconds": round(
        time.perf_counter() - start)}, indent=1) + "\n")
