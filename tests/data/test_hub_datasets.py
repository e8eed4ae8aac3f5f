"""Datasets by name (TRL's `dataset_name`, `dataset_config`, splits) through the real `datasets.load_dataset`: a folder
laid out like a Hub dataset repository (`data/train-00000-of-00001.parquet`), offline. Errors name the split and the
row, as they name the file and the line for local files; conversational data works as from files."""

import pytest
from helpers import make_pairs, write_hub_dataset

from upo.data import HubDataset, load_preference_dataset, load_preference_pairs
from upo.errors import DataError


def messages(*turns):
    return [{"role": role, "content": text} for role, text in zip(("user", "assistant") * len(turns), turns)]


def ultrafeedback_rows(n):
    """trl-lib/ultrafeedback_binarized's layout: whole conversations, no prompt column, scores beside them."""
    return [{"chosen": messages(f"Question {i}?", f"A careful answer {i}."),
             "rejected": messages(f"Question {i}?", f"No idea {i}."),
             "score_chosen": 8.0, "score_rejected": 3.5} for i in range(n)]


def test_a_hub_layout_folder_by_name_with_its_splits(tmp_path):
    folder = write_hub_dataset(tmp_path / "pairs", {"train": make_pairs(6), "test": make_pairs(2)})
    pairs, report = load_preference_pairs(HubDataset(str(folder)))
    assert len(pairs) == 6 and pairs[0]["prompt"] == make_pairs(6)[0]["prompt"]
    assert report.source == f"{folder}, split 'train'"
    assert len(load_preference_dataset(HubDataset(str(folder), split="test"))) == 2
    # Given as a local `dataset` folder (not written by save_to_disk), the same layout is read the same way.
    assert load_preference_dataset(folder)[:] == load_preference_dataset(HubDataset(str(folder)))[:]


def test_conversational_ultrafeedback_layout_has_an_implicit_prompt(tmp_path):
    folder = write_hub_dataset(tmp_path / "uf", {"train": ultrafeedback_rows(3)})
    pairs, report = load_preference_pairs(HubDataset(str(folder)))
    assert (report.format, report.implicit_prompt) == ("conversational", True)
    assert pairs[1]["prompt"] == messages("Question 1?")
    assert pairs[1]["chosen"] == [{"role": "assistant", "content": "A careful answer 1."}]
    assert pairs[1]["score_chosen"] == 8.0  # other columns stay, for reward functions


def test_hh_layout_strings_with_an_implicit_prompt(tmp_path):
    rows = [{"chosen": f"\n\nHuman: Hi {i}\n\nAssistant: Hello there.",
             "rejected": f"\n\nHuman: Hi {i}\n\nAssistant: Go."} for i in range(3)]
    pairs, report = load_preference_pairs(HubDataset(str(write_hub_dataset(tmp_path / "hh", {"train": rows}))))
    assert (report.format, report.implicit_prompt) == ("standard", True)
    assert (pairs[2]["prompt"], pairs[2]["chosen"]) == ("\n\nHuman: Hi 2\n\nAssistant:", " Hello there.")


def test_a_bad_row_is_named_by_split_and_row(tmp_path):
    rows = make_pairs(4)
    rows[2]["chosen"] = "   "
    folder = write_hub_dataset(tmp_path / "bad", {"train": make_pairs(2), "test": rows})
    with pytest.raises(DataError, match=rf"^{folder}, split 'test', row 2, column 'chosen'"):
        load_preference_pairs(HubDataset(str(folder), split="test"))


def test_an_unknown_split_or_config_lists_what_there_is(tmp_path):
    folder = write_hub_dataset(tmp_path / "pairs", {"train": make_pairs(2)})
    with pytest.raises(DataError, match=r"split 'test': Unknown split \"test\". Should be one of \['train'\]\. "
                                        r"Set dataset_train_split / dataset_test_split"):
        load_preference_dataset(HubDataset(str(folder), split="test"))
    with pytest.raises(DataError, match=r"\(nope\), split 'train': .*'nope' not found.*Set dataset_config"):
        load_preference_dataset(HubDataset(str(folder), config="nope"))


def test_an_uncached_hub_dataset_offline_says_so(tmp_path):
    with pytest.raises(DataError) as error:
        load_preference_dataset(HubDataset("org/absent-dataset"))
    message = str(error.value)
    assert message.startswith("org/absent-dataset, split 'train': cannot load it (")
    assert "Offline mode is on (HF_HUB_OFFLINE=1)" in message and "data/train-00000-of-00001.parquet" in message
    assert "\n" not in message
