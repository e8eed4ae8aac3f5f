"""The frontier's training data: `dataset` (any local file or folder) or `dataset_name` (a Hub ID, or a local folder
laid out as a Hub dataset repository), and `train_pairs` taken through the data loader, not as lines of text."""

import json

import pytest
from datasets import Dataset
from helpers import make_pairs, write_chitchat_rows

from upo.errors import ConfigError
from upo.experiments.frontier import load_frontier_config, run_train_options, write_train_file


def config(tmp_path, **data):
    return load_frontier_config({
        "output_dir": str(tmp_path / "frontier"), "eval_data": str(write_chitchat_rows(tmp_path / "eval.jsonl", 3)),
        "reward_funcs": ["length"], "runs": [{"name": "dpo", "options": {"alpha": 0.0}}], **data})


def test_dataset_name_as_a_local_hub_layout_folder_with_train_pairs(tmp_path):
    folder = tmp_path / "hub-like"
    (folder / "data").mkdir(parents=True)
    rows = make_pairs(6)
    Dataset.from_list(rows).to_parquet(folder / "data" / "train-00000-of-00001.parquet")
    grid = config(tmp_path, dataset_name=str(folder), train_pairs=4)
    path = write_train_file(grid)
    assert path == tmp_path / "frontier" / "train_pairs_4.jsonl"
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows[:4]
    assert run_train_options(grid, grid.runs[0])["dataset"] == str(path)
    # Without train_pairs: every row, written once so that every run reads the same file.
    grid = config(tmp_path, dataset_name=str(folder))
    assert len(write_train_file(grid).read_text().splitlines()) == 6


def test_train_pairs_of_a_json_list_file_are_rows_not_lines(tmp_path):
    data = tmp_path / "pairs.json"
    data.write_text(json.dumps(make_pairs(5), indent=2))  # one JSON list over many lines
    path = write_train_file(config(tmp_path, dataset=str(data), train_pairs=2))
    assert [json.loads(line) for line in path.read_text().splitlines()] == make_pairs(5)[:2]


def test_one_source_of_training_data(tmp_path):
    data = str(tmp_path / "pairs.jsonl")
    with pytest.raises(ConfigError, match="both dataset and dataset_name are set: give one"):
        config(tmp_path, dataset=data, dataset_name="org/pairs")
    with pytest.raises(ConfigError, match="missing 'dataset' .* or 'dataset_name'"):
        config(tmp_path)
    with pytest.raises(ConfigError, match=r"\['dataset_name'\] are set by the frontier"):
        config(tmp_path, dataset=data, train={"dataset_name": "org/pairs"})


def test_a_dataset_name_that_cannot_be_read_is_named_before_anything_trains(tmp_path, monkeypatch):
    from upo.errors import UPOError
    from upo.experiments.frontier.config import check_inputs

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    grid = config(tmp_path, dataset_name="no-such-org/no-such-pairs")
    with pytest.raises(UPOError, match="no-such-org/no-such-pairs"):
        check_inputs(grid)
    assert not (tmp_path / "frontier" / "runs").exists()  # nothing trained, no run folder made
