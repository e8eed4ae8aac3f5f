"""A YAML's option values are checked against each option's declared type as a flag's text is (upo.option_types):
a mapping, a list or true/false where the option takes something else, or a value outside its choices, is named with
the option and what it takes, instead of training silently or failing in transformers without the option's name."""

import pytest

from upo.cli import main
from upo.errors import ConfigError
from upo.options import parse_train_options


@pytest.mark.parametrize("values, message", [
    ({"reward_funcs": {"readability": 1.0, "length": 0.5}},
     "reward_funcs is the mapping {'readability': 1.0, 'length': 0.5}: give the names as a list and their weights in "
     "reward_weights, in the same order"),
    ({"loss_type": {"sigmoid": 1.0}}, "loss_type is the mapping {'sigmoid': 1.0}: give the names as a list"),
    ({"max_steps": True}, "max_steps is true: give an integer"),
    ({"max_length": [64]}, "max_length is the list [64]: give an integer"),
    ({"bf16": 1}, "bf16 is 1: give true or false"),
    ({"optim": "adamw_foo"}, "optim is 'adamw_foo', which is not one of 'adamw_torch', "),
    ({"lr_scheduler_type": "cosine_foo"}, "lr_scheduler_type is 'cosine_foo', which is not one of 'linear', "),
    ({"reward_weights": [[1.0]], "reward_funcs": ["length"]}, "reward_weights holds the list [1.0]"),
    ({"loss_type": [{"sigmoid": 1}]}, "loss_type holds the mapping {'sigmoid': 1}, where each entry is text"),
], ids=["reward-funcs-mapping", "loss-type-mapping", "bool-for-int", "list-for-int", "int-for-bool", "optim-choice",
        "scheduler-choice", "list-in-list", "mapping-in-list"])
def test_a_yaml_value_of_the_wrong_kind_is_named(values, message):
    with pytest.raises(ConfigError) as error:
        parse_train_options({"output_dir": "unused", **values}, where="run.yaml")
    assert str(error.value).startswith("run.yaml: " + message)


def test_every_problem_is_named_at_once():
    with pytest.raises(ConfigError, match="max_steps is true: .*; bf16 is 1: give true or false"):
        parse_train_options({"output_dir": "unused", "max_steps": True, "bf16": 1})


def test_spellings_of_a_valid_value_are_accepted():
    _, model_args, config = parse_train_options({
        "output_dir": "unused", "reward_funcs": "length", "reward_weights": ["0.5"], "run_name": 7,
        "loss_type": "sigmoid", "lr_scheduler_kwargs": {"min_lr_rate": 0.1}, "lora_target_modules": "all-linear",
        "optim": "adamw_torch", "report_to": ["none"]})
    assert (config.reward_funcs, config.reward_weights, config.run_name, config.loss_type) == (
        ["length"], [0.5], "7", ["sigmoid"])
    assert config.lr_scheduler_kwargs == {"min_lr_rate": 0.1} and model_args.lora_target_modules == ["all-linear"]


def test_upo_train_names_the_option_of_a_yaml_value(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("reward_funcs:\n  readability: 1.0\n  length: 0.5\n")
    assert main(["train", "--config", str(config), "--dataset", "x.jsonl"]) == 1
    assert capsys.readouterr().err.startswith(f"upo train: error: {config}: reward_funcs is the mapping")


def test_transformers_refusing_a_setup_without_naming_it_gets_the_options_named(tmp_path):
    """transformers says "Default process group has not been initialized" for ddp_backend nccl without a GPU: the
    message names the set-up options given."""
    import torch

    from upo import UPOConfig

    if torch.cuda.is_available():
        pytest.skip("nccl runs on this machine")
    with pytest.raises(ConfigError, match=r"^transformers refused the options \(.*\); the set-up options given: "
                                          r"ddp_backend='nccl'\. Change one of them"):
        UPOConfig(output_dir=str(tmp_path), ddp_backend="nccl")
