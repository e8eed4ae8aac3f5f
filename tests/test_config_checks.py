"""Every numeric option of UPOConfig is range-checked before any model or data is loaded: one message naming each
bad option, its range and the value, never a traceback from torch or the Trainer, never a run that trains wrong."""

import dataclasses
import math
import typing

import pytest
from transformers import TrainingArguments

from upo import UPOConfig
from upo.arguments import ModelArguments, ScriptArguments, UnimplementedTRLArguments
from upo.cli import main
from upo.config_checks import (
    NOT_RANGE_CHECKED,
    TRAINING_ARGUMENTS_RANGES,
    EachEntry,
    Range,
    declared_ranges,
    option_ranges,
)
from upo.errors import ConfigError
from upo.options import TRAIN_DATACLASSES

BASE = dict(output_dir="unused", use_cpu=True, report_to="none")
SCALAR_RANGES = {name: r for name, r in option_ranges(UPOConfig).items() if isinstance(r, Range)}


def numeric_fields(dataclass) -> list[str]:
    hints = typing.get_type_hints(dataclass)
    names = []
    for f in dataclasses.fields(dataclass):
        kinds = typing.get_args(hints[f.name]) or (hints[f.name],)
        inner = [a for k in kinds for a in (typing.get_args(k) or (k,))]
        if any(k in (int, float) for k in inner):
            names.append(f.name)
    return names


def test_every_numeric_option_has_a_range_or_a_reason():
    """Every numeric option of `upo train` (UPOConfig and the TRL script and model arguments) declares its range with
    the option; those UPOConfig inherits from TrainingArguments have theirs in TRAINING_ARGUMENTS_RANGES."""
    declared_here = set(UPOConfig.__annotations__)  # UPOConfig's own options, and those it declares again
    unchecked = []
    # UnimplementedTRLArguments needs no range: any value but TRL's default is refused by name (upo.arguments).
    for dataclass in (ScriptArguments, ModelArguments, UPOConfig):
        for name in numeric_fields(dataclass):
            inherited = dataclass is UPOConfig and name not in declared_here
            if name not in declared_ranges(dataclass) and not (inherited and name in TRAINING_ARGUMENTS_RANGES) \
                    and name not in NOT_RANGE_CHECKED:
                unchecked.append(name)
    assert unchecked == [], f"declare a range with these options (Annotated[type, Range(...)]): {unchecked}"
    assert set(TRAIN_DATACLASSES) == {ScriptArguments, ModelArguments, UnimplementedTRLArguments}
    # The table holds only options UPOConfig inherits as they are: one that UPOConfig declares again declares its range.
    assert set(TRAINING_ARGUMENTS_RANGES) <= {f.name for f in dataclasses.fields(TrainingArguments)} - declared_here
    assert {"alpha", "aw_temperature", "learning_rate", "beta"} <= set(declared_ranges(UPOConfig))
    UPOConfig(**BASE)  # the defaults pass


def test_a_range_is_read_from_the_option_and_parsers_never_see_it():
    """The range sits in the option's type, where HfArgumentParser (upo train's, TRL's, a user's) does not look: in the
    field's metadata it would reach argparse, which refuses keys it does not know."""
    from transformers import HfArgumentParser

    assert option_ranges(UPOConfig)["aw_temperature"] == Range(low=0, low_open=True)
    assert isinstance(option_ranges(UPOConfig)["reward_weights"], EachEntry)
    assert option_ranges(UPOConfig)["adam_beta1"] is TRAINING_ARGUMENTS_RANGES["adam_beta1"]
    assert all("range" not in f.metadata for f in dataclasses.fields(UPOConfig))
    (config,) = HfArgumentParser(UPOConfig).parse_args_into_dataclasses(["--output_dir", "x", "--use_cpu", "true",
                                                                         "--aw_temperature", "0.25"])
    assert config.aw_temperature == 0.25


def out_of_range(name: str):
    allowed = SCALAR_RANGES[name]
    if allowed.low is not None:
        return allowed.low - (0.5 if not allowed.integer else 1) if allowed.low != 0 or not allowed.low_open else 0
    return allowed.high + 1


@pytest.mark.parametrize("name", sorted(SCALAR_RANGES))
def test_each_option_out_of_range_or_nan_is_named(name):
    for bad in (out_of_range(name), math.nan):
        if bad in SCALAR_RANGES[name].special:
            continue
        with pytest.raises(ConfigError, match=rf"(^|; ){name} must be .*, got {bad!r}"):
            UPOConfig(**BASE, **{name: bad})


