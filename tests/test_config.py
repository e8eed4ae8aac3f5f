"""UPOConfig itself: values as YAML and the command line give them, normalised to what the trainer reads. (The ranges
of its numeric options: tests/test_config_checks.py.)"""

from upo import UPOConfig


def test_single_values_where_yaml_expects_lists_are_accepted():
    config = UPOConfig(output_dir="unused", reward_funcs="readability", reward_weights=0.5, loss_weights=1)
    assert (config.reward_funcs, config.reward_weights, config.loss_weights) == (["readability"], [0.5], [1])
