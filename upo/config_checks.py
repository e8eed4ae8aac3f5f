"""Every numeric option of `UPOConfig` checked against its range, before any model or data is loaded.

Left to themselves, out-of-range numbers reach torch or the Trainer and fail there with a library traceback
(Adam betas outside [0, 1), `gradient_accumulation_steps` 0), or worse, train silently wrong: a negative
`weight_decay` or `value_learning_rate`, `max_steps` negative with `num_train_epochs` 0 (no step at all, then
"Saved the trained model"), a NaN among `reward_weights` (the designer term silently off). `check_option_ranges`
refuses them all at once, one clause per option, each naming the option, the range and the value given.

`OPTION_RANGES` holds the range of every numeric field of `UPOConfig` (its own, TRL's and transformers'), and
`NOT_RANGE_CHECKED` the few that have none to check, with the reason. A test fails when a numeric field is in
neither, so a new option cannot slip through unchecked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from upo.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """Allowed values of one option: a number in [low, high] (ends open when asked), or one of `special`."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    none_ok: bool = False
    infinite_ok: bool = False  # `aw_max_weight: inf` means no cap
    special: tuple = ()
    meaning: str = ""  # what a special value means, or a hint shown with the range

    def allows(self, value) -> bool:
        if value is None:
            return self.none_ok
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if value in self.special:
            return True
        if math.isnan(value) or (math.isinf(value) and not self.infinite_ok):
            return False
        if self.integer and (isinstance(value, float) and not value.is_integer()):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number" if self.infinite_ok else "a finite number"
        if self.low is not None and self.low == self.high:
            text = f"{self.low:g}"
        elif self.low is not None and self.high is not None:
            opening, closing = "(" if self.low_open else "[", ")" if self.high_open else "]"
            text = f"{kind} in {opening}{self.low:g}, {self.high:g}{closing}"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            text = f"{kind} {'<' if self.high_open else '<='} {self.high:g}"
        else:
            text = kind
        alternatives = [repr(v) for v in self.special] + (["None"] if self.none_ok else [])
        if alternatives:
            text += f", or {' or '.join(alternatives)}"
        return text + (f" ({self.meaning})" if self.meaning else "")


POSITIVE_INT = Range(low=1, integer=True)
OPTIONAL_POSITIVE_INT = Range(low=1, integer=True, none_ok=True)
NON_NEGATIVE = Range(low=0)
SEED = Range(low=0, high=2**32 - 1, integer=True)  # numpy's seed range: transformers seeds numpy too
STEP_INTERVAL = Range(low=0, low_open=True, meaning="a number of steps, or below 1 a fraction of the run's steps")

OPTION_RANGES: dict[str, Range] = {
    # transformers.TrainingArguments
    "per_device_train_batch_size": POSITIVE_INT,
    "per_device_eval_batch_size": POSITIVE_INT,
    "gradient_accumulation_steps": POSITIVE_INT,
    "num_train_epochs": NON_NEGATIVE,
    "max_steps": Range(low=1, integer=True, special=(-1,), meaning="-1: train for num_train_epochs"),
    "learning_rate": NON_NEGATIVE,
    "warmup_steps": Range(low=0, meaning="a number of steps, or below 1 a fraction of the run's steps"),
    "weight_decay": NON_NEGATIVE,
    "adam_beta1": Range(low=0, high=1, high_open=True),
    "adam_beta2": Range(low=0, high=1, high_open=True),
    "adam_epsilon": Range(low=0, low_open=True),
    "max_grad_norm": Range(low=0, meaning="0 turns gradient clipping off"),
    "label_smoothing_factor": Range(low=0, high=0, meaning="upo's losses do not read it: for conservative DPO use "
                                    "label_smoothing"),
    "neftune_noise_alpha": Range(low=0, none_ok=True),
    "torch_empty_cache_steps": OPTIONAL_POSITIVE_INT,
    "logging_steps": STEP_INTERVAL,
    "eval_steps": Range(low=0, low_open=True, none_ok=True, meaning="None: as logging_steps"),
    "eval_delay": NON_NEGATIVE,
    "eval_accumulation_steps": OPTIONAL_POSITIVE_INT,
    "save_steps": STEP_INTERVAL,
    "save_total_limit": Range(low=1, integer=True, none_ok=True, meaning="None keeps every checkpoint"),
    "seed": SEED,
    "data_seed": Range(low=0, high=2**32 - 1, integer=True, none_ok=True),
    "dataloader_num_workers": Range(low=0, integer=True),
    "dataloader_prefetch_factor": OPTIONAL_POSITIVE_INT,
    "ddp_bucket_cap_mb": OPTIONAL_POSITIVE_INT,
    "ddp_timeout": POSITIVE_INT,
    # TRL's DPO names
    "beta": Range(low=0, low_open=True),
    "label_smoothing": Range(low=0, high=0.5, high_open=True),
    "max_length": Range(low=2, integer=True, none_ok=True),
    "logps_chunk_size": OPTIONAL_POSITIVE_INT,
    "pad_to_multiple_of": OPTIONAL_POSITIVE_INT,
    "precompute_ref_batch_size": OPTIONAL_POSITIVE_INT,
    "dataset_num_proc": OPTIONAL_POSITIVE_INT,
    "desirable_weight": Range(low=0, low_open=True),
    "undesirable_weight": Range(low=0, low_open=True),
    "cliprange": Range(low=0, high=1, low_open=True, high_open=True),
    "alol_clip": Range(low=0, high=1, low_open=True, high_open=True),
    # UPO's own
    "alpha": NON_NEGATIVE,
    "expectile_tau": Range(low=0.5, high=1, high_open=True, meaning="0.5 fits the mean; IQL's expectile is an "
                           "upper one"),
    "aw_temperature": Range(low=0, low_open=True),
    "aw_max_weight": Range(low=0, low_open=True, infinite_ok=True, meaning="inf: no cap"),
    "value_learning_rate": NON_NEGATIVE,
    "modpo_weight": Range(low=0, high=1, high_open=True),
    "reward_timeout": Range(low=0, low_open=True, none_ok=True, meaning="seconds per call; None: no limit"),
}

