"""Training-step benchmark: our DPO, our UPO and TRL's DPOTrainer on the same model, data and batches, and the
step against the machine's measured matmul peak (a roofline).

Each candidate runs in its own process (so peak memory is its own), candidates are interleaved over several
repetitions, and the report gives medians and ratios taken pair by pair within a repetition: this machine
is shared and noisy, so only side-by-side ratios mean much. With `--roofline`, every repetition also measures
the matmul peak (`peak`: a large float32 matmul, and one at the model's own shapes) in its own process, and each
candidate's steps are run once more under `torch.utils.flop_counter.FlopCounterMode`, which counts the FLOPs of
every matmul (linear layers, LoRA, attention, LM head; forward and backward) of each step: achieved FLOP/s is
the timed steps' counted FLOPs over their time.

    python bench/step_time.py --model tiny --reps 5            # ~5M-parameter Llama, SmolLM2's vocabulary
    python bench/step_time.py --model smollm2 --lora --reps 3  # SmolLM2-135M-Instruct with LoRA r=16
    python bench/step_time.py --model smollm2 --lora --roofline --candidates trl_dpo trl_dpo_best upo_dpo upo_upo
    python bench/step_time.py --model smollm2 --device cuda --dtype bfloat16 --batch_size 16   # on a GPU
    python bench/step_time.py --smoke                          # a couple of steps, for CI
    python bench/step_time.py --model smollm2 --lora --breakdown --candidates upo_dpo   # where one step's time goes

`--breakdown` runs each candidate once: `--steps` timed steps, then as many again under `torch.profiler`, and splits
a step's time: the matmuls by kind (the model's own weights, LoRA's rank-r products, the LM head), each with its
FLOPs (from the recorded shapes) and achieved GFLOP/s; attention; the log-softmax over the vocabulary; the optimizer
step (its whole `Optimizer.step`; gradient clipping is not in it); and the rest, the timed step less all of these
(norms, activations, copies, autograd, Python). The profiler adds a few microseconds per operation, which is little
for these large ones but much for small ones, hence the rest by difference from the unprofiled step. The matmul peak
at the model's shapes is measured in the same process, before and after the steps. From these it bounds the step:
the share of the peak it would reach if every matmul ran at the peak and nothing else changed.

`--tokens` is the number of tokens of work per step in TRL's count (every response with its prompt).
Candidates: `trl_dpo` (TRL's defaults, with the reference model run every step), `trl_dpo_best` (TRL at its
fastest: reference log-probs precomputed before training, the one speed option DPOConfig 1.16 offers on this
hardware; see docs/BENCHMARKS.md), `upo_dpo`, `upo_dpo_precomputed` (the same precomputation), `upo_upo`
(alpha 1, one designer reward), and upo's layout and head variants.
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
# Candidate name -> trainer options: UPOConfig options, or for TRL (name starting with "trl") DPOConfig options.
VARIANTS = {
    "trl_dpo": {},
    "trl_dpo_best": {"precompute_ref_log_probs": True},
    "upo_dpo": {},
    "upo_dpo_precomputed": {"precompute_ref_log_probs": True},
    "upo_upo": {"alpha": 1.0},
    "upo_dpo_separate": {"shared_prompt": False},
    "upo_dpo_padding_free": {"padding_free": True},
    "upo_dpo_chunked": {"logps_chunk_size": 256},
    "upo_dpo_head_on_all_tokens": {},  # the LM head over every position, as a plain forward would (below)
}
CANDIDATES = ("trl_dpo", "upo_dpo", "upo_upo")
LORA_RANK = 16
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

    dtype = getattr(torch, args.dtype)
    if args.model == "smollm2" or args.tokenizer is None:
        path = resolve_model_path("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or path)
    if args.model == "smollm2":
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype), tokenizer
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=96, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(config).to(dtype), tokenizer


def _synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def register_cpu_attention_flops() -> None:
    """FlopCounterMode knows the CUDA attention kernels; on CPU, SDPA runs `_scaled_dot_product_flash_attention_for_cpu`
    (and its backward), which it does not count: count them with its own formulas for the same products."""
    import torch
    from torch.utils import flop_counter

    aten = torch.ops.aten
    if aten._scaled_dot_product_flash_attention_for_cpu in flop_counter.flop_registry:
        return

    @flop_counter.register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu)
    def forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    @flop_counter.register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu_backward)
    def backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def head_on_all_tokens():
    """`upo.logps.forward_logps` with the LM head applied to every position of the batch (prompt, both responses and
    padding) and a full log-softmax, as a forward that returns logits would, then the response tokens' log-probs
    picked out: what applying the head to the response tokens only saves. Same log-probs."""
    import torch

    import upo.logps as logps

    def forward_logps(model, batch, chunk_size=None):
        mask = batch["attention_mask"]
        if mask.dim() == 4:
            dtype = next(model.parameters()).dtype
            mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
        outputs = model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=batch["position_ids"],
                        use_cache=False, output_hidden_states=True, logits_to_keep=1)
        hidden = outputs.hidden_states[-1]
        flat = hidden.reshape(-1, hidden.shape[-1])
        base = model
        while isinstance(getattr(base, "module", None), torch.nn.Module):
            base = base.module
        scale, _ = logps.logit_transform(base.config)
        logits = base.get_output_embeddings()(flat).float() * scale  # (every position, vocabulary)
        all_logps = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
        per_token = all_logps[batch["logit_index"], batch["target_ids"]]
        n_responses = 2 * len(batch["prompt_last_index"])
        index = batch["response_index"]
        out = per_token.new_zeros(n_responses).index_add(0, index, per_token)
        lengths = torch.bincount(index, minlength=n_responses).to(per_token.dtype)
        return logps.ForwardOutput(logps=out, lengths=lengths, prompt_hidden=flat[batch["prompt_last_index"]])

    return forward_logps


def measure_peak(args) -> dict:
    """Matmul throughput of this process: a large square product, and one at the model's own shapes."""
    import torch
    from transformers import AutoConfig

    torch.set_num_threads(args.threads)
    dtype, device = getattr(torch, args.dtype), args.device

    def rate(m, k, n, reps):
        a, b = torch.randn(m, k, dtype=dtype, device=device), torch.randn(k, n, dtype=dtype, device=device)
        for _ in range(2):
            a @ b
        times = []
        for _ in range(reps):
            _synchronize(device)
            start = time.perf_counter()
            a @ b
            _synchronize(device)
            times.append(time.perf_counter() - start)
        return 2 * m * k * n / statistics.median(times) / 1e9

    size = 8192 if device == "cuda" else 2048
    if args.model == "smollm2":
        from upo.models import resolve_model_path

        config = AutoConfig.from_pretrained(resolve_model_path("smollm2-135m-instruct"))
        hidden, inner = config.hidden_size, config.intermediate_size
    else:
        hidden, inner = 96, 256
    rows = 1024  # about one step's tokens (4 pairs of ~250 tokens)
    return {"candidate": "peak", "square_gflops": rate(size, size, size, 10),
            "model_shape_gflops": statistics.fmean([rate(rows, hidden, inner, 30), rate(rows, inner, hidden, 30)]),
            "square_size": size, "model_shape": f"({rows} x {hidden}) @ ({hidden} x {inner}) and back"}


