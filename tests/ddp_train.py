"""Trains the tiny test model with UPOTrainer: launched by the tests under torchrun / accelerate launch, run
as a subprocess to be killed, or called in-process (`main([...])`).

    torchrun --standalone --nproc_per_node 2 tests/ddp_train.py --out OUT --data pairs.jsonl --batch_size 2
    python tests/ddp_train.py --out OUT --data pairs.jsonl --batch_size 4      # the same global batch, 1 process

Writes `OUT/final.safetensors` (every trained weight, value head included) and `OUT/rank{r}.json` (what
each rank did: world size, reward-function calls, reference forwards before training, the log history).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # helpers: the tiny model and tokenizer

import torch  # noqa: E402
from helpers import FIXTURES, nan_gradient_in_first_layer, tiny_model, tiny_training_options  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoTokenizer, TrainerCallback  # noqa: E402

from upo import UPOConfig, UPOTrainer  # noqa: E402

CALLS = {"reward": 0, "forward": 0}


def length_reward(prompts, completions, **kwargs):
    """A designer objective every response has (no None), so each rank's value-loss mean has the same count."""
    CALLS["reward"] += 1
    return [float(len(c)) for c in completions]



class PolicyGradNorms(TrainerCallback):
    """The policy's gradient norm (the value head left out) as the optimizer gets it, computed here from the
    gradients themselves, each step (where they are visible: not under DeepSpeed)."""

    def __init__(self):
        self.norms = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        grads = [p.grad.norm() for n, p in model.named_parameters() if p.grad is not None and "upo_value_head" not in n]
        if grads:
            self.norms.append(torch.linalg.vector_norm(torch.stack(grads)).item())


class SleepEachStep(TrainerCallback):
    """Slows training down so that a test can kill it between two checkpoints."""

    def __init__(self, seconds):
        self.seconds = seconds

    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(self.seconds)


class SlowSaveTrainer(UPOTrainer):
    """Holds one checkpoint save half-way (model written, optimizer not yet) so a test can kill it right there."""

    slow_save_at = None
    fp16_scale = None

    def create_accelerator_and_postprocess(self):
        super().create_accelerator_and_postprocess()
        if self.fp16_scale:  # tests/training/test_mixed_precision.py's FP16Trainer, under a launcher
            self.accelerator.native_amp = True
            self.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=self.fp16_scale)

    def _save_optimizer_and_scheduler(self, output_dir):
        if self.state.global_step == self.slow_save_at:
            time.sleep(120)
        super()._save_optimizer_and_scheduler(output_dir)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--batch_size", type=int, required=True, help="per device")
    parser.add_argument("--max_steps", type=int, default=4)
    parser.add_argument("--designer", action="store_true", help="alpha = 1 with a reward function and value head")
    parser.add_argument("--precompute_ref", action="store_true")
    parser.add_argument("--lora", action="store_true", help="train a LoRA adapter (r=4, every linear layer)")
    parser.add_argument("--tied", action="store_true", help="the LM head is the embedding matrix")
    parser.add_argument("--nan_gradient", action="store_true", help="layer 0's MLP passes NaN gradients back")
    parser.add_argument("--fp16_scale", type=float, default=None,
                        help="fp16 as accelerate sets it up on a GPU (autocast and a GradScaler of this initial "
                        "scale), on the CPU; with --option fp16=true")
    parser.add_argument("--save_steps", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="resume_from_checkpoint=True")
    parser.add_argument("--step_sleep", type=float, default=0.0, help="seconds to sleep after each step")
    parser.add_argument("--slow_save_at", type=int, default=None, help="stall the checkpoint save of this step")
    parser.add_argument("--option", action="append", default=[], help="extra UPOConfig option as key=json_value")
    args = parser.parse_args(argv)
    CALLS.update(reward=0, forward=0)

    options = tiny_training_options(
        output_dir=str(Path(args.out) / "run"), per_device_train_batch_size=args.batch_size, max_steps=args.max_steps,
        learning_rate=1e-3, logging_steps=1, seed=0, data_seed=0, save_strategy="steps" if args.save_steps else "no",
        save_steps=args.save_steps or 500, precompute_ref_log_probs=args.precompute_ref,
        alpha=1.0 if args.designer else 0.0,
        ddp_backend="gloo" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
    )
    for item in args.option:
        key, _, value = item.partition("=")
        options[key] = json.loads(value)
    config = UPOConfig(**options)
    tokenizer = AutoTokenizer.from_pretrained(FIXTURES / "tiny_tokenizer")
    model = tiny_model(tied=args.tied)
    if args.nan_gradient:
        nan_gradient_in_first_layer(model)
    hook = model.register_forward_hook(lambda *_: CALLS.__setitem__("forward", CALLS["forward"] + 1))
    SlowSaveTrainer.slow_save_at = args.slow_save_at
    SlowSaveTrainer.fp16_scale = args.fp16_scale
    peft_config = None
    if args.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SlowSaveTrainer(model, args=config, train_dataset=args.data, processing_class=tokenizer,
                         peft_config=peft_config,
                         reward_funcs=[length_reward] if args.designer else None,
                         callbacks=[norms := PolicyGradNorms(),
                                    *([SleepEachStep(args.step_sleep)] if args.step_sleep else [])])
    hook.remove()
    trainer.train(resume_from_checkpoint=True if args.resume else None)

    rank = trainer.args.process_index
    out = Path(args.out)
    state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped)  # gathered from every shard (FSDP, ZeRO-3)
    if trainer.args.should_save:
        save_file({k: v.detach().contiguous() for k, v in state_dict.items()}, out / "final.safetensors")
    seen = {"world_size": trainer.args.world_size, "engine": str(trainer.accelerator.distributed_type),
            "sharded": any(type(p).__name__ == "DTensor" for p in trainer.model.parameters()),
            "reference_sharded": trainer.ref_model is not None and any(  # FSDP2, or ZeRO-3 partitions (ds_id)
                type(p).__name__ == "DTensor" or hasattr(p, "ds_id") for p in trainer.ref_model.parameters()),
            "reward_calls": CALLS["reward"],
            "reference_forwards": CALLS["forward"], "log_history": trainer.state.log_history,
            "policy_grad_norms": norms.norms,
            "ref_chosen_logps": trainer.train_dataset["ref_chosen_logps"][:]
            if "ref_chosen_logps" in trainer.train_dataset.column_names else None}
    (out / f"rank{rank}.json").write_text(json.dumps(seen, default=str))
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return trainer


if __name__ == "__main__":
    main()
