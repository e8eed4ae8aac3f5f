"""Options transformers and TRL renamed or removed: a recipe, a flag or a keyword with an old name is refused in one
line that gives the name (or the setting) that replaced it; what they still accept with a warning, upo does too."""

import dataclasses
import warnings

import pytest
import yaml

from upo import UPOConfig
from upo.cli import main
from upo.errors import ConfigError
from upo.legacy_options import LEGACY_OPTIONS, legacy_message
from upo.options import read_train_options


@pytest.mark.parametrize("name", list(LEGACY_OPTIONS))
def test_a_recipe_with_a_legacy_key_gives_the_new_name(tmp_path, name):
    recipe = tmp_path / "old.yaml"
    recipe.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "o"), "learning_rate": 1e-5, name: 0.1}))
    with pytest.raises(ConfigError) as refused:
        read_train_options(["--config", str(recipe)])
    assert str(refused.value) == f"{recipe}: {legacy_message(name)}."
    if not LEGACY_OPTIONS[name].startswith("removed: "):
        assert "is now `" in str(refused.value)


def test_the_messages_name_the_replacements():
    assert legacy_message("evaluation_strategy") == "`evaluation_strategy` is now `eval_strategy`"
    assert legacy_message("torch_dtype") == "`torch_dtype` is now `dtype`"
    assert legacy_message("warmup_ratio").startswith("`warmup_ratio` is now `warmup_steps` (a value below 1 is a "
                                                     "fraction of the training steps: `warmup_steps: 0.1`)")
    assert legacy_message("max_prompt_length").startswith("`max_prompt_length` was removed: `max_length` bounds")
    assert "`loss_type: [sigmoid, sft]` with `loss_weights: [1.0, <rpo_alpha>]`" in legacy_message("rpo_alpha")


def test_every_legacy_key_is_gone_from_transformers_and_trl_and_is_no_upo_option():
    """They are refused because transformers 5.24 and TRL 1.16 no longer accept them either."""
    from transformers import TrainingArguments
    from trl import DPOConfig, ModelConfig, ScriptArguments

    from upo.options import TRAIN_DATACLASSES

    current = {f.name for dc in (TrainingArguments, DPOConfig, ModelConfig, ScriptArguments, *TRAIN_DATACLASSES,
                                 UPOConfig) for f in dataclasses.fields(dc)}
    assert sorted(set(LEGACY_OPTIONS) & current) == []


def test_legacy_flags_on_the_command_line_are_one_line(tmp_path, capsys):
    assert main(["train", "--output_dir", str(tmp_path / "o"), "--dataset", "x.jsonl", "--evaluation_strategy",
                 "steps", "--warmup-ratio=0.1"]) == 1  # argparse's dashed spelling too
    err = capsys.readouterr().err
    assert err == ("upo train: error: `evaluation_strategy` is now `eval_strategy`; `warmup_ratio` is now "
                   "`warmup_steps` (a value below 1 is a fraction of the training steps: `warmup_steps: 0.1`).\n")


def test_legacy_keywords_in_python_are_refused_by_name():
    with pytest.raises(ConfigError, match=r"^UPOConfig: `evaluation_strategy` is now `eval_strategy`; `no_cuda` is "
                                          r"now `use_cpu`\.$"):
        UPOConfig(output_dir="x", evaluation_strategy="steps", no_cuda=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'evaluation_strategi'"):
        UPOConfig(output_dir="x", evaluation_strategi="steps")


def test_torch_dtype_in_model_init_kwargs_is_accepted_with_a_warning_as_transformers_does():
    with pytest.warns(FutureWarning, match=r"`torch_dtype` is deprecated \(transformers 5\); use `dtype`"):
        config = UPOConfig(output_dir="x", use_cpu=True, model_init_kwargs={"torch_dtype": "bfloat16"})
    assert config.model_init_kwargs == {"dtype": "bfloat16"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert UPOConfig(output_dir="x", use_cpu=True, model_init_kwargs={"dtype": "float16"}).model_init_kwargs == {
            "dtype": "float16"}


def test_gradient_checkpointing_is_accepted_as_transformers_accepts_it():
    config = UPOConfig(output_dir="x", use_cpu=True, gradient_checkpointing=True)
    assert config.activation_checkpointing is True
