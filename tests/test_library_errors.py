"""Library errors at upo's boundaries (upo.library_errors): where the user's input reaches from_pretrained,
load_dataset, peft or the Trainer's optimizer and scheduler, a refusal is one line naming the option or file and the
fix, never a library traceback. One test per boundary, each with real files and real libraries."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import make_hub_cache, make_pairs, make_tiny_lm_dir, tiny_config, tiny_model, write_jsonl

from upo import UPOTrainer
from upo.cli import main
from upo.data.loading import HubDataset, load_preference_pairs
from upo.errors import ConfigError, DataError, ModelResolutionError
from upo.library_errors import LibraryRefused, library_message, refused_by_library
from upo.models import load_causal_lm, load_tokenizer


def test_a_hub_snapshot_without_tokenizer_files_is_named_with_its_files(tmp_path, monkeypatch):
    from huggingface_hub import constants

    snapshot = make_hub_cache(tmp_path / "hf", "org/no-tokenizer")
    for path in snapshot.iterdir():
        if path.name not in ("config.json", "model.safetensors", "generation_config.json"):
            path.unlink()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(ModelResolutionError) as error:
        load_tokenizer("org/no-tokenizer")
    message = str(error.value)
    assert f"its folder {snapshot} holds no tokenizer files (it has config.json, generation_config.json, " \
           "model.safetensors;" in message
    assert "`hf download org/no-tokenizer`" in message and "processing_class" in message


def test_unknown_keys_of_model_init_kwargs_are_named(tmp_path):
    folder = make_tiny_lm_dir(tmp_path / "model")
    with pytest.raises(LibraryRefused) as error:
        load_causal_lm(str(folder), foo_bar=1)
    assert str(error.value).startswith(f"model_init_kwargs {{'foo_bar'}} for the model '{folder}': "
                                       "LlamaForCausalLM.__init__() got an unexpected keyword argument 'foo_bar'. "
                                       "Remove the keys")


def test_a_cuda_device_map_on_a_machine_without_one_is_refused_before_loading(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if getattr(torch, "accelerator", None) is not None:
        monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    data = write_jsonl(tmp_path / "pairs.jsonl", make_pairs(4))
    assert main(["train", "--model_name_or_path", "org/never-loaded", "--dataset", str(data), "--output_dir",
                 str(tmp_path / "out"), "--use_cpu", "true", "--model_init_kwargs", '{"device_map": {"": 0}}']) == 1
    err = capsys.readouterr().err
    assert err.startswith("upo train: error: model_init_kwargs device_map {'': 0} places the model on an accelerator "
                          "(0), but this machine has none") and err.count("\n") == 1


def test_a_lora_target_module_the_model_lacks_names_the_modules_it_has(tmp_path, tokenizer):
    from peft import LoraConfig

    with pytest.raises(LibraryRefused) as error:
        UPOTrainer(tiny_model(), args=tiny_config(tmp_path, max_steps=1), train_dataset=None,
                   processing_class=tokenizer, peft_config=LoraConfig(r=4, target_modules=["qkv_proj"]))
    message = str(error.value)
    assert message.startswith("The LoRA adapter (lora_target_modules=['qkv_proj']): Target modules {'qkv_proj'} not "
                              "found in the base model")
    assert "This model's linear modules are down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, " \
           "v_proj: set lora_target_modules to some of them, or to all-linear" in message


def test_an_optimizer_and_a_scheduler_refusing_their_options_are_named(tmp_path, tokenizer, pairs):
    """Both are checked before anything loads (upo.preflight); what only the Trainer meets later (here, options
    changed after that check) is named at its boundary too."""
    with pytest.raises(ConfigError, match="^optim 'sgd' with optim_args 'momentum=fast': could not convert string to "
                                          "float: 'fast'. Give optim_args as 'key=value,key=value'"):
        UPOTrainer(tiny_model(), args=tiny_config(tmp_path, optim="sgd", optim_args="momentum=fast"),
                   train_dataset=pairs, processing_class=tokenizer)
    trainer = UPOTrainer(tiny_model(), args=tiny_config(tmp_path, max_steps=1, optim="sgd"), train_dataset=pairs,
                         processing_class=tokenizer)
    trainer.args.optim_args = "momentum=-1"
    with pytest.raises(LibraryRefused, match="^optim 'sgd' with optim_args 'momentum=-1': Invalid momentum value"):
        trainer.create_optimizer()
    trainer.args.optim_args = None
    trainer.create_optimizer()
    trainer.args.lr_scheduler_kwargs = {"power": 2.0}
    with pytest.raises(LibraryRefused) as error:
        trainer.create_scheduler(10)
    assert str(error.value).startswith("lr_scheduler_type 'linear' with lr_scheduler_kwargs {'power': 2.0}: "
                                       "get_linear_schedule_with_warmup() got an unexpected keyword argument 'power'")


def test_a_dataset_folder_whose_split_has_no_rows(tmp_path):
    folder = tmp_path / "data"
    (folder / "data").mkdir(parents=True)
    schema = pa.schema([(name, pa.string()) for name in ("prompt", "chosen", "rejected")])
    pq.write_table(pa.Table.from_pylist([], schema=schema), folder / "data" / "train-00000-of-00001.parquet")
    with pytest.raises(DataError) as error:
        load_preference_pairs(str(folder))
    assert str(error.value) == (f"{folder}, split 'train': no rows: its files ({folder}/data/train-00000-of-00001."
                                "parquet) hold none. Fill them, or choose another split.")


def test_a_dataset_folder_whose_shards_differ_names_both_files(tmp_path):
    folder = tmp_path / "data"
    (folder / "data").mkdir(parents=True)
    first, second = (folder / "data" / f"train-0000{k}-of-00002.parquet" for k in (0, 1))
    pq.write_table(pa.Table.from_pylist(make_pairs(4)), first)
    pq.write_table(pa.Table.from_pylist([dict(row, weight=1.0) for row in make_pairs(4)]), second)
    with pytest.raises(DataError) as error:
        load_preference_pairs(HubDataset(str(folder)))
    assert str(error.value).startswith(
        f"{folder}, split 'train': the files of the split do not have the same columns, so they cannot be joined: "
        f"{second} has ['chosen', 'prompt', 'rejected', 'weight'], {first} has ['chosen', 'prompt', 'rejected'].")


def test_a_broken_json_line_in_a_dataset_folder_names_the_file_and_line(tmp_path, capsys):
    folder = tmp_path / "data"
    lines = [json.dumps(row) for row in make_pairs(4)]
    lines[2] = lines[2][:-5]
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as error:
        load_preference_pairs(str(folder))
    assert str(error.value).startswith(f"{folder}, split 'train': {folder}/data/train.jsonl, line 3: not valid JSON")
    assert "Failed to" not in capsys.readouterr().err  # datasets' own log lines are not printed besides


def test_the_boundary_passes_a_bug_through_and_quotes_a_cause():
    with pytest.raises(AttributeError), refused_by_library("option x", "fix it"):
        raise AttributeError("a bug stays a bug")
    with pytest.raises(ConfigError, match="^upo's own"), refused_by_library("option x", "fix it"):
        raise ConfigError("upo's own error passes unchanged")
    try:
        try:
            raise ValueError("the detail")
        except ValueError as cause:
            raise RuntimeError("An error occurred while generating the dataset") from cause
    except RuntimeError as error:
        assert library_message(error) == "ValueError: the detail"