# Each entry of these lists is checked; see `_list_problems` for the lists as a whole.
LIST_RANGES: dict[str, Range] = {
    "loss_weights": NON_NEGATIVE,
    "reward_weights": Range(),  # a negative weight penalises its objective
}

# `upo train`'s model options (upo.arguments.ModelArguments, TRL's ModelConfig names): checked by upo.cli.
MODEL_RANGES: dict[str, Range] = {
    "lora_r": POSITIVE_INT,
    "lora_alpha": Range(low=0, low_open=True),
    "lora_dropout": Range(low=0, high=1, high_open=True),
}

NOT_RANGE_CHECKED = {
    "local_rank": "set by the launcher (torchrun, accelerate), not by the user",
    **dict.fromkeys(("router_aux_loss_coef", "ld_alpha", "f_alpha_divergence_coef", "discopop_tau",
                     "ref_model_mixup_alpha", "ref_model_sync_steps", "test_split_size"),
                    "a TRL option upo does not implement: refused by name unless left at TRL's default "
                    "(upo.arguments)"),
}


def check_model_option_ranges(model_args) -> None:
    problems = range_problems(model_args, MODEL_RANGES)
    if problems:
        raise ConfigError("; ".join(problems) + ".")


def _as_list(value):
    return [value] if isinstance(value, (int, float, str)) and not isinstance(value, bool) else value


def _list_problems(config) -> list[str]:
    problems = []
    for name, entry_range in LIST_RANGES.items():
        values = _as_list(getattr(config, name, None))
        if values is None:
            continue
        for value in values:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"{name} holds {value!r}, not a number: give one number per entry, e.g. "
                                f"{name}: [1.0, 0.5]")
                break
            if not entry_range.allows(value):
                problems.append(f"{name} must hold {entry_range.describe()} each, got {value!r}")
                break
        else:
            if values and all(v == 0 for v in values):
                fix = ("set alpha: 0 to train without the designer term" if name == "reward_weights"
                       else "give at least one loss type a weight above 0")
                problems.append(f"{name} are all 0, so the term they weigh is silently off: {fix}")
    return problems


def range_problems(values, ranges: dict[str, Range]) -> list[str]:
    """One clause per option of `values` (an object's attributes, or a mapping's keys) outside its range."""
    get = values.get if isinstance(values, dict) else lambda name, default: getattr(values, name, default)
    problems = []
    for name, allowed in ranges.items():
        value = get(name, _ABSENT)
        if value is not _ABSENT and not allowed.allows(value):
            problems.append(f"{name} must be {allowed.describe()}, got {value!r}")
    return problems


_ABSENT = object()

# `upo eval`'s settings and a frontier's `eval:` section (upo.eval.evaluate.EvalSettings).
EVAL_RANGES: dict[str, Range] = {
    "max_prompts": OPTIONAL_POSITIVE_INT,
    "max_new_tokens": POSITIVE_INT,
    "batch_size": POSITIVE_INT,
    "seed": SEED,
    "max_length": Range(low=2, integer=True),
    "temperature": Range(low=0, low_open=True),
}


def check_eval_settings(settings, where: str = "evaluation") -> None:
    """Raise ConfigError naming every evaluation setting out of range, and any `reward_weights` not finite."""
    problems = range_problems(settings, EVAL_RANGES)
    if isinstance(settings, dict):
        weights = settings.get("reward_weights")
    else:
        weights = getattr(settings, "reward_weights", None)
    for value in weights or []:
        if not Range().allows(value):
            problems.append(f"reward_weights must hold a finite number each, got {value!r}")
            break
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems) + ".")


def check_option_ranges(config) -> None:
    """Raise ConfigError naming every option of `config` outside its range (see the module docstring)."""
    problems = range_problems(config, OPTION_RANGES)
    problems += _list_problems(config)
    max_steps, epochs = getattr(config, "max_steps", -1), getattr(config, "num_train_epochs", 1)
    if not problems and max_steps == -1 and epochs == 0:
        problems.append("num_train_epochs is 0 and max_steps is -1: the run would train no step at all; set "
                        "num_train_epochs > 0 or max_steps >= 1")
    if problems:
        raise ConfigError("; ".join(problems) + ".")


def read_yaml_mapping(path, what: str = "config file") -> dict:
    """A YAML file of `key: value`, read with one-line errors: missing or unreadable file, invalid YAML, a key given
    twice (PyYAML would silently keep the last), or a file that is not a mapping."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
            twice = sorted({str(k) for k in keys if keys.count(k) > 1})
            if twice:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key(s) {twice} appear more than once in one mapping (YAML readers silently keep "
                    "the last)", node.start_mark)
            return super().construct_mapping(node, deep=deep)

    try:
        with open(path) as f:
            values = yaml.load(f, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except OSError as error:
        raise ConfigError(f"Cannot read the {what} {path}: {error.strerror}.") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of option: value, got {type(values).__name__}.")
    return values
