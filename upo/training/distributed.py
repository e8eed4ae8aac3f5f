"""Checks that a launch with several processes really trains as one job, on the engine the user asked for.

We never launch processes or talk between them ourselves: `torchrun` and `accelerate launch` start them,
accelerate and `transformers.Trainer` wire them. Two of their fallbacks are silent, and both waste a run:

* on a machine without GPUs, a launch of N processes without `use_cpu=True` gives N *independent*
  single-process runs (transformers only logs a line), each on all the data;
* an accelerate config asking for DeepSpeed on a machine where accelerate cannot enable it (CPU) runs plain data
  parallel instead, with no sharding.

`check_launch` turns the first into an error with the fix and the second into a warning. On CPU, where
accelerate would fall back to data parallel, `enable_sharding_on_cpu` switches FSDP2 (`upo.training.fsdp`) and
DeepSpeed ZeRO (`upo.training.zero`) on; `prepare_reference_model` shards the reference as the policy is.

FSDP1 (`fsdp_version: 1`, accelerate's default when a config names no version) is refused before anything loads,
with the fix (`fsdp_version: 2`): it flattens each unit's parameters into one, so the value head's own learning rate
and its own clipping (`create_optimizer`, `upo.training.gradients`) cannot find its parameters, and upo shards the
reference with FSDP2's `fully_shard`. FSDP2 does all FSDP1 did here, and runs on CPU too, where it is tested.
"""

from __future__ import annotations

import os
import warnings

from upo.errors import ConfigError
from upo.training.fsdp import enable_fsdp2_on_cpu, fsdp_requested, requested_fsdp_version, shard_reference
from upo.training.zero import enable_deepspeed_on_cpu
from upo.training.zero import prepare_reference as prepare_deepspeed_reference


def check_launch(args) -> None:
    """Raise (or warn) when the launcher and the training setup disagree; see the module docstring."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and args.world_size == 1:
        raise ConfigError(
            f"Launched as {launched} processes (WORLD_SIZE={launched}), but each would train alone on all the data: "
            "accelerate found no GPU to run them together on. On a machine without GPUs, set use_cpu=True "
            "(--use_cpu true) so that the processes train as one job over gloo."
        )
    if fsdp_requested(args) and requested_fsdp_version(args) == 1:
        raise ConfigError(
            "The accelerate config asks for FSDP1 (fsdp_version: 1, accelerate's default when the config names no "
            "version), which upo does not support (it flattens the parameters: the value head would train at the "
            "policy's learning rate and be clipped by each process's own norm, and upo shards the reference with "
            "FSDP2): set fsdp_version: 2 in the config's fsdp_config (examples/accelerate/fsdp2.yaml)."
        )
    state = getattr(args, "distributed_state", None)
    engine = str(getattr(state, "distributed_type", "")).rsplit(".", 1)[-1]
    for requested, name in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DEEPSPEED")):
        if os.environ.get(requested, "false").lower() != "true" or engine == name:
            continue
        if engine in ("MULTI_CPU", "NO"):
            continue  # upo enables them on CPU itself (enable_sharding_on_cpu); one process has nothing to shard
        warnings.warn(
            f"The accelerate config asks for {name}, but accelerate runs {engine or 'no distributed engine'}. "
            "Training goes on as plain data parallel, without sharding.",
            stacklevel=2,
        )


def enable_sharding_on_cpu(trainer) -> None:
    """After the Trainer created its accelerator: FSDP2 or DeepSpeed on a CPU run whose config asks for it."""
    trainer.is_fsdp_enabled = trainer.is_fsdp_enabled or enable_fsdp2_on_cpu(trainer.accelerator, trainer.args)
    if not trainer.is_deepspeed_enabled and enable_deepspeed_on_cpu(trainer.accelerator, trainer.args):
        from transformers.integrations.deepspeed import propagate_args_to_deepspeed

        trainer.is_deepspeed_enabled = True
        propagate_args_to_deepspeed(trainer.accelerator, trainer.args)  # what the Trainer does for DeepSpeed
    if trainer.is_deepspeed_enabled and trainer.args.max_grad_norm and hasattr(trainer.model, "upo_value_head"):
        warnings.warn(
            "Under DeepSpeed the engine clips every gradient by one global norm (gradient_clipping = max_grad_norm), "
            "the value head's included; elsewhere upo clips the value head on its own, so that its large fresh "
            "gradient does not shrink the policy's steps. Use FSDP2 (examples/accelerate/fsdp2.yaml) to keep that, "
            "or accept the joint clipping.",
            stacklevel=2,
        )


def prepare_reference_model(trainer, ref_model):
    """The frozen reference, sharded like the policy under FSDP2 or DeepSpeed ZeRO-3, as TRL does."""
    if trainer.is_fsdp_enabled:
        return shard_reference(ref_model, trainer.accelerator)
    if trainer.is_deepspeed_enabled:
        return prepare_deepspeed_reference(ref_model, trainer.accelerator)
    return trainer.accelerator.prepare_model(ref_model, evaluation_mode=True)
