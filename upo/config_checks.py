"""Every numeric option checked against its range, before any model or data is loaded.

Left to themselves, out-of-range numbers reach torch or the Trainer and fail there with a library traceback
(Adam betas outside [0, 1), `gradient_accumulation_steps` 0), or worse, train silently wrong: a negative
`weight_decay` or `value_learning_rate`, `max_steps` negative with `num_train_epochs` 0 (no step at all, then
"Saved the trained model"), a NaN among `reward_weights` (the designer term silently off). `check_option_ranges`
refuses them all at once, one clause per option, each naming the option, the range and the value given.

An option's range is declared with the option, in its type: `alpha: Annotated[float, NON_NEGATIVE] = field(...)`
(`declared_ranges` reads them), for `UPOConfig`, the other `upo train` options (upo.arguments) and `upo eval`'s
(upo.eval.settings). Not in the field's metadata: `HfArgumentParser` hands every metadata key to argparse, which
refuses any it does not know, so a `range` key would break `upo train`, TRL's parser and any user's script that
parses `UPOConfig`; `typing.get_type_hints` drops `Annotated`'s extras for them and keeps them for us.

The options `UPOConfig` inherits from `transformers.TrainingArguments` are transformers' fields: their ranges are in
`TRAINING_ARGUMENTS_RANGES`, and `NOT_RANGE_CHECKED` holds the few without one, with the reason. A test fails when a
numeric option has no range, so a new option cannot slip through unchecked.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
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


@dataclass(frozen=True)
class EachEntry:
    """A list option (or None): each entry in `entry`. With `all_zero_fix`, a list of zeros is refused too (the term
    it weighs would be silently off), naming that fix."""

    entry: Range
    all_zero_fix: str | None = None


POSITIVE_INT = Range(low=1, integer=True)
OPTIONAL_POSITIVE_INT = Range(low=1, integer=True, none_ok=True)
NON_NEGATIVE = Range(low=0)
POSITIVE = Range(low=0, low_open=True)
OPEN_UNIT_INTERVAL = Range(low=0, high=1, low_open=True, high_open=True)
SEED = Range(low=0, high=2**32 - 1, integer=True)  # numpy's seed range: transformers seeds numpy too
STEP_INTERVAL = Range(low=0, low_open=True, meaning="a number of steps, or below 1 a fraction of the run's steps")

# The options `UPOConfig` takes from transformers.TrainingArguments without declaring them again. Their fields are
# transformers': declaring each again in UPOConfig to carry its range would restate transformers' defaults and help
# (and drift from them). An option UPOConfig does declare again (learning_rate, logging_steps) declares its range.
TRAINING_ARGUMENTS_RANGES: dict[str, Range] = {
    "per_device_train_batch_size": POSITIVE_INT,
    "per_device_eval_batch_size": POSITIVE_INT,
    "gradient_accumulation_steps": POSITIVE_INT,
    "num_train_epochs": NON_NEGATIVE,
    "max_steps": Range(low=1, integer=True, special=(-1,), meaning="-1: train for num_train_epochs"),
    "warmup_steps": Range(low=0, meaning="a number of steps, or below 1 a fraction of the run's steps"),
    "weight_decay": NON_NEGATIVE,
    "adam_beta1": Range(low=0, high=1, high_open=True),
    "adam_beta2": Range(low=0, high=1, high_open=True),
    "adam_epsilon": POSITIVE,
    "max_grad_norm": Range(low=0, meaning="0 turns gradient clipping off"),
    "label_smoothing_factor": Range(low=0, high=0, meaning="upo's losses do not read it: for conservative DPO use "
                                    "label_smoothing"),
    "neftune_noise_alpha": Range(low=0, none_ok=True),
    "torch_empty_cache_steps": OPTIONAL_POSITIVE_INT,
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
}

# Numeric options without a range, and why. (The TRL options upo does not implement, upo.arguments'
# UnimplementedTRLArguments, need none: any value but TRL's default is refused by name.)
NOT_RANGE_CHECKED = {
    "local_rank": "set by the launcher (torchrun, accelerate), not by the user",
}


@functools.cache
def declared_ranges(dataclass_type: type) -> dict[str, Range | EachEntry]:
    """Option name -> its range, as the dataclass declares it in the option's type (`Annotated[float, Range(...)]`),
    in the order of the fields."""
    hints = typing.get_type_hints(dataclass_type, include_extras=True)
    ranges = {}
    for f in dataclasses.fields(dataclass_type):
        for extra in getattr(hints[f.name], "__metadata__", ()):
            if isinstance(extra, (Range, EachEntry)):
                ranges[f.name] = extra
    return ranges


@functools.cache
def option_ranges(config_type: type) -> dict[str, Range | EachEntry]:
    """Every range of a `TrainingArguments` subclass: the inherited options' (`TRAINING_ARGUMENTS_RANGES`), then those
    it declares."""
    declared = declared_ranges(config_type)
    inherited = {name: allowed for name, allowed in TRAINING_ARGUMENTS_RANGES.items() if name not in declared}
    return {**inherited, **declared}


def _as_list(value):
    return [value] if isinstance(value, (int, float, str)) and not isinstance(value, bool) else value


def _list_problem(name: str, values, allowed: EachEntry) -> str | None:
    values = _as_list(values)
    if values is None:
        return None
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name} holds {value!r}, not a number: give one number per entry, e.g. {name}: [1.0, 0.5]"
        if not allowed.entry.allows(value):
            return f"{name} must hold {allowed.entry.describe()} each, got {value!r}"
    if allowed.all_zero_fix and values and all(v == 0 for v in values):
        return f"{name} are all 0, so the term they weigh is silently off: {allowed.all_zero_fix}"
    return None


def range_problems(values, ranges: dict[str, Range | EachEntry]) -> list[str]:
    """One clause per option of `values` (an object's attributes, or a mapping's keys) outside its range."""
    get = values.get if isinstance(values, dict) else lambda name, default: getattr(values, name, default)
    problems = []
    for name, allowed in ranges.items():
        value = get(name, _ABSENT)
        if value is _ABSENT:
            continue
        if isinstance(allowed, EachEntry):
            problem = _list_problem(name, value, allowed)
            if problem:
                problems.append(problem)
        elif not allowed.allows(value):
            problems.append(f"{name} must be {allowed.describe()}, got {value!r}")
    return problems


_ABSENT = object()


def check_ranges(options, where: str | None = None) -> None:
    """Raise ConfigError naming every option of the dataclass instance `options` outside the range it declares."""
    problems = range_problems(options, declared_ranges(type(options)))
    if problems:
        raise ConfigError((f"{where}: " if where else "") + "; ".join(problems) + ".")


def check_option_ranges(config) -> None:
    """Raise ConfigError naming every option of `config` (a `UPOConfig`) outside its range (see the module
    docstring)."""
    problems = range_problems(config, option_ranges(type(config)))
    max_steps, epochs = getattr(config, "max_steps", -1), getattr(config, "num_train_epochs", 1)
    if not problems and max_steps == -1 and epochs == 0:
        problems.append("num_train_epochs is 0 and max_steps is -1: the run would train no step at all; set "
                        "num_train_epochs > 0 or max_steps >= 1")
    if problems:
        raise ConfigError("; ".join(problems) + ".")
