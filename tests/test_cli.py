"""The `upo` command: train from flags and YAML, score, env, and its error messages."""

import json
import subprocess
import sys

import pytest
from helpers import make_pairs, tiny_model, tiny_training_flags, write_jsonl
from transformers import AutoModelForCausalLM

from upo.cli import main


@pytest.fixture
def model_dir(tmp_path, tokenizer):
    path = tmp_path / "tiny-model"
    tiny_model().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def data_file(tmp_path):
    return write_jsonl(tmp_path / "pairs.jsonl", make_pairs())


TRAIN_FLAGS = tiny_training_flags(max_steps=2)


def test_train_from_yaml_and_flags(tmp_path, model_dir, data_file, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(f"model_name_or_path: {model_dir}\ndataset: {data_file}\nreward_funcs: [readability, length]\n"
                      "reward_weights: [1.0, 0.5]\nalpha: 0.5\nlearning_rate: 1.0e-4\n")
    out = tmp_path / "out"
    assert main(["train", "--config", str(config), "--output_dir", str(out), *TRAIN_FLAGS]) == 0
    assert "Loaded 16 standard pairs" in capsys.readouterr().out
    AutoModelForCausalLM.from_pretrained(out)
    saved = json.loads((out / "upo_config.json").read_text())
    assert saved["alpha"] == 0.5 and saved["reward_funcs"] == ["readability", "length"]
    # A second run into the same folder is refused, not silently overwritten.
    assert main(["train", "--config", str(config), "--output_dir", str(out), *TRAIN_FLAGS]) == 1
    assert "already holds a trained model" in capsys.readouterr().err


def test_train_with_lora(tmp_path, model_dir, data_file):
    out = tmp_path / "lora"
    assert main(["train", "--model_name_or_path", str(model_dir), "--dataset", str(data_file), "--output_dir", str(out),
                 "--use_peft", "true", "--lora_r", "4", *TRAIN_FLAGS]) == 0
    assert (out / "adapter_model.safetensors").is_file()


def test_unknown_yaml_option_is_named(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("dataset: x.jsonl\nrpo_alpah: 0.5\n")
    assert main(["train", "--config", str(config)]) == 1
    assert "unknown options ['rpo_alpah']" in capsys.readouterr().err
    config.write_text("dataset: x.jsonl\nrpo_alpha: 0.5\n")  # TRL's removed option: named with its replacement
    assert main(["train", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "`rpo_alpha` is now `loss_type: [sigmoid, sft]` with `loss_weights: [1.0, <rpo_alpha>]`" in err


def test_contradictory_options_are_refused(tmp_path, data_file, capsys):
    assert main(["train", "--dataset", str(data_file), "--output_dir", str(tmp_path / "o"),
                 "--loss_type", "sigmoid", "hinge", "--loss_weights", "1.0"]) == 1
    assert "one weight per loss type" in capsys.readouterr().err


def run_cli(tmp_path, data_file, *options):
    return main(["train", "--dataset", str(data_file), "--output_dir", str(tmp_path / "out"), *options])


@pytest.mark.parametrize("options, message", [
    (["--per_device_train_batch_size", "0"], "per_device_train_batch_size must be an integer >= 1, got 0"),
    (["--learning_rate", "-1"], "learning_rate must be a finite number >= 0, got -1.0"),
    (["--max_length", "1"], "max_length must be an integer >= 2, or None, got 1"),
    (["--eval_strategy", "steps"], "eval_strategy='steps' needs an eval_dataset: pass one"),
    (["--eval_dataset", "DATA", "--eval_strategy", "steps", "--eval_steps", "2", "--save_steps", "3",
      "--load_best_model_at_end", "true"], "saving steps to be a round multiple of the evaluation steps"),
    (["--reward_weights", "1.0"], "reward_weights has 1 values for 0 reward functions"),
    (["--resume_from_checkpoint", "nowhere"], "Cannot resume from nowhere: not a complete upo checkpoint, it is not a "
                                              "folder"),
], ids=["zero-batch", "negative-lr", "max-length-1", "eval-without-data", "best-model-steps", "weights-without-funcs",
        "resume-from-nothing"])
def test_contradictory_or_out_of_range_options(tmp_path, data_file, model_dir, capsys, options, message):
    options = [str(data_file) if o == "DATA" else o for o in options]
    assert run_cli(tmp_path, data_file, "--model_name_or_path", str(model_dir), "--use_cpu", "true", "--report_to",
                   "none", *options) == 1
    err = capsys.readouterr().err
    assert err.startswith("upo train: error: ") and message in err and "Traceback" not in err


@pytest.mark.parametrize("yaml_text, message", [
    ("reward_weights: [high]\n", "reward_weights holds 'high', not a number"),
    ("dataset: [unclosed\n", "is not valid YAML"),
    ("- a list\n- not a mapping\n", "must hold a mapping of option: value, got list"),
    ("alpha: 1.0\nbeta: 0.1\nalpha: 0.0\n", "the key(s) ['alpha'] appear more than once in one mapping (YAML readers "
                                           "silently keep the last)"),
], ids=["non-numeric-weights", "invalid-yaml", "yaml-list", "key-twice"])
def test_bad_yaml_config(tmp_path, data_file, capsys, yaml_text, message):
    config = tmp_path / "run.yaml"
    config.write_text(yaml_text)
    assert run_cli(tmp_path, data_file, "--config", str(config)) == 1
    assert message in capsys.readouterr().err


def test_yaml_option_of_the_wrong_type(tmp_path, data_file, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("learning_rate: fast\n")
    assert run_cli(tmp_path, data_file, "--config", str(config)) == 1
    err = capsys.readouterr().err
    assert err == (f"upo train: error: {config}: argument --learning_rate/--learning-rate: "
                   "invalid float value: 'fast'.\n")


def test_missing_config_file(tmp_path, data_file, capsys):
    assert run_cli(tmp_path, data_file, "--config", str(tmp_path / "nope.yaml")) == 1
    err = capsys.readouterr().err
    assert "Cannot read the config file" in err and "nope.yaml: No such file or directory" in err


def test_misspelt_flag(tmp_path, data_file, capsys):
    assert run_cli(tmp_path, data_file, "--learnin_rate", "1e-4") == 1
    assert "--learnin_rate" in capsys.readouterr().err


def test_missing_dataset_is_explained(capsys):
    assert main(["train", "--output_dir", "unused"]) == 1
    assert "--dataset" in capsys.readouterr().err


def test_score_reports_agreement(data_file, capsys):
    assert main(["score", str(data_file), "--reward_funcs", "readability", "length:target_words=8"]) == 0
    out = capsys.readouterr().out
    assert "| readability | chosen | 16 |" in out
    assert "length: chosen scores higher in" in out


def test_console_script_env():
    upo = subprocess.run([sys.executable, "-m", "upo.cli", "env"], capture_output=True, text=True, check=True)
    assert upo.stdout.startswith("upo 0.1.0") and "transformers 5.24.0" in upo.stdout


def test_a_recipes_env_sets_hf_home_before_the_hub_libraries_read_them(tmp_path):
    """`env: {HF_HOME: ...}` in a recipe takes effect: the model is found in that Hub cache. Before, the variable was
    exported after huggingface_hub had read HF_HOME, and the model was looked for in the default cache."""
    import os

    from helpers import make_hub_cache

    make_hub_cache(tmp_path / "hf-home", "org/tiny")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"env:\n  HF_HOME: {tmp_path / 'hf-home'}\n  HF_HUB_OFFLINE: 1\n"
                      f"model_name_or_path: org/tiny\ndataset: {write_jsonl(tmp_path / 'pairs.jsonl', make_pairs(4))}\n"
                      f"output_dir: {tmp_path / 'out'}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    done = subprocess.run([sys.executable, "-m", "upo.cli", "train", "--config", str(recipe),
                           *tiny_training_flags(max_steps=1)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_a_recipes_env_read_too_late_is_refused(tmp_path, capsys):
    """In a process that imported the Hub libraries already (a notebook), HF_HOME from a recipe would change nothing:
    refused, naming the variable and the fix."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"env:\n  HF_HOME: {tmp_path / 'elsewhere'}\ndataset: x.jsonl\n")
    assert main(["train", "--config", str(recipe)]) == 1
    err = capsys.readouterr().err
    assert "env sets HF_HOME, which huggingface_hub read when it was imported" in err and "export HF_HOME" in err
