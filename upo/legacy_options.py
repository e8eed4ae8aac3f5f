"""Options that transformers or TRL renamed or removed, each with what replaced it.

An old recipe, command line or script that still uses one is refused in one line that names the replacement
("`evaluation_strategy` is now `eval_strategy`"), in a YAML recipe and on the command line (`upo.options`), in
`UPOConfig(...)` (`upo.config`) and in `UPOTrainer(...)` (`upo.trainer`): transformers 5.24 and TRL 1.16 no longer
accept any of them either, so nothing here is silently translated. What they still accept with a deprecation warning,
upo accepts the same way: `gradient_checkpointing` (transformers' alias of `activation_checkpointing`) and
`torch_dtype` inside `model_init_kwargs` (`from_pretrained`'s old name of `dtype`, renamed there with a warning).

Sources: transformers' MIGRATION_GUIDE_V5.md ("Removing arguments ... in `TrainingArguments`") and its 4.x
deprecations; TRL's DPOConfig deprecations of 0.28 (removed in 0.29), its removals of `padding_value` and
`use_liger_loss`, and `torch_dtype` -> `dtype` in ModelConfig.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

from upo.errors import ConfigError

# Old option -> its replacement: "`new`" for a rename (with how to write it when the value changed shape), or
# "removed: <what to do instead>".
LEGACY_OPTIONS: dict[str, str] = {
    # transformers' TrainingArguments
    "evaluation_strategy": "`eval_strategy`",
    "warmup_ratio": "`warmup_steps` (a value below 1 is a fraction of the training steps: `warmup_steps: 0.1`)",
    "no_cuda": "`use_cpu`",
    "per_gpu_train_batch_size": "`per_device_train_batch_size`",
    "per_gpu_eval_batch_size": "`per_device_eval_batch_size`",
    "push_to_hub_token": "`hub_token`",
    "push_to_hub_model_id": "`hub_model_id`",
    "push_to_hub_organization": "`hub_model_id` (as `organization/name`)",
    "include_inputs_for_metrics": "`include_for_metrics` (`include_for_metrics: [inputs]`)",
    "include_tokens_per_second": "`include_num_input_tokens_seen`",
    "tpu_metrics_debug": "`debug` (`debug: tpu_metrics_debug`)",
    "fsdp_min_num_params": "`fsdp_config` (`fsdp_config: {min_num_params: N}`)",
    "fsdp_transformer_layer_cls_to_wrap": "`fsdp_config` (`fsdp_config: {transformer_layer_cls_to_wrap: [...]}`)",
    "dispatch_batches": "`accelerator_config` (`accelerator_config: {dispatch_batches: true}`)",
    "split_batches": "`accelerator_config` (`accelerator_config: {split_batches: true}`)",
    "torchdynamo": "`torch_compile_backend`",
    "logging_dir": "removed: set the environment variable TENSORBOARD_LOGGING_DIR",
    "use_mps_device": "removed: mps is used when it is there",
    "fp16_backend": "removed: mixed precision is torch.amp, set by `fp16` or `bf16`",
    "half_precision_backend": "removed: mixed precision is torch.amp, set by `fp16` or `bf16`",
    "use_legacy_prediction_loop": "removed: drop it",
    "jit_mode_eval": "removed: use `torch_compile`",
    "tpu_num_cores": "removed: set the environment variable TPU_NUM_CORES",
    "ray_scope": "removed: set the environment variable RAY_SCOPE",
    "past_index": "removed: drop it",
    "mp_parameters": "removed: drop it",
    "use_ipex": "removed: drop it",
    "save_safetensors": "removed: weights are always saved as safetensors",
    # TRL's DPOConfig and ModelConfig
    "torch_dtype": "`dtype`",
    "max_completion_length": "`max_length` (prompt and response together)",
    "max_target_length": "`max_length` (prompt and response together)",
    "max_prompt_length": "removed: `max_length` bounds prompt and response together (a pair whose prompt alone "
                         "reaches it is dropped and counted); filter long prompts out of the data to bound them",
    "rpo_alpha": "`loss_type: [sigmoid, sft]` with `loss_weights: [1.0, <rpo_alpha>]`",
    "reference_free": "`loss_type: [cpo]` with `cpo_alpha: 0` (DPO on the policy's log-probs alone, no reference)",
    "use_liger_loss": "`use_liger_kernel`",
    "padding_value": "removed: set `tokenizer.pad_token` and pass the tokenizer as `processing_class`",
    "label_pad_token_id": "removed: drop it",
    "ref_model_init_kwargs": "removed: load the reference model yourself and pass it as `ref_model`",
    "model_adapter_name": "removed: the adapter trained is the default one",
    "ref_adapter_name": "removed: the reference of an adapter is the base model with the adapter off",
    "force_use_ref_model": "removed: a `ref_model` given is used",
    "generate_during_eval": "removed: run `upo eval` on a saved checkpoint, or use a callback",
    "tools": "removed: give the tools in the dataset's messages",
    "use_logits_to_keep": "removed: upo applies the LM head to the response tokens only",
    "use_num_logits_to_keep": "removed: upo applies the LM head to the response tokens only",
    "is_encoder_decoder": "removed: upo trains causal language models",
    "base_model_attribute_name": "removed: drop it",
}

# Arguments of `UPOTrainer(...)` that `transformers.Trainer` or TRL's DPOTrainer renamed or moved.
LEGACY_TRAINER_ARGUMENTS: dict[str, str] = {
    "tokenizer": "`processing_class`",
    "model_init": "removed: pass the model (an object or a name)",
    "preprocess_logits_for_metrics": "removed: `compute_metrics` receives each pair's implicit rewards",
}


def legacy_message(name: str, table: dict[str, str] = LEGACY_OPTIONS) -> str:
    """"`evaluation_strategy` is now `eval_strategy`", or "`logging_dir` was removed: ..."."""
    replacement = table[name]
    if replacement.startswith("removed: "):
        return f"`{name}` was removed: {replacement[len('removed: '):]}"
    return f"`{name}` is now {replacement}"


def refuse_legacy_options(names: Iterable[str], where: str | None = None,
                          table: dict[str, str] = LEGACY_OPTIONS) -> None:
    """One `ConfigError` naming what replaced each of `names` that is an old option; nothing when none is."""
    old = [name for name in dict.fromkeys(names) if name in table]
    if old:
        prefix = f"{where}: " if where else ""
        raise ConfigError(prefix + "; ".join(legacy_message(name, table) for name in old) + ".")


def rename_deprecated_model_kwargs(kwargs: dict | None) -> dict | None:
    """`model_init_kwargs` with `torch_dtype` renamed `dtype`, with the FutureWarning transformers gives for it
    (`from_pretrained` still takes the old name); `dtype` wins when both are given, as in transformers."""
    if not kwargs or "torch_dtype" not in kwargs:
        return kwargs
    warnings.warn("model_init_kwargs: `torch_dtype` is deprecated (transformers 5); use `dtype`.", FutureWarning,
                  stacklevel=3)
    kwargs = dict(kwargs)
    torch_dtype = kwargs.pop("torch_dtype")
    kwargs.setdefault("dtype", torch_dtype)
    return kwargs