def worker(args) -> dict:
    """One candidate, one process: train warmup + steps, time each step (or count each step's FLOPs)."""
    import copy

    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    if args.worker == "peak":
        return measure_peak(args)
    torch.set_num_threads(args.threads)
    model, tokenizer = build_model(args)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    total_steps = args.warmup + args.steps * (2 if args.breakdown else 1)  # --breakdown: timed, then profiled
    pairs = make_pairs(args.batch_size * total_steps, args.prompt_words, args.response_words)
    dataset = Dataset.from_list(pairs)
    peft_config = None
    if args.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    ref_model = None if args.lora else copy.deepcopy(model)  # the same reference handling for every candidate
    if args.count_flops:
        from torch.utils.flop_counter import FlopCounterMode

        register_cpu_attention_flops()

    profiler = None
    if args.breakdown:
        from torch.profiler import ProfilerActivity, profile

        profiler = profile(activities=[ProfilerActivity.CPU], record_shapes=True)  # from the first timed step on

    class StepTimer(TrainerCallback):
        times: list[float] = []
        flops: list[int] = []

        def on_step_begin(self, *a, **k):
            if profiler is not None and len(self.times) == args.warmup + args.steps:
                profiler.start()
            if args.count_flops:
                self.counter = FlopCounterMode(display=False)
                self.counter.__enter__()
            _synchronize(args.device)
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            _synchronize(args.device)
            self.times.append(time.perf_counter() - self.start)
            if args.count_flops:
                self.counter.__exit__(None, None, None)
                self.flops.append(self.counter.get_total_flops())

    cpu = args.device == "cpu"
    bf16 = args.dtype == "bfloat16"
    common = dict(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch_size,
                  max_steps=total_steps, learning_rate=1e-6, logging_steps=10_000, save_strategy="no",
                  report_to="none", use_cpu=cpu, bf16=bf16, max_length=args.max_length, seed=0, disable_tqdm=True,
                  precompute_ref_batch_size=4 * args.batch_size)
    timer = StepTimer()
    start = time.perf_counter()
    if args.worker.startswith("trl"):
        from trl import DPOConfig, DPOTrainer

        config = DPOConfig(gradient_checkpointing=False, pad_to_multiple_of=None, **common, **VARIANTS[args.worker])
        trainer = DPOTrainer(model=model, ref_model=ref_model, args=config, train_dataset=dataset,
                             processing_class=tokenizer, peft_config=peft_config, callbacks=[timer])
    else:
        import upo.trainer
        from upo import UPOConfig, UPOTrainer

        if args.worker == "upo_dpo_head_on_all_tokens":
            upo.trainer.forward_logps = head_on_all_tokens()
        upo = args.worker == "upo_upo"
        config = UPOConfig(**common, **VARIANTS[args.worker], **json.loads(args.upo_options))
        trainer = UPOTrainer(model, ref_model=ref_model, args=config, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=peft_config, callbacks=[timer], reward_funcs=[length_reward] if upo else None)
    setup = time.perf_counter() - start  # model wrapping, tokenisation, and the precomputed reference if any
    if profiler is not None:
        peak_before = measure_peak(args)
        trainer.train()
        profiler.stop()
        return {"candidate": args.worker, "step_times": timer.times[args.warmup : args.warmup + args.steps],
                "profiled_step_times": timer.times[args.warmup + args.steps :],
                "peak_gflops": [peak_before["model_shape_gflops"], measure_peak(args)["model_shape_gflops"]],
                "ops": profiled_ops(profiler, model.config.get_text_config().vocab_size,
                                   LORA_RANK if args.lora else None)}
    trainer.train()
    step = statistics.median(timer.times[args.warmup :])
    tokens = args.batch_size * 2 * mean_length(pairs, tokenizer)
    peak_mb = (torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {
        "candidate": args.worker,
        "step_s": step,
        "step_times": timer.times,
        "step_flops": timer.flops,
        "setup_s": setup,
        "tokens_per_s": tokens / step,
        "peak_rss_mb": peak_mb,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }


MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}
ATTENTION = {"aten::_scaled_dot_product_flash_attention_for_cpu",
             "aten::_scaled_dot_product_flash_attention_for_cpu_backward"}
