"""FSDP2 (`torch.distributed.fsdp.fully_shard`) through accelerate, on GPUs and on CPU (gloo).

On GPUs accelerate enables FSDP from the launcher's config (`accelerate launch --config_file
examples/accelerate/fsdp2.yaml`) and transformers' Trainer drives it: the model is sharded by
`fully_shard`, one unit per decoder layer plus the embeddings and the root; checkpoints and the final model
are gathered as the config's `fsdp_state_dict_type` says.

On CPU, accelerate 1.15 never enables FSDP: `AcceleratorState` turns an FSDP config into FSDP only when the
processes run on accelerators (`MULTI_GPU`, `MULTI_XPU`, ...), and a gloo run (`MULTI_CPU`) goes on as plain
data parallel. Nothing in accelerate's FSDP2 code path needs an accelerator: `fully_shard`, its
reduce-scatter and all-gather, the full state dict for saving and the distributed checkpoint all run over
gloo (torch 2.13). `enable_fsdp2_on_cpu` therefore lifts that one check: it builds the FSDP plugin from the
same config (the launcher's environment, or `--fsdp` / `--fsdp_config`) and switches the shared accelerator
state to FSDP before anything is prepared. From there on, accelerate and the Trainer do everything as on GPUs;
upo shards nothing itself. FSDP1 (`fsdp_version: 1`) is refused before (`upo.training.distributed`).

The reference model, when one is kept, is sharded too, so each process holds 1/N of its weights, as TRL does
(`trl.models.utils.prepare_fsdp`). TRL shards it as one unit, since its patched forward applies the LM head
inside the model's forward; upo applies the head outside it, on the response tokens only (`upo.logps`), so the
reference gets the policy's units instead: one per decoder layer, and the final norm with the embeddings and
the LM head in one unit that stays gathered after the forward, where upo then calls the head.
"""

from __future__ import annotations

import os

import torch


def fsdp_requested(args) -> bool:
    """Whether the launcher's accelerate config or the training arguments ask for FSDP."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" or bool(getattr(args, "fsdp", None))


def requested_fsdp_version(args) -> int:
    """The FSDP version the config asks for (accelerate's default, as its plugin reads it, is 1)."""
    if getattr(args, "fsdp_plugin_args", None):
        return int(args.fsdp_plugin_args.get("fsdp_version", 1))
    return int(os.environ.get("FSDP_VERSION", "1"))


def _plugin(args):
    from accelerate.utils import FullyShardedDataParallelPlugin

    if getattr(args, "fsdp_plugin_args", None):
        return FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)
    return FullyShardedDataParallelPlugin()  # from the FSDP_* variables `accelerate launch` sets from its config


def enable_fsdp2_on_cpu(accelerator, args) -> bool:
    """Switch a CPU run whose config asks for FSDP2 from plain data parallel to FSDP2; True if it did.

    Called right after the Trainer creates its accelerator, before any model is prepared (see the module
    docstring for why accelerate needs this on CPU and nothing else).
    """
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    state = accelerator.state
    if state.distributed_type != DistributedType.MULTI_CPU or not fsdp_requested(args):
        return False
    plugin = _plugin(args)
    if plugin.fsdp_version != 2:
        return False  # FSDP1: refused before this (upo.training.distributed.check_launch)
    if state.mixed_precision != "no":  # what AcceleratorState does on GPUs: FSDP2's MixedPrecisionPolicy (bf16, fp16)
        plugin.set_mixed_precision(state.mixed_precision)
    # Both states are shared singletons: every later `Accelerator`, `PartialState()` and the Trainer see FSDP.
    state.fsdp_plugin = plugin
    state.distributed_type = DistributedType.FSDP
    PartialState().distributed_type = DistributedType.FSDP
    return True


def shard_reference(model: torch.nn.Module, accelerator) -> torch.nn.Module:
    """The frozen reference, sharded over the processes like the policy (accelerate's `fsdp2_prepare_model`)."""
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model

    return fsdp2_prepare_model(accelerator, model).eval()


def without_tied_copies(state_dict: dict, model: torch.nn.Module) -> dict:
    """`state_dict` with each tied weight once (the embeddings', not `lm_head.weight`), as `save_pretrained` writes it.

    A full state dict gathered from FSDP2's shards holds a tied weight under both names as two separate tensors, so
    `save_pretrained`, which finds tied weights by shared storage, would save both. A copy that is not equal to the
    weight it is tied to is kept (then the weights were not tied after all)."""
    tied = getattr(model, "all_tied_weights_keys", None) or {}
    drop = {copy for copy, source in tied.items()
            if copy in state_dict and source in state_dict and state_dict[copy] is not state_dict[source]
            and torch.equal(state_dict[copy], state_dict[source])}
    return {k: v for k, v in state_dict.items() if k not in drop} if drop else state_dict
