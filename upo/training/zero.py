"""DeepSpeed ZeRO (stages 1-3) through accelerate, on GPUs and on CPU (gloo).

On GPUs accelerate enables DeepSpeed from the launcher's config (`accelerate launch --config_file
examples/accelerate/deepspeed_zero{1,2,3}.yaml`) and transformers' Trainer drives it. On CPU accelerate 1.15
never does: `AcceleratorState` turns a DeepSpeed config into DeepSpeed only when not `cpu`, and without a GPU
transformers runs with `cpu` (`use_cpu=True`), so the run goes on as plain data parallel. DeepSpeed itself
trains on CPU (its CPU accelerator, over the gloo process group accelerate has already set up; ZeRO-1, 2 and 3
checked with deepspeed 0.19.8). `enable_deepspeed_on_cpu` therefore does what `upo.training.fsdp` does for
FSDP2: it builds the DeepSpeed plugin from the same config (the launcher's environment) and switches the shared
accelerator state to DeepSpeed right after the Trainer creates its accelerator; accelerate and transformers then
run `deepspeed.initialize`, the engine's backward and step, and its checkpoints, as on GPUs.

The reference model, when one is kept, is wrapped as TRL does (`trl.models.utils.prepare_deepspeed`): an
inference engine with the training config's ZeRO-3 settings under stage 3 (its weights partitioned like the
policy's), and a plain copy on each process under stages 1 and 2, which shard only the optimizer state and
gradients.
"""

from __future__ import annotations

import copy

from upo.engines import deepspeed_requested


def enable_deepspeed_on_cpu(accelerator, args) -> bool:
    """Switch a CPU run whose accelerate config asks for DeepSpeed from plain data parallel to DeepSpeed; True if
    it did. Called right after the Trainer creates its accelerator, before anything is prepared."""
    from accelerate.state import PartialState
    from accelerate.utils import DeepSpeedPlugin, DistributedType

    state = accelerator.state
    if state.distributed_type != DistributedType.MULTI_CPU or not deepspeed_requested():
        return False
    plugin = DeepSpeedPlugin()  # from the ACCELERATE_DEEPSPEED_* variables `accelerate launch` sets from its config
    plugin.set_mixed_precision(state.mixed_precision)
    plugin.select(_from_accelerator_state=True)
    # Both states are shared singletons: every later `Accelerator`, `PartialState()` and the Trainer see DeepSpeed.
    state.deepspeed_plugins = plugin
    state.distributed_type = DistributedType.DEEPSPEED
    PartialState().distributed_type = DistributedType.DEEPSPEED
    accelerator.deepspeed_engine_wrapped = None
    return True


def prepare_reference(model, accelerator):
    """The frozen reference under DeepSpeed, as TRL 1.16 prepares it (`trl.models.utils.prepare_deepspeed`)."""
    import deepspeed

    config = copy.deepcopy(accelerator.state.deepspeed_plugin.deepspeed_config)
    stage = config["zero_optimization"]["stage"]
    hidden_size = getattr(model.config.get_text_config(), "hidden_size", None)
    if hidden_size is not None and stage == 3:  # TRL's bucket sizes for an inference engine
        config.update({"zero_optimization.reduce_bucket_size": hidden_size * hidden_size,
                       "zero_optimization.stage3_param_persistence_threshold": 10 * hidden_size,
                       "zero_optimization.stage3_prefetch_bucket_size": 0.9 * hidden_size * hidden_size})
    # No optimizer here: without these blocks DeepSpeed builds no optimizer or scheduler for the reference.
    config.pop("optimizer", None)
    config.pop("scheduler", None)
    config["zero_optimization"].pop("offload_optimizer", None)
    if stage != 3:  # stages 1 and 2 shard only what training keeps: the reference stays whole on each process
        config["zero_optimization"]["stage"] = 0
    engine, *_ = deepspeed.initialize(model=model, config=config)
    engine.eval()
    return engine