# Taken with the operations they call (their own time is small): upo.logps's logsumexp over the vocabulary, forward
# and backward, and a log-softmax where one is used
LOG_SOFTMAX = {"aten::logsumexp", "LogsumexpBackward0", "aten::_log_softmax", "aten::_log_softmax_backward_data"}


def matmul_flops(name: str, shapes: list) -> int:
    """2 * M * K * N (times the batch) from a recorded matmul's input shapes; 0 where they are not recorded."""
    a, b = (shapes[1], shapes[2]) if name in ("aten::addmm", "aten::baddbmm") else (shapes[0], shapes[1])
    if len(a) < 2 or len(b) < 2:
        return 0
    batch = a[0] if len(a) == 3 else 1
    return 2 * batch * a[-2] * a[-1] * b[-1]


def matmul_kind(shapes: list, vocab: int, rank: int | None) -> str:
    dims = {d for shape in shapes for d in shape}
    if vocab in dims:
        return "LM head matmuls"
    if rank is not None and rank in dims:
        return f"LoRA matmuls (rank {rank})"
    return "weight matmuls (the model's own)"


def profiled_ops(profiler, vocab: int, rank: int | None) -> dict:
    """Self CPU seconds and matmul FLOPs of the profiled steps, by kind of operation (see the module docstring); the
    other operations are left out (the rest is taken by difference)."""
    groups: dict[str, dict] = {}
    for event in profiler.key_averages(group_by_input_shape=True):
        name, shapes = event.key, [list(s) for s in event.input_shapes]
        seconds, flops = event.self_cpu_time_total / 1e6, 0
        if name.startswith("Optimizer.step#"):
            kind, seconds = "optimizer step (AdamW)", event.cpu_time_total / 1e6  # with the ops inside it
        elif name in MATMULS:
            kind, flops = matmul_kind(shapes, vocab, rank), matmul_flops(name, shapes) * event.count
        elif name in ATTENTION:
            kind = "attention (SDPA, forward and backward)"
        elif name in LOG_SOFTMAX:
            kind, seconds = "log-softmax over the vocabulary", event.cpu_time_total / 1e6
        else:
            continue
        group = groups.setdefault(kind, {"seconds": 0.0, "flops": 0})
        group["seconds"] += seconds
        group["flops"] += flops
    return groups


