"""Safe loading: nothing a run reads can execute code. Each test plants a pickle that would create a marker file if
it were ever unpickled (or a module that would on import) where a careless loader would find it, runs the real
code path, and checks the marker was never created."""

import json
import pickle
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from helpers import make_pairs, tiny_model, tiny_training_options

from upo import UPOConfig, UPOTrainer
from upo.data import load_preference_dataset
from upo.errors import ConfigError, DataError, ModelResolutionError
from upo.rewards import resolve_reward_func, score_designer_rewards
from upo.training.checkpointing import write_completion_marker

FAST = tiny_training_options(learning_rate=1e-3, seed=0)


class Exploit:
    """Unpickling this creates `path`: the stand-in for arbitrary code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return Path.touch, (Path(self.path),)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "CODE-WAS-EXECUTED"
    yield path
    assert not path.exists(), "a planted pickle or module was executed"


def plant(path, marker):
    torch.save(Exploit(marker), path)  # the format transformers' own .bin / .pth / .pt files use


def train(tmp_path, tokenizer, **options):
    args = UPOConfig(output_dir=str(tmp_path / "run"), **{**FAST, **options})
    trainer = UPOTrainer(tiny_model(), args=args, train_dataset=Dataset.from_list(make_pairs(8)),
                         processing_class=tokenizer)
    return trainer


def test_resume_never_unpickles_training_args_or_a_planted_bin(tmp_path, tokenizer, marker):
    train(tmp_path, tokenizer, max_steps=2, save_strategy="steps", save_steps=2).train()
    checkpoint = tmp_path / "run" / "checkpoint-2"
    # transformers writes training_args.bin with torch.save (a full pickle) but never reads it back; and with
    # model.safetensors present it never looks at pytorch_model.bin.
    plant(checkpoint / "training_args.bin", marker)
    plant(checkpoint / "pytorch_model.bin", marker)
    write_completion_marker(checkpoint, 2)  # as an attacker who edits the folder would
    resumed = train(tmp_path, tokenizer, max_steps=3, save_strategy="no")
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 3


@pytest.mark.parametrize("name", ["optimizer.pt", "scheduler.pt", "rng_state.pth"])
def test_resume_loads_optimizer_scheduler_and_rng_state_with_weights_only(tmp_path, tokenizer, marker, name):
    train(tmp_path, tokenizer, max_steps=2, save_strategy="steps", save_steps=2).train()
    checkpoint = tmp_path / "run" / "checkpoint-2"
    plant(checkpoint / name, marker)
    write_completion_marker(checkpoint, 2)
    with pytest.raises(ConfigError, match=r"Cannot resume from .*checkpoint-2: one of its pickled files .* holds more "
                       r"than tensors and would run code when read; torch's weights_only loading refused it") as error:
        train(tmp_path, tokenizer, max_steps=3, save_strategy="no").train(resume_from_checkpoint=True)
    assert isinstance(error.value.__cause__, pickle.UnpicklingError)


def test_model_weights_in_a_pickle_are_loaded_weights_only(tmp_path, tokenizer, marker):
    folder = tmp_path / "model"
    tiny_model().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    plant(folder / "pytorch_model.bin", marker)
    with pytest.raises(ModelResolutionError, match=r"its weights file is a pickle holding more than tensors, which "
                       r"would run code when read; torch's weights_only loading refused it"):
        UPOTrainer(str(folder), args=UPOConfig(output_dir=str(tmp_path / "run"), **FAST),
                   train_dataset=Dataset.from_list(make_pairs(8)))


EVIL_MODULE = "from pathlib import Path\nPath({marker!r}).touch()\n"


@pytest.mark.parametrize("model_type", ["llama", "evil"])
def test_code_shipped_with_a_model_is_never_run_unless_asked(tmp_path, tokenizer, marker, model_type):
    folder = tmp_path / "model"
    tiny_model().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type=model_type, auto_map={"AutoConfig": "evil.EvilConfig",
                                                  "AutoModelForCausalLM": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    args = UPOConfig(output_dir=str(tmp_path / "run"), **FAST, max_steps=1)
    if model_type == "llama":  # a known architecture: the library's own code is used, the folder's is ignored
        UPOTrainer(str(folder), args=args, train_dataset=Dataset.from_list(make_pairs(8)))
    else:  # only the folder's code could build it: refused (transformers would otherwise ask on a terminal)
        with pytest.raises(ModelResolutionError, match="trust_remote_code=True"):
            UPOTrainer(str(folder), args=args, train_dataset=Dataset.from_list(make_pairs(8)))


@pytest.mark.parametrize("spec", ["__import__('os').system('touch x')", "eval('1')", "exec:print(1)"])
def test_reward_specs_are_import_paths_never_evaluated(tmp_path, marker, monkeypatch, spec):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="my_pkg.my_module.my_reward"):
        resolve_reward_func(spec.replace("touch x", f"touch {marker}"))
    assert not (tmp_path / "x").exists()


def test_a_module_in_the_working_directory_cannot_shadow_a_builtin_reward(tmp_path, marker, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "readability.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    (tmp_path / "textstat.py").write_text(EVIL_MODULE.format(marker=str(marker)))  # what the built-in imports
    from upo.rewards import readability

    assert resolve_reward_func("readability") is readability
    assert readability(["q"], ["Short words help."])[0] > 0


@pytest.mark.parametrize("suffix", [".pkl", ".pickle", ".pt", ".bin", ".npy"])
def test_pickled_data_files_are_refused_unopened(tmp_path, marker, suffix):
    path = tmp_path / f"pairs{suffix}"
    path.write_bytes(pickle.dumps([Exploit(marker)]))
    with pytest.raises(DataError, match=rf"unsupported file type '\{suffix}'"):
        load_preference_dataset(path)


def test_a_pickle_in_a_dataset_folder_is_not_read(tmp_path, marker):
    folder = tmp_path / "saved"
    Dataset.from_list(make_pairs(4)).save_to_disk(folder)
    (folder / "cache-planted.pkl").write_bytes(pickle.dumps(Exploit(marker)))
    assert len(load_preference_dataset(folder)) == 4


def test_cache_files_replaced_by_pickles_are_ignored(tmp_path, tokenizer, marker):
    """The reference cache is safetensors, the reward cache JSON: a pickle in their place is ignored with a warning."""
    from upo.data.collator import PreferenceCollator
    from upo.data.tokenization import tokenize_dataset
    from upo.training.reference import add_reference_logps

    data = tokenize_dataset(Dataset.from_list(make_pairs(4)), tokenizer, max_length=64)
    add_reference_logps(data, tiny_model(), PreferenceCollator(0), 4, cache_dir=tmp_path / "reference")
    (path,) = (tmp_path / "reference").glob("*.safetensors")
    path.write_bytes(pickle.dumps(Exploit(marker)))
    with pytest.warns(UserWarning, match="ignoring corrupt reference log-prob cache file"):
        add_reference_logps(data, tiny_model(), PreferenceCollator(0), 4, cache_dir=tmp_path / "reference")

    def polite(prompts, completions, **kwargs):
        return [float("please" in c) for c in completions]

    rows = make_pairs(4)
    args = ([r["prompt"] for r in rows], [r["chosen"] for r in rows], [r["rejected"] for r in rows], [polite])
    score_designer_rewards(*args, cache_dir=tmp_path / "rewards", show_progress=False)
    (path,) = (tmp_path / "rewards").iterdir()
    path.write_bytes(pickle.dumps(Exploit(marker)))
    with pytest.warns(UserWarning, match="ignoring corrupt designer-reward cache file"):
        score_designer_rewards(*args, cache_dir=tmp_path / "rewards", show_progress=False)
