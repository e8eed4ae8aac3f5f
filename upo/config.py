"""`UPOConfig`: TRL's `DPOConfig` names plus UPO's own, on top of `transformers.TrainingArguments`."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field, fields
from typing import Annotated

from transformers import TrainingArguments

from upo import methods
from upo.config_checks import (
    NON_NEGATIVE,
    OPEN_UNIT_INTERVAL,
    OPTIONAL_POSITIVE_INT,
    POSITIVE,
    STEP_INTERVAL,
    EachEntry,
    Range,
    check_option_ranges,
)
from upo.engines import check_engine_installed
from upo.errors import ConfigError
from upo.legacy_options import refuse_legacy_options, rename_deprecated_model_kwargs
from upo.losses import AUX_NORMALIZATIONS, VALUE_BASELINES
from upo.rewards.builtin import builtin_names
from upo.rewards.guard import DEFAULT_TIMEOUT

# The options of the machine and precision set-up, which transformers checks against the devices it finds.
SETUP_OPTIONS = ("bf16", "fp16", "tf32", "use_cpu", "bf16_full_eval", "fp16_full_eval", "ddp_backend", "fsdp",
                 "deepspeed", "torch_compile", "torch_compile_backend", "torch_compile_mode")


def _with_options_named(config, error: ValueError) -> str:
    """transformers' message for options it refuses, with the options named when it names none ("Your setup doesn't
    support bf16/gpu", "Default process group has not been initialized"): the set-up options given away from their
    defaults."""
    text = str(error).strip()
    names = [f.name for f in fields(TrainingArguments)]
    if any(re.search(rf"(?<![A-Za-z_]){re.escape(name)}(?![A-Za-z_])", text) for name in names if len(name) > 3):
        return text
    defaults = TrainingArguments.__dataclass_fields__
    given = [f"{name}={getattr(config, name)!r}" for name in SETUP_OPTIONS
             if getattr(config, name, None) not in (defaults[name].default, None, False, "", [])]
    named = f"; the set-up options given: {', '.join(given)}. Change one of them, or run where it is supported" \
        if given else ""
    return f"transformers refused the options ({text}){named}."


@dataclass
class UPOConfig(TrainingArguments):
    """Configuration of `UPOTrainer`. Every field has a help string; `upo train --help` lists them all.

    The loss is `L = L_pref + alpha * L_aux + L_value` (see docs/METHOD.md). With `alpha = 0`, or
    without `reward_funcs`, training is plain DPO (or whichever `loss_type` is chosen).

    Defaults are TRL 1.16 `DPOConfig`'s, except (each option's help says why): `bf16` (on only on a GPU that
    supports it; TRL: on unless fp16), `activation_checkpointing` / `gradient_checkpointing` (off; TRL: on) and
    `pad_to_multiple_of` (None, which is what TRL's "auto" means off AWS Neuron).

    A numeric option declares its range in its type (`Annotated[float, NON_NEGATIVE]`); `__post_init__` checks every
    one (upo.config_checks) before transformers or torch sees the values.
    """

    # TrainingArguments defaults that differ, as in TRL's DPOConfig.
    learning_rate: Annotated[float, NON_NEGATIVE] = field(
        default=1e-6, metadata={"help": "The initial learning rate for AdamW."}
    )
    logging_steps: Annotated[float, STEP_INTERVAL] = field(default=10, metadata={"help": "Log every X update steps."})
    # TrainingArguments defaults that TRL's DPOConfig changes and upo changes differently (see the help).
    bf16: bool | None = field(
        default=None,
        metadata={"help": "bf16 mixed precision (autocast; the weights keep the dtype they were loaded in). Default "
                  "(None): on where a CUDA GPU supports bf16 (and fp16 and use_cpu are off), off elsewhere. TRL's "
                  "DPOConfig turns it on everywhere unless fp16 is set, which on a machine without such a GPU fails "
                  "unless use_cpu is set; upo keeps fp32 on CPU, where bf16 autocast is several times slower without "
                  "bf16 instructions (AVX512-BF16, AMX: measured 5-7x on a 12M-parameter Llama) and would change the "
                  "CPU demo's numbers. `--bf16 true` on CPU works (with use_cpu)."},
    )
    activation_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "Recompute activations in the backward pass instead of keeping them: less memory, about 20%% "
                  "more time per step. Default off (None); TRL's DPOConfig turns it on. upo leaves it off because "
                  "the models it ships and tests fit without it; turn it on for large models or long sequences "
                  "(with LoRA, the input gradients it needs are enabled).", "nargs": "?", "const": True},
    )
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "transformers' older name of activation_checkpointing (the same option; default off, "
                  "TRL's on).", "nargs": "?", "const": True},
    )

    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={"help": "DDP's find_unused_parameters. False (TRL and transformers: None, which means True "
                  "without activation checkpointing): the value head and the LM head run outside the model's forward, "
                  "which DDP with True takes for unused parameters and then fails on."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Allow training into an output_dir that already holds a model or checkpoints."},
    )

    # --- Preference term (TRL's names) ---
    beta: Annotated[float, POSITIVE] = field(
        default=0.1,
        metadata={"help": "Strength of the KL regularisation to the reference: higher stays closer to it."},
    )
    loss_type: list[str] = field(
        default_factory=lambda: [methods.DEFAULT_LOSS_TYPE], metadata={"help": methods.loss_type_help()},
    )
    loss_weights: Annotated[
        list[float] | None, EachEntry(NON_NEGATIVE, all_zero_fix="give at least one loss type a weight above 0")
    ] = field(
        default=None, metadata={"help": "One weight per `loss_type`; default 1.0 each."}
    )
    label_smoothing: Annotated[float, Range(low=0, high=0.5, high_open=True)] = field(
        default=0.0,
        metadata={"help": "Probability that a preference label is flipped (conservative DPO), in [0, 0.5)."},
    )
    max_length: Annotated[int | None, Range(low=2, integer=True, none_ok=True)] = field(
        default=1024,
        metadata={"help": "Maximum tokens of prompt + response; longer responses are truncated, pairs whose "
                  "prompt alone reaches it are dropped and counted."},
    )
    truncation_mode: str = field(
        default="keep_start", metadata={"help": "Only 'keep_start' is supported (TRL deprecated 'keep_end')."}
    )
    shared_prompt: bool = field(
        default=True,
        metadata={"help": "Compute each prompt once for both responses (one row prompt + chosen + rejected, with "
                  "an attention mask that keeps rejected from seeing chosen). Same log-probs, fewer tokens."},
    )
    padding_free: bool = field(
        default=False,
        metadata={"help": "Pack the whole batch into one row with no padding (implies shared_prompt). Attention "
                  "then spans the packed row: it pays off with few, long pairs of very uneven lengths."},
    )
    logps_chunk_size: Annotated[int | None, OPTIONAL_POSITIVE_INT] = field(
        default=None,
        metadata={"help": "Apply the LM head this many response tokens at a time, recomputing each chunk in the "
                  "backward pass: the (tokens, vocabulary) logits are never all in memory. None: in one go."},
    )
    pad_to_multiple_of: Annotated[int | str | None, OPTIONAL_POSITIVE_INT] = field(
        default=None,
        metadata={"help": "Pad each batch's length to a multiple of this value. TRL's default 'auto' is accepted and "
                  "means None (TRL pads to 128 only on AWS Neuron, which upo does not target)."},
    )
    precompute_ref_log_probs: bool = field(
        default=False,
        metadata={"help": "Compute the reference log-probs once before training, so no reference model is "
                  "kept in memory or run during training. No effect for a reference-free loss_type (simpo, cpo, "
                  "orpo, sft), which reads none."},
    )
    precompute_ref_batch_size: Annotated[int | None, OPTIONAL_POSITIVE_INT] = field(
        default=None,
        metadata={"help": "Batch size of the reference precomputation; default per_device_train_batch_size."},
    )
    model_init_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": "Keyword arguments for `AutoModelForCausalLM.from_pretrained` when the model is a name, "
                  "as a dict or a JSON string ('{\"dtype\": \"bfloat16\"}'). `dtype` defaults to float32, as in TRL; "
                  "`revision` also applies to the tokenizer."},
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow models and tokenizers that ship their own Python code (run when loaded). Off: such "
                  "code never runs."},
    )
    disable_dropout: bool = field(
        default=True, metadata={"help": "Disable dropout in the policy and reference models."}
    )
    dataset_num_proc: Annotated[int | None, OPTIONAL_POSITIVE_INT] = field(
        default=None, metadata={"help": "Number of processes used to tokenise the dataset."}
    )

    # --- UPO's designer term ---
    alpha: Annotated[float, NON_NEGATIVE] = field(
        default=1.0,
        metadata={"help": "Weight of the advantage-weighted designer term: trades user preference against the "
                  "designer objectives. 0 gives plain DPO exactly. For aoppo, drov and alol: the weight of r_aux in "
                  "their reward. MODPO and CSFT take alpha: 0 (their designer weight is modpo_weight, or none)."},
    )
    reward_funcs: list[str] | None = field(
        default=None,
        metadata={"help": f"Designer reward functions: built-in names ({', '.join(builtin_names())}; parameters as "
                  "'length:target_words=30') or dotted import paths 'my_pkg.my_module.my_reward' with TRL GRPO's "
                  "signature f(prompts, completions, **kwargs)."},
    )
    reward_weights: Annotated[  # a negative weight penalises its objective
        list[float] | None, EachEntry(Range(), all_zero_fix="set alpha: 0 to train without the designer term")
    ] = field(
        default=None, metadata={"help": "One weight per reward function (after standardisation); default 1.0 each."}
    )
    standardize_rewards: bool = field(
        default=True,
        metadata={"help": "Z-score each designer objective over the training responses before weighting, so "
                  "that weights are priorities, not units."},
    )
    value_baseline: str = field(
        default="value_head",
        metadata={"help": "Baseline V(x) of the advantage: 'value_head' (learnt by expectile regression), "
                  "'pair_mean' (mean of the pair's two rewards) or 'batch_mean'."},
    )
    expectile_tau: Annotated[
        float, Range(low=0.5, high=1, high_open=True, meaning="0.5 fits the mean; IQL's expectile is an upper one")
    ] = field(
        default=0.7, metadata={"help": "Expectile of the value regression, in [0.5, 1): higher is more optimistic."}
    )
    aux_loss: str = field(default=methods.DEFAULT_AUX_LOSS, metadata={"help": methods.aux_loss_help()})
    designer_target: Annotated[float | None, Range(low=0, low_open=True, none_ok=True)] = field(
        default=None,
        metadata={"help": "A designer gain to aim for, in std of the designer reward over the training responses "
                  "(e.g. 0.5): before training it sets aw_temperature to the T whose tilt pi_ref * exp(r_aux / T) of "
                  "the training responses gains that much (upo.rewards.target; the reward scale beta / T), logged and "
                  "written to upo_config.json. A target no reweighting of the responses reaches is refused. None: "
                  "aw_temperature as given."},
    )
    aw_temperature: Annotated[float, POSITIVE] = field(
        default=1.0,
        metadata={"help": "Temperature T of the designer term's weights exp(A / T): lower is sharper (the better "
                  "replies of a pair weigh more against the worse). 1.0 with the default aux_loss topr, chosen with it "
                  "by a pre-registered rule on three tasks (docs/results/2026-12-03-screening.md); the paper's "
                  "term is aux_loss awr at 0.5."},
    )
    aw_max_weight: Annotated[float, Range(low=0, low_open=True, infinite_ok=True, meaning="inf: no cap")] = field(
        default=20.0, metadata={"help": "Cap on the advantage weights."}
    )
    aux_normalization: str = field(
        default="per_sequence",
        metadata={"help": "How L_aux averages w * log pi(y|x): 'per_sequence' (each response's log-prob summed over "
                  "its tokens, averaged over the responses: the paper's log pi(y|x), as DPO's log-ratios and the "
                  "KTO/HALOs code) or 'per_token' (over the batch's response tokens; about a response's length times "
                  "weaker). docs/results/2026-11-29-temperature-1-over-seeds.md measures both."},
    )
    value_learning_rate: Annotated[float, NON_NEGATIVE] = field(
        default=1e-3, metadata={"help": "Learning rate of the value head (its own parameter group)."}
    )
    desirable_weight: Annotated[float, POSITIVE] = field(
        default=1.0, metadata={"help": "KTO: weight of the desirable responses' loss (TRL's name)."}
    )
    undesirable_weight: Annotated[float, POSITIVE] = field(
        default=1.0, metadata={"help": "KTO: weight of the undesirable responses' loss (TRL's name)."}
    )
    cliprange: Annotated[float, OPEN_UNIT_INTERVAL] = field(
        default=0.2, metadata={"help": "aoPPO: the ratio is clipped to [1 - cliprange, 1 + cliprange] (TRL's name)."}
    )
    alol_clip: Annotated[float, OPEN_UNIT_INTERVAL] = field(
        default=0.9,
        metadata={"help": "A-LOL: the importance weight pi / pi_ref is clipped to [1 - alol_clip, 1 + alol_clip] "
                  "(the authors' default, 0.9)."},
    )
    csft_tags: list[str] = field(
        default_factory=lambda: ["[good]", "[bad]"],
        metadata={"help": "CSFT: the control tags put before chosen and rejected responses; generation from a CSFT "
                  "model starts with the first (`upo eval` does it)."},
    )
    discopop_tau: Annotated[float, POSITIVE] = field(
        default=0.05,
        metadata={"help": "DiscoPOP: the temperature of its log-ratio modulation (TRL's name; the paper's 0.05)."},
    )
    simpo_gamma: Annotated[float, NON_NEGATIVE] = field(
        default=0.5,
        metadata={"help": "SimPO: the target reward margin gamma, >= 0 (TRL's CPOConfig name and default)."},
    )
    cpo_alpha: Annotated[float, NON_NEGATIVE] = field(
        default=1.0,
        metadata={"help": "CPO: the weight of the NLL of the chosen responses (TRL's CPOConfig name and default); 0 "
                  "leaves the reference-free DPO loss alone."},
    )
    modpo_weight: Annotated[float, Range(low=0, high=1, high_open=True)] = field(
        default=0.5,
        metadata={"help": "MODPO's weight on the designer rewards, in [0, 1); the preference gets 1 - weight."},
    )
    skip_nonfinite_batches: bool = field(
        default=False,
        metadata={"help": "On a NaN or infinite loss or gradient, skip the batch (counted as "
                  "nonfinite/skipped_batches in the logs) instead of stopping with the step and the loss component "
                  "named. The weights are never updated with a non-finite value either way, except under DeepSpeed, "
                  "whose engine updates them inside the backward pass: there upo checks the loss, and the gradients "
                  "are left to the engine's own checks (docs/RELIABILITY.md). In fp16 a loss-scale overflow is the "
                  "scaler's skipped step (amp/skipped_steps), not a fault."},
    )
    reward_timeout: Annotated[
        float | None, Range(low=0, low_open=True, none_ok=True, meaning="seconds per call; None: no limit")
    ] = field(
        default=DEFAULT_TIMEOUT,
        metadata={"help": f"Seconds one call of a reward function may take (one call scores a batch of up to 256 "
                  f"pairs); past it the run stops, naming the function and the rows. Default {DEFAULT_TIMEOUT:g} (an "
                  "hour: a function that never returns does not hold the machine forever); null (in YAML) or None: no "
                  "limit."},
    )
    reward_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where designer scores are cached; default $UPO_CACHE/rewards or ~/.cache/upo/rewards."},
    )

    def __post_init__(self):
        check_engine_installed()  # before transformers sets up the processes, where a missing one is a traceback
        if isinstance(self.model_init_kwargs, str):  # from the command line or a YAML string
            try:
                self.model_init_kwargs = json.loads(self.model_init_kwargs)
            except json.JSONDecodeError as error:
                raise ConfigError(f"model_init_kwargs is not valid JSON ({error.msg}, column {error.colno}): give a "
                                  "JSON object, e.g. '{\"dtype\": \"bfloat16\"}'.") from None
        if self.model_init_kwargs is not None and not isinstance(self.model_init_kwargs, dict):
            raise ConfigError(f"model_init_kwargs must be a mapping of from_pretrained keyword arguments, got "
                              f"{self.model_init_kwargs!r}.")
        self.model_init_kwargs = rename_deprecated_model_kwargs(self.model_init_kwargs)
        if isinstance(self.pad_to_multiple_of, str):  # TRL's "auto", or a number given as text
            value = self.pad_to_multiple_of.strip().lower()
            if value in ("auto", "none", "null", ""):
                self.pad_to_multiple_of = None
            elif value.isdigit() and int(value) > 0:
                self.pad_to_multiple_of = int(value)
            else:
                raise ConfigError(f"pad_to_multiple_of must be a positive integer, 'auto' or None, got {value!r}.")
        if self.bf16 is None:  # see the option's help: on where a GPU supports it, as TRL would be there
            from transformers.utils import is_torch_bf16_gpu_available

            self.bf16 = not self.fp16 and not self.use_cpu and is_torch_bf16_gpu_available()
        check_option_ranges(self)  # every numeric option's range, before transformers or torch sees it
        try:
            super().__post_init__()
        except ValueError as error:  # transformers' checks of contradictory options: its message, without a traceback
            raise ConfigError(_with_options_named(self, error)) from error
        if isinstance(self.loss_type, str):
            self.loss_type = [self.loss_type]
        # YAML gives one value where a list is expected (`reward_funcs: readability`, `reward_weights: 0.5`); a
        # string would otherwise be iterated character by character.
        for name in ("reward_funcs", "reward_weights", "loss_weights"):
            value = getattr(self, name)
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                setattr(self, name, [value])
        for name in self.loss_type:
            if name in methods.RENAMED_LOSS_TYPES:
                raise ConfigError(f"loss_type {name!r} is now {methods.RENAMED_LOSS_TYPES[name]!r} (renamed in TRL).")
            if name not in methods.METHODS:
                raise ConfigError(f"Unknown loss_type {name!r}; choose among {list(methods.METHODS)}.")
            for option in methods.METHODS[name].needs_positive:
                if not getattr(self, option) > 0:
                    raise ConfigError(f"loss_type {name!r} needs {option} above 0, got {getattr(self, option)}: "
                                      f"{methods.METHODS[name].summary}.")
        baselines = [name for name in self.loss_type if methods.METHODS[name].alone]
        if baselines and len(self.loss_type) > 1:
            others = [n for n in self.loss_type if n != baselines[0]]
            raise ConfigError(f"loss_type {baselines[0]!r} replaces the preference loss: use it alone "
                              f"(loss_type: [{baselines[0]}]), not with {others}.")
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ConfigError(
                f"loss_weights has {len(self.loss_weights)} values but loss_type has {len(self.loss_type)}: "
                "give one weight per loss type."
            )
        if self.value_baseline not in VALUE_BASELINES:
            raise ConfigError(f"Unknown value_baseline {self.value_baseline!r}; choose among {list(VALUE_BASELINES)}.")
        if self.aux_loss not in methods.DESIGNER_TERMS:
            raise ConfigError(f"Unknown aux_loss {self.aux_loss!r}; choose among {list(methods.DESIGNER_TERMS)}.")
        if self.aux_normalization not in AUX_NORMALIZATIONS:
            raise ConfigError(f"Unknown aux_normalization {self.aux_normalization!r}; choose among "
                              f"{list(AUX_NORMALIZATIONS)}.")
        unpaired = methods.lead_method(self.loss_type).rows == methods.UNPAIRED
        if unpaired and methods.DESIGNER_TERMS[self.aux_loss].pairwise and self.alpha > 0:
            raise ConfigError(f"aux_loss {self.aux_loss!r} with loss_type {self.loss_type}: it compares the two "
                              "responses of a pair, and a row of unpaired feedback has one. Use aux_loss: awr or topr.")
        if unpaired and self.value_baseline == "pair_mean" and self.alpha > 0:
            raise ConfigError(f"value_baseline 'pair_mean' with loss_type {self.loss_type}: a row of unpaired feedback "
                              "has one completion with a designer reward, so the pair mean is its own reward and every "
                              "advantage is 0 (plain likelihood training). Use value_baseline: value_head or "
                              "batch_mean.")
        if not (isinstance(self.csft_tags, (list, tuple)) and len(self.csft_tags) == 2 and all(
                isinstance(t, str) and t.strip() and t == t.strip() for t in self.csft_tags)
                and self.csft_tags[0] != self.csft_tags[1]):
            raise ConfigError(f"csft_tags must be two different non-empty tags without surrounding spaces, got "
                              f"{self.csft_tags!r}.")
        if (self.reward_weights is not None and self.reward_funcs is not None
                and len(self.reward_weights) != len(self.reward_funcs)):
            raise ConfigError(
                f"reward_weights has {len(self.reward_weights)} values but reward_funcs has "
                f"{len(self.reward_funcs)}: give one weight per reward function."
            )


def _refusing_legacy_options(init):
    """`UPOConfig(evaluation_strategy=...)` names the option that replaced it (`upo.legacy_options`), where the
    dataclass's own `__init__` would raise "unexpected keyword argument"."""

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        refuse_legacy_options(kwargs, where=type(self).__name__)
        init(self, *args, **kwargs)

    return __init__


UPOConfig.__init__ = _refusing_legacy_options(UPOConfig.__init__)