def test_several_bad_options_are_named_at_once():
    with pytest.raises(ConfigError, match=r"^weight_decay must be a finite number >= 0, got -0\.1; adam_beta1 must be "
                       r"a finite number in \[0, 1\), got 1\.5\.$"):
        UPOConfig(**BASE, adam_beta1=1.5, weight_decay=-0.1)


def test_whole_numbers_must_be_whole_and_true_is_not_a_number():
    with pytest.raises(ConfigError, match=r"gradient_accumulation_steps must be an integer >= 1, got 2\.5"):
        UPOConfig(**BASE, gradient_accumulation_steps=2.5)
    with pytest.raises(ConfigError, match=r"max_length must be an integer >= 2, or None, got True"):
        UPOConfig(**BASE, max_length=True)


@pytest.mark.parametrize("options, message", [
    ({"reward_weights": [1.0, math.nan]}, "reward_weights must hold a finite number each, got nan"),
    ({"reward_weights": [0.0, 0]}, "reward_weights are all 0, so the term they weigh is silently off: set alpha: 0"),
    ({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, -1.0]},
     "loss_weights must hold a finite number >= 0 each, got -1.0"),
    ({"loss_weights": [0.0]}, "loss_weights are all 0"),
    ({"num_train_epochs": 0}, "num_train_epochs is 0 and max_steps is -1: the run would train no step at all"),
    ({"max_steps": -5, "num_train_epochs": 0}, "max_steps must be an integer >= 1, or -1 (-1: train for "
                                               "num_train_epochs), got -5"),
    ({"label_smoothing_factor": 0.1}, "label_smoothing_factor must be 0 (upo's losses do not read it: for "
                                      "conservative DPO use label_smoothing), got 0.1"),
    ({"seed": -1}, "seed must be an integer in [0, 4.29497e+09], got -1"),
    ({"aw_max_weight": math.inf}, None),  # no cap: allowed
], ids=["nan-reward-weight", "zero-reward-weights", "negative-loss-weight", "zero-loss-weights", "zero-epochs",
        "negative-max-steps", "hf-label-smoothing", "negative-seed", "infinite-cap"])
def test_list_and_cross_option_checks(options, message):
    if message is None:
        UPOConfig(**BASE, **options)
        return
    with pytest.raises(ConfigError) as error:
        UPOConfig(**BASE, **options)
    assert message in str(error.value)


@pytest.mark.parametrize("flags, message", [
    (["--adam_beta1", "1.5"], "adam_beta1 must be a finite number in [0, 1), got 1.5"),
    (["--adam_beta2", "-0.1"], "adam_beta2 must be a finite number in [0, 1), got -0.1"),
    (["--gradient_accumulation_steps", "0"], "gradient_accumulation_steps must be an integer >= 1, got 0"),
    (["--precompute_ref_batch_size", "-2"], "precompute_ref_batch_size must be an integer >= 1, or None, got -2"),
    (["--logps_chunk_size", "0"], "logps_chunk_size must be an integer >= 1, or None, got 0"),
    (["--pad_to_multiple_of", "-8"], "pad_to_multiple_of must be"),
    (["--dataset_num_proc", "0"], "dataset_num_proc must be an integer >= 1, or None, got 0"),
    (["--value_learning_rate=-1e-3"], "value_learning_rate must be a finite number >= 0, got -0.001"),
    (["--weight_decay", "-0.01"], "weight_decay must be a finite number >= 0, got -0.01"),
    (["--max_steps", "-3", "--num_train_epochs", "0"], "max_steps must be an integer >= 1, or -1"),
    (["--reward_funcs", "length", "--reward_weights", "nan"], "reward_weights must hold a finite number each, got nan"),
    (["--use_peft", "true", "--lora_r", "0", "--lora_dropout", "1.5"],
     "lora_r must be an integer >= 1, got 0; lora_dropout must be a finite number in [0, 1)"),
], ids=["adam-beta1", "adam-beta2", "grad-accum-0", "precompute-batch", "chunk-0", "pad-multiple", "num-proc",
        "value-lr", "weight-decay", "no-steps", "nan-weight", "lora"])
def test_upo_train_refuses_out_of_range_options_before_loading_the_model(tmp_path, capsys, flags, message):
    # The model and data do not exist: the options are refused first.
    assert main(["train", "--model_name_or_path", str(tmp_path / "no-model"), "--dataset", str(tmp_path / "none.jsonl"),
                 "--output_dir", str(tmp_path / "out"), *flags]) == 1
    err = capsys.readouterr().err
    assert err.startswith("upo train: error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