def breakdown_report(runs: list[dict], args) -> str:
    """Where each candidate's step goes, and the share of the peak it could reach with every matmul at the peak."""
    lines = [f"model={args.model}{' +LoRA' if args.lora else ' full fine-tuning'}, {args.device} {args.dtype}, "
             f"batch={args.batch_size} pairs, prompt~{args.prompt_words} words, responses~{args.response_words} words, "
             f"{args.steps} timed and {args.steps} profiled steps after {args.warmup} warm-up, {args.threads} threads"]
    for run in runs:
        step_s = statistics.median(run["step_times"])
        steps = len(run["profiled_step_times"])
        peak = statistics.fmean(run["peak_gflops"])
        rows = {kind: {"seconds": g["seconds"] / steps, "flops": g["flops"] / steps} for kind, g in run["ops"].items()}
        rows["rest (norms, activations, copies, autograd, Python)"] = {
            "seconds": max(step_s - sum(g["seconds"] for g in rows.values()), 0.0), "flops": 0}
        flops = sum(g["flops"] for g in rows.values())
        lines += ["", f"**{run['candidate']}**: {step_s:.3f} s per step (profiled: "
                  f"{statistics.median(run['profiled_step_times']):.3f} s); matmul peak at the model's shapes "
                  f"{peak:.0f} GFLOP/s (before and after: {', '.join(f'{g:.0f}' for g in run['peak_gflops'])}); "
                  f"matmul FLOPs {flops / 1e9:.1f} GFLOP per step, {flops / step_s / 1e9:.1f} GFLOP/s = "
                  f"{flops / step_s / 1e9 / peak:.1%} of the peak", "",
                  "| part | share of the step | GFLOP per step | achieved GFLOP/s | share, matmuls at the peak |",
                  "|---|---|---|---|---|"]
        at_peak = 0.0  # seconds: every matmul at the peak, the rest as measured
        for kind, g in sorted(rows.items(), key=lambda kv: -kv[1]["seconds"]):
            ideal = g["flops"] / peak / 1e9 if g["flops"] else g["seconds"]
            at_peak += ideal
            rate = f"{g['flops'] / g['seconds'] / 1e9:.1f}" if g["flops"] and g["seconds"] else "-"
            lines.append(f"| {kind} | {g['seconds'] / step_s:.1%} | {g['flops'] / 1e9:.1f} | {rate} | "
                         f"{ideal / step_s:.1%} |")
        lines += ["", f"Every matmul at the peak, everything else as measured: the step would take "
                  f"{at_peak / step_s:.0%} of its time and reach {flops / at_peak / 1e9 / peak:.0%} of the peak "
                  "(the bound)."]
    return "\n".join(lines)


