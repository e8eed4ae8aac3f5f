"""`upo train` takes TRL's recipes: every option of TRL 1.16's ScriptArguments, ModelConfig and DPOConfig (and the
dataset-mixture options `trl dpo` parses) as a flag and a YAML key, implemented or refused by name; a model and a
dataset by name, through the Hub cache, offline.

upo mirrors TRL's dataclasses instead of importing them (upo/arguments.py says why); the first tests compare the two,
so a field TRL adds or a default it changes fails here until upo follows or documents the difference."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import make_hub_cache, make_pairs, make_tiny_lm_dir, write_hub_dataset
from transformers import AutoModelForCausalLM

from upo.arguments import UNIMPLEMENTED, ModelArguments, ScriptArguments, UnimplementedTRLArguments
from upo.cli import main
from upo.config import UPOConfig
from upo.models import base_model_name_or_path

ROOT = Path(__file__).parents[1]
UPO_DATACLASSES = (ScriptArguments, ModelArguments, UnimplementedTRLArguments, UPOConfig)
# upo's defaults that are not TRL's, each explained in the option's help (which must say "TRL").
DIFFERENT_DEFAULTS = {
    "model_name_or_path",  # TRL: None; upo: the offline SmolLM2 alias
    "gradient_checkpointing",  # TRL: on; upo: off
    "pad_to_multiple_of",  # TRL: "auto" (None off AWS Neuron); upo: None
    "ddp_find_unused_parameters",  # TRL: None; upo: False (the value head and LM head run outside the forward)
    "datasets",  # TRL: [] (default_factory); upo: None, the same "no mixture"
}
# The same default value with another meaning, explained in the help too.
DIFFERENT_MEANING = {
    "bf16",  # None: TRL on unless fp16; upo on where a GPU supports it
    "lora_target_modules",  # None: TRL peft's per-architecture default; upo "all-linear"
}


def default_of(f):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


@pytest.fixture(scope="module")
def trl_fields():
    from trl import DatasetMixtureConfig, DPOConfig, ModelConfig
    from trl import ScriptArguments as TRLScriptArguments

    return {f.name: f for dc in (TRLScriptArguments, ModelConfig, DPOConfig, DatasetMixtureConfig)
            for f in dataclasses.fields(dc)}


def test_every_trl_option_is_a_upo_train_option(trl_fields):
    import trl

    assert trl.__version__ == "1.16.0"  # the version these names are mirrored from
    upo = {f.name for dc in UPO_DATACLASSES for f in dataclasses.fields(dc)}
    assert sorted(set(trl_fields) - upo) == []


def test_defaults_are_trls_or_their_difference_is_explained(trl_fields):
    upo = {f.name: f for dc in UPO_DATACLASSES for f in dataclasses.fields(dc)}
    differ = {name for name, f in trl_fields.items() if default_of(f) != default_of(upo[name])}
    assert differ == DIFFERENT_DEFAULTS
    for name in (differ | DIFFERENT_MEANING) - {"datasets"}:
        assert "TRL" in upo[name].metadata["help"], name
    for name, (default, _why) in UNIMPLEMENTED.items():
        assert default_of(trl_fields[name]) in (default, []), name


def test_every_option_is_a_flag_and_a_yaml_key(tmp_path, trl_fields, capsys):
    """A TRL option set to its default parses from flags and YAML alike; upo's own refusals are by name."""
    from upo.options import read_train_options

    yaml_file = tmp_path / "all.yaml"
    # `debug`'s default "" is not a valid value when given (argparse converts string defaults; TRL's parser too).
    skip = DIFFERENT_DEFAULTS | {"output_dir", "debug"}
    values = {name: default_of(f) for name, f in trl_fields.items() if name not in skip}
    values = {k: v for k, v in values.items() if isinstance(v, (int, float, str, bool)) or v is None}
    yaml_file.write_text(yaml.safe_dump({**values, "output_dir": str(tmp_path / "o"), "report_to": "none"}))
    _, _, config = read_train_options(["--config", str(yaml_file)])
    assert config.beta == 0.1 and config.logging_steps == 10
    assert main(["train", "--output_dir", str(tmp_path / "o"), "--dataset", "x.jsonl", "--ld_alpha", "0.5",
                 "--f_divergence_type", "js_divergence", "--lora_task_type", "SEQ_CLS"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("upo train: error: TRL options that upo does not implement: ")
    for refused in ("ld_alpha=0.5 (LD-DPO", "f_divergence_type='js_divergence' (f-DPO", "lora_task_type='SEQ_CLS'"):
        assert refused in err


def test_a_refused_option_in_a_recipe_is_named(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("dataset_name: org/data\nsync_ref_model: true\nref_model_sync_steps: 64\n")
    assert main(["train", "--config", str(recipe), "--output_dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "sync_ref_model=True (TR-DPO's moving reference); ref_model_sync_steps=64" in err
    assert err.count("\n") == 1


def trl_recipe(model, data, out):
    """The options of TRL's documented `trl dpo` runs (docs/clis.md's YAML, trl/scripts/dpo.py's LoRA command, the
    model options of ModelConfig), with the model and data pointed at local tiny ones and sizes cut for a CPU."""
    return {
        "env": {"UPO_TEST_RECIPE_ENV": "set"},
        "model_name_or_path": str(model), "model_revision": "main", "dtype": "float32",
        "attn_implementation": "eager", "load_in_4bit": False,
        "dataset_name": str(data), "dataset_train_split": "train", "dataset_test_split": "test",
        "report_to": "none", "learning_rate": 5.0e-4, "lr_scheduler_type": "cosine", "num_train_epochs": 1,
        "max_steps": 2, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 2,
        "eval_strategy": "steps", "eval_steps": 2, "output_dir": str(out), "remove_unused_columns": False,
        "use_peft": True, "lora_r": 32, "lora_alpha": 16, "lora_target_modules": "all-linear",
        "gradient_checkpointing": True, "bf16": True, "use_cpu": True, "beta": 0.1, "max_length": 64,
        "loss_type": ["sigmoid"], "precompute_ref_log_probs": False, "seed": 0,
    }


def test_a_trl_dpo_recipe_runs_unchanged(tmp_path, capsys, monkeypatch):
    model = make_tiny_lm_dir(tmp_path / "model")
    data = write_hub_dataset(tmp_path / "data", {"train": make_pairs(8), "test": make_pairs(4)})
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(trl_recipe(model, data, tmp_path / "out")))
    monkeypatch.delenv("UPO_TEST_RECIPE_ENV", raising=False)

    # It is a valid recipe for TRL itself: TRL's parser takes every key (none left over).
    from trl import DatasetMixtureConfig, DPOConfig, ModelConfig, TrlParser
    from trl import ScriptArguments as TRLScriptArguments

    parser = TrlParser((TRLScriptArguments, DPOConfig, ModelConfig, DatasetMixtureConfig))
    *_, leftover = parser.parse_args_and_config(["--config", str(recipe)], return_remaining_strings=True)
    assert leftover == []
    monkeypatch.delenv("UPO_TEST_RECIPE_ENV")

    assert main(["train", "--config", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert os.environ["UPO_TEST_RECIPE_ENV"] == "set"  # the recipe's env section
    assert f"Loaded 8 standard pairs from {data}, split 'train'" in out
    assert f"Loaded 4 standard pairs from {data}, split 'test'" in out  # eval_strategy steps: TRL's test split
    assert "'eval_loss'" in out
    saved = json.loads((tmp_path / "out" / "upo_config.json").read_text())
    assert saved["bf16"] is True and saved["activation_checkpointing"] is True
    assert saved["model_init_kwargs"] == {"revision": "main", "trust_remote_code": False,
                                          "attn_implementation": "eager", "dtype": "float32"}
    adapter = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], len(adapter["target_modules"])) == (32, 16, 14)  # every linear


def test_the_shipped_trl_recipe_parses_in_trl_and_upo():
    """examples/trl_dpo_recipe.yaml: TRL's parser leaves over only upo's block; upo takes all of it (no download:
    parsing only, on CPU)."""
    from trl import DatasetMixtureConfig, DPOConfig, ModelConfig, TrlParser
    from trl import ScriptArguments as TRLScriptArguments

    from upo.options import read_train_options

    recipe = str(ROOT / "examples" / "trl_dpo_recipe.yaml")
    parser = TrlParser((TRLScriptArguments, DPOConfig, ModelConfig, DatasetMixtureConfig))
    *_, leftover = parser.parse_args_and_config(["--config", recipe, "--use_cpu", "true"],
                                                return_remaining_strings=True)
    assert leftover[::2] == ["--reward_funcs", "--reward_weights", "--alpha"]
    script_args, model_args, config = read_train_options(["--config", recipe, "--use_cpu", "true"])
    assert (script_args.dataset_name, model_args.model_name_or_path) == ("trl-lib/ultrafeedback_binarized",
                                                                         "Qwen/Qwen2.5-0.5B-Instruct")
    assert model_args.quantization_config().load_in_4bit and config.reward_funcs == ["readability", "non_offensive"]


def run_cli(args, hf_home, tmp_path):
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "UPO_CACHE": str(tmp_path / "upo-cache"), "PYTHONPATH": str(ROOT)}
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run([sys.executable, "-m", "upo.cli", "train", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_hub_model_and_dataset_by_name_offline(tmp_path):
    """`upo train --model_name_or_path org/tiny --dataset_name DIR` in a fresh process whose HF_HOME holds the model in
    the Hub cache layout, with HF_HUB_OFFLINE=1: the real from_pretrained and load_dataset, nothing downloaded."""
    hf_home = tmp_path / "hf"
    make_hub_cache(hf_home, "org/tiny")
    rows = [{"chosen": [{"role": "user", "content": f"Hi {i}?"}, {"role": "assistant", "content": "Hello, friend."}],
             "rejected": [{"role": "user", "content": f"Hi {i}?"}, {"role": "assistant", "content": "Go."}],
             "score_chosen": 9.0} for i in range(8)]  # trl-lib/ultrafeedback_binarized's layout
    data = write_hub_dataset(tmp_path / "ultrafeedback", {"train": rows})
    common = ["--dataset_name", str(data), "--max_steps", "1", "--per_device_train_batch_size", "4", "--use_cpu",
              "true", "--report_to", "none", "--max_length", "64", "--disable_tqdm", "true"]
    result = run_cli(["--model_name_or_path", "org/tiny", "--output_dir", str(tmp_path / "run"), *common],
                     hf_home, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Loaded 8 conversational pairs (implicit prompt) from {data}, split 'train'" in result.stdout
    assert base_model_name_or_path(tmp_path / "run") == "org/tiny"
    AutoModelForCausalLM.from_pretrained(tmp_path / "run")



def test_an_uncached_hub_model_offline_is_one_line(tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))  # read from HF_HOME at import
    data = write_hub_dataset(tmp_path / "data", {"train": make_pairs(4)})
    assert main(["train", "--model_name_or_path", "org/absent", "--dataset_name", str(data), "--output_dir",
                 str(tmp_path / "run"), "--use_cpu", "true", "--report_to", "none"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("upo train: error: 'org/absent' is not a local folder nor in the Hugging Face cache "
                          f"({tmp_path / 'hf' / 'hub'}), and offline mode is on (HF_HUB_OFFLINE=1): download it once")


def test_qlora_here_is_refused_before_any_weights_load(tmp_path, capsys, without_cuda):
    """`upo train --load_in_4bit true` without CUDA (on a GPU machine too) or bitsandbytes: one line, before the
    (garbage) weights are read."""
    folder = make_tiny_lm_dir(tmp_path / "model")
    (folder / "model.safetensors").write_bytes(b"garbage")
    data = write_hub_dataset(tmp_path / "data", {"train": make_pairs(4)})
    assert main(["train", "--model_name_or_path", str(folder), "--dataset_name", str(data), "--output_dir",
                 str(tmp_path / "o"), "--use_peft", "true", "--load_in_4bit", "true", "--bnb_4bit_quant_type", "nf4",
                 "--use_cpu", "true", "--report_to", "none"]) == 1
    err = capsys.readouterr().err
    assert "Loading the model in 4-bit (load_in_4bit / load_in_8bit, QLoRA) needs bitsandbytes on a CUDA GPU; here: " \
           "no CUDA device" in err
    assert err.count("\n") == 1
