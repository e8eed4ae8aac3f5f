"""The models a `UPOTrainer` trains: loaded by name (`upo.models`), quantized, given an adapter, prepared for
gradient checkpointing and dropout as TRL's DPOTrainer prepares them, before the Trainer places them."""

from __future__ import annotations

import torch

from upo.config import UPOConfig
from upo.errors import ConfigError
from upo.library_errors import refused_by_library
from upo.models import load_causal_lm, load_tokenizer


def disable_dropout(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def freeze_reference(ref_model: torch.nn.Module, args: UPOConfig) -> None:
    ref_model.eval().requires_grad_(False)
    if args.disable_dropout:
        disable_dropout(ref_model)


def _adapter_options(peft_config) -> str:
    names = ("target_modules", "target_parameters", "modules_to_save", "layers_to_transform")
    given = {name: getattr(peft_config, name, None) for name in names}
    given = {name: sorted(value) if isinstance(value, set) else value for name, value in given.items() if value}
    return "The LoRA adapter (" + ", ".join(f"lora_{k}={v!r}" if not k.startswith("layers") else f"{k}={v!r}"
                                             for k, v in given.items()) + ")"


def _adapter_fix(model) -> str:
    """The model's linear modules by their last name, which is what lora_target_modules matches."""
    names = sorted({name.rpartition(".")[2] for name, module in model.named_modules()
                    if isinstance(module, torch.nn.Linear) and name})
    return (f"This model's linear modules are {', '.join(names) or 'none'}: set lora_target_modules to some of "
            "them, or to all-linear (every linear layer but the output head).")


def prepare_models(model, ref_model, args: UPOConfig, processing_class, peft_config, quantization_config):
    """`(model, ref_model, tokenizer)`: each given as an object or a name (a local folder, a Hub ID or a known
    name, loaded with `args.model_init_kwargs`); the policy with its adapter when `peft_config` is given (k-bit
    prepared first when quantized: QLoRA), input grads enabled for checkpointing through an adapter, dropout off
    when `args.disable_dropout`. The tokenizer gets a pad token (EOS) when it has none."""
    if isinstance(model, str) or isinstance(ref_model, str):
        # As TRL: fp32 weights unless model_init_kwargs says otherwise (bf16 then comes from autocast), and code
        # shipped with a model runs only when asked (transformers would otherwise prompt for it on a terminal).
        init_kwargs = {"dtype": "float32", "trust_remote_code": args.trust_remote_code,
                       **(args.model_init_kwargs or {})}
        if str(args.distributed_state.distributed_type).endswith(("MULTI_GPU", "DEEPSPEED")):
            init_kwargs["device_map"] = None  # each process holds its own copy: "auto" would spread it over all
        if isinstance(ref_model, str):
            ref_model = load_causal_lm(ref_model, quantization=quantization_config, **init_kwargs)
    if isinstance(model, str):
        processing_class = processing_class or load_tokenizer(
            model, revision=init_kwargs.get("revision"), trust_remote_code=init_kwargs["trust_remote_code"])
        model = load_causal_lm(model, quantization=quantization_config, **init_kwargs)
    elif quantization_config is not None:
        raise ConfigError("quantization_config applies when the model is loaded by name: pass `model` as a name or "
                          "folder, or quantize the model object yourself.")
    if processing_class is None:
        raise ConfigError("Pass the tokenizer as `processing_class` when `model` is a model object.")
    tokenizer = processing_class
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    quantized = getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)
    if quantized and peft_config is None and not hasattr(model, "peft_config"):
        raise ConfigError("A model loaded in 4-bit or 8-bit trains only through an adapter: set use_peft "
                          "(peft_config), as in QLoRA.")
    if peft_config is not None:
        from peft import get_peft_model, prepare_model_for_kbit_training
        from transformers import set_seed

        if quantized:  # QLoRA: norms and head in fp32, base frozen, input grads for checkpointing
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=bool(args.gradient_checkpointing),
                gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs)
        set_seed(args.seed)  # the adapter's random init follows `seed`, not whatever ran before
        with refused_by_library(_adapter_options(peft_config), lambda: _adapter_fix(model)):
            model = get_peft_model(model, peft_config)
    if args.gradient_checkpointing and hasattr(model, "enable_input_require_grads") and (
            peft_config is not None or hasattr(model, "peft_config")):
        # The frozen embeddings' output needs a grad, or a checkpointed layer passes none to the adapters inside
        # it (reentrant checkpointing). transformers 5.24 does it when it turns checkpointing on, earlier versions
        # did not (transformers#42489); TRL does it here too.
        model.enable_input_require_grads()
    if args.disable_dropout:  # after the adapter is added, as TRL does: its LoRA dropout too
        disable_dropout(model)
    return model, ref_model, tokenizer

