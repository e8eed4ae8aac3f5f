"""Memory per process: FSDP2 against DDP, both through `accelerate launch` with the shipped configs, on CPU (gloo).

    python bench/sharding_memory.py --model smollm2 --steps 3            # SmolLM2-135M, full fine-tuning
    python bench/sharding_memory.py --model smollm2 --steps 3 --lora     # LoRA r=16

Each engine trains the same model on the same batches (DPO with a reference model kept, not precomputed, so
that the reference's share shows too) for a few steps. Every process reports:

* the bytes of what it holds of the training state, counted tensor by tensor: its part of the policy's weights,
  their gradients (at the optimizer step), the optimizer's state, and the reference's weights (under FSDP2 a
  process holds 1/N of each sharded tensor; a unit kept gathered after the forward, the reference's final norm,
  embeddings and LM head, counts whole);
* its resident memory at the end of training and its peak (`ru_maxrss`). The peak includes loading the full
  model once in every process, before FSDP2 shards it (accelerate's `fsdp_cpu_ram_efficient_loading` avoids
  that on GPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.step_time import make_pairs  # noqa: E402

CONFIGS = {"ddp": "examples/accelerate/ddp.yaml", "fsdp2": "examples/accelerate/fsdp2.yaml"}


def local_bytes(tensors) -> int:
    total = 0
    for t in tensors:
        t = t.to_local() if hasattr(t, "to_local") else t
        total += t.numel() * t.element_size()
    return total


def worker(args) -> None:
    import copy

    import psutil
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from upo import UPOConfig, UPOTrainer
    from upo.models import resolve_model_path

    path = resolve_model_path("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    peft_config = None
    if args.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    ref_model = None if args.lora else copy.deepcopy(model)
    pairs = make_pairs(args.batch_size * args.steps * 2, args.prompt_words, args.response_words)

    class StepTimer(TrainerCallback):
        times: list[float] = []
        gradients_mb = 0.0

        def on_step_begin(self, *a, **k):
            self.start = time.perf_counter()

        def on_pre_optimizer_step(self, args, state, control, model=None, **k):
            # the gradients exist between the backward pass and the optimizer step (then set to None)
            grads = (p.grad for p in trainer.model.parameters() if p.grad is not None)
            self.gradients_mb = max(self.gradients_mb, local_bytes(grads) / 2**20)

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter() - self.start)

    timer = StepTimer()
    config = UPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch_size,
                       max_steps=args.steps, learning_rate=1e-6, logging_steps=10_000, save_strategy="no",
                       report_to="none", use_cpu=True, max_length=512, seed=0, disable_tqdm=True, alpha=0.0)
    trainer = UPOTrainer(model, ref_model=ref_model, args=config, train_dataset=Dataset.from_list(pairs),
                         processing_class=tokenizer, peft_config=peft_config, callbacks=[timer])
    trainer.train()
    policy = trainer.model
    optimizer_state = [v for state in trainer.optimizer.state.values() for v in state.values()
                       if isinstance(v, torch.Tensor) and v.dim() > 0]
    report = {
        "rank": trainer.args.process_index,
        "engine": str(trainer.accelerator.distributed_type).rsplit(".", 1)[-1],
        "weights_mb": local_bytes(policy.parameters()) / 2**20,
        "gradients_mb": timer.gradients_mb,
        "optimizer_mb": local_bytes(optimizer_state) / 2**20,
        "reference_mb": local_bytes(trainer.ref_model.parameters()) / 2**20 if trainer.ref_model is not None else 0.0,
        "rss_end_mb": psutil.Process().memory_info().rss / 2**20,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "step_s": statistics.median(timer.times[1:] or timer.times),
    }
    Path(args.out, f"rank{report['rank']}.json").write_text(json.dumps(report))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["smollm2"], default="smollm2")
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=2, help="pairs per process")
    parser.add_argument("--prompt_words", type=int, default=60)
    parser.add_argument("--response_words", type=int, default=30)
    parser.add_argument("--engines", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    passthrough = [a for a in sys.argv[1:] if not a.startswith("--engines")]
    passthrough = [a for a in passthrough if a not in args.engines]
    rows = {}
    for engine in args.engines:
        out = tempfile.mkdtemp()
        cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file", CONFIGS[engine],
               __file__, "--worker", "--out", out, *passthrough]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT)}
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{engine} failed:\n{done.stderr[-4000:]}")
        rows[engine] = [json.loads(p.read_text()) for p in sorted(Path(out).glob("rank*.json"))]
        print(f"{engine}: done", file=sys.stderr)
    keys = ["weights_mb", "gradients_mb", "optimizer_mb", "reference_mb", "rss_end_mb", "peak_rss_mb", "step_s"]
    print(f"SmolLM2-135M-Instruct, {'LoRA r=16' if args.lora else 'full fine-tuning'}, DPO with a reference model, "
          f"2 processes x {args.batch_size} pairs (prompts ~{args.prompt_words} words, responses "
          f"~{args.response_words}), {args.steps} steps, float32, 1 thread per process; "
          "per process (rank 0 / rank 1)\n")
    print("| engine | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for engine, ranks in rows.items():
        cells = [" / ".join(f"{r[k]:.0f}" if k != "step_s" else f"{r[k]:.2f}" for r in ranks) for k in keys]
        print(f"| {ranks[0]['engine']} ({CONFIGS[engine]}) | " + " | ".join(cells) + " |")
    if set(rows) == set(CONFIGS):
        print("\n| FSDP2 / DDP (rank 0) | " + " | ".join(
            f"{rows['fsdp2'][0][k] / rows['ddp'][0][k]:.2f}" if rows["ddp"][0][k] else "-" for k in keys) + " |")


if __name__ == "__main__":
    main()