def run_candidate(candidate: str, args, extra=()) -> dict:
    cmd = [sys.executable, __file__, "--worker", candidate, *args.passthrough, *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TQDM_DISABLE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"{candidate} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def achieved_gflops(run: dict, flops: list[int], warmup: int) -> float:
    """Counted FLOPs of the timed steps over their time (the steps are the same batches in both runs: same seed)."""
    return sum(flops[warmup:]) / sum(run["step_times"][warmup:]) / 1e9


def report(results: list[dict], args, flops: dict) -> str:
    candidates = [c for c in args.candidates if c in results[0]]
    by = {c: [rep[c] for rep in results] for c in candidates}
    memory = "peak GPU memory (MB)" if args.device == "cuda" else "peak RSS (MB)"
    lines = [f"model={args.model}{' +LoRA' if args.lora else ' full fine-tuning'}, {args.device} {args.dtype}, "
             f"batch={args.batch_size} pairs, prompt~{args.prompt_words} words, responses~{args.response_words} "
             f"words, {args.steps} timed steps after {args.warmup} warm-up, {len(results)} repetitions, "
             f"{args.threads} threads", ""]
    roofline = bool(flops)
    header = f"| candidate | median step (s) | tokens/s | {memory} | setup (s) |"
    if roofline:
        header += " GFLOP per step | achieved GFLOP/s | % of matmul peak | % of model-shape matmul |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for c, runs in by.items():
        row = (f"| {c} | {statistics.median(r['step_s'] for r in runs):.3f} | "
               f"{statistics.median(r['tokens_per_s'] for r in runs):.0f} | "
               f"{statistics.median(r['peak_rss_mb'] for r in runs):.0f} | "
               f"{statistics.median(r['setup_s'] for r in runs):.1f} |")
        if roofline and c in flops:
            gf = [achieved_gflops(r, flops[c], args.warmup) for r in runs]
            peaks = [rep["peak"] for rep in results]
            row += (f" {statistics.fmean(flops[c][args.warmup:]) / 1e9:.1f} | {statistics.median(gf):.1f} | "
                    f"{statistics.median(g / p['square_gflops'] for g, p in zip(gf, peaks)):.1%} | "
                    f"{statistics.median(g / p['model_shape_gflops'] for g, p in zip(gf, peaks)):.1%} |")
        lines.append(row)
    if roofline:
        peaks = [rep["peak"] for rep in results]
        square = [p["square_gflops"] for p in peaks]
        shaped = [p["model_shape_gflops"] for p in peaks]
        lines += ["", f"matmul peak, measured in each repetition beside the steps ({args.dtype}, {args.threads} "
                  f"threads): {peaks[0]['square_size']}^3 square product {statistics.median(square):.0f} GFLOP/s "
                  f"(per repetition: {', '.join(f'{g:.0f}' for g in square)}); at the model's shapes, "
                  f"{peaks[0]['model_shape']}: {statistics.median(shaped):.0f} GFLOP/s (per repetition: "
                  f"{', '.join(f'{g:.0f}' for g in shaped)})"]
    lines += ["", "| ratio (median of per-repetition ratios) | value |", "|---|---|"]

    def ratio(key, a, b):
        if a in by and b in by:
            values = [x[key] / y[key] for x, y in zip(by[a], by[b])]
            lines.append(f"| {key}: {a} / {b} | {statistics.median(values):.3f} (per repetition: "
                         f"{', '.join(f'{v:.2f}' for v in values)}) |")

    ratio("step_s", "upo_upo", "upo_dpo")
    for ours in ("upo_dpo", "upo_dpo_precomputed"):
        for theirs in ("trl_dpo", "trl_dpo_best"):
            ratio("tokens_per_s", ours, theirs)
    ratio("peak_rss_mb", "upo_dpo", "trl_dpo")
    ratio("peak_rss_mb", "upo_dpo_precomputed", "trl_dpo_best")
    for variant in ("upo_dpo_separate", "upo_dpo_padding_free", "upo_dpo_chunked", "upo_dpo_head_on_all_tokens"):
        ratio("step_s", variant, "upo_dpo")
        ratio("peak_rss_mb", variant, "upo_dpo")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    parser.add_argument("--tokenizer", default=None, help="Tokenizer folder for the tiny model (default SmolLM2's).")
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="Weights' dtype; bfloat16 also trains with bf16 autocast (TRL's default on GPUs).")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--prompt_words", type=int, default=120)
    parser.add_argument("--response_words", type=int, default=60)
    parser.add_argument("--max_length", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(VARIANTS))
    parser.add_argument("--roofline", action="store_true",
                        help="Measure the matmul peak in each repetition and count each candidate's FLOPs once.")
    parser.add_argument("--upo_options", default="{}", help="JSON of extra UPOConfig options for our candidates.")
    parser.add_argument("--breakdown", action="store_true",
                        help="Profile each candidate once and split its step's time by kind of operation.")
    parser.add_argument("--smoke", action="store_true", help="1 repetition of 2 steps on a tiny model, for CI.")
    parser.add_argument("--out", default=None, help="Also write the results as JSON here.")
    parser.add_argument("--worker", choices=[*VARIANTS, "peak"], help=argparse.SUPPRESS)
    parser.add_argument("--count_flops", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.warmup, args.reps, args.prompt_words, args.response_words = 2, 1, 1, 20, 10
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            sys.exit("--device cuda: torch sees no CUDA device here (torch.cuda.is_available() is False).")
    args.passthrough = [a for a in sys.argv[1:] if a not in ("--smoke", "--roofline")]
    if args.smoke:
        args.passthrough += ["--steps", "2", "--warmup", "1", "--prompt_words", "20", "--response_words", "10"]
    if args.breakdown:
        text = breakdown_report([run_candidate(c, args) for c in args.candidates], args)
        print(text)
        if args.out:
            Path(args.out).write_text(text + "\n")
        return
    flops = {}
    if args.roofline:  # deterministic: the same batches in every run of a candidate, so counted once
        for c in args.candidates:
            flops[c] = run_candidate(c, args, ["--count_flops"])["step_flops"]
            print(f"counted {c}: {statistics.fmean(flops[c]) / 1e9:.1f} GFLOP per step", file=sys.stderr)
    results = []
    for rep in range(args.reps):
        order = args.candidates[rep % len(args.candidates) :] + args.candidates[: rep % len(args.candidates)]
        results.append({c: run_candidate(c, args) for c in order})
        if args.roofline:
            results[-1]["peak"] = run_candidate("peak", args)
        timed = ", ".join(f"{c} {r['step_s']:.3f}s" for c, r in results[-1].items() if c != "peak")
        print(f"repetition {rep + 1}/{args.reps}: {timed}", file=sys.stderr)
    print(report(results, args, flops))
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "results": results, "flops": flops}, indent=2,
                                             default=str))


if __name__ == "__main__":
    main()
