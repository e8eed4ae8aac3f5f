"""The model card, read back with huggingface_hub: the base model as its Hub ID (never a local path), the licence of
the base model's own card, Hub datasets, the held-out metrics as model-index, the paper's citation; and upo eval's
results added to it."""

import pytest
from datasets import Dataset
from helpers import make_hub_cache, make_pairs, tiny_config
from huggingface_hub import ModelCard

from upo import UPOTrainer
from upo.data.loading import HubDataset
from upo.training.model_card import add_eval_results, hub_dataset_ids, hub_model_id


def test_hub_ids_of_model_names_and_folders(tmp_path):
    assert hub_model_id("smollm2-135m-instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_model_id("/root/.cache/upo/models/smollm2-135m-instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_model_id("/data/hf/hub/models--org--tiny/snapshots/0123abc") == "org/tiny"
    assert hub_model_id("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert hub_model_id(str(tmp_path)) is None and hub_model_id("./runs/x") is None  # local folders: no ID
    assert hub_dataset_ids([HubDataset("trl-lib/ultrafeedback_binarized"), str(tmp_path / "pairs.jsonl"),
                            HubDataset(str(tmp_path))]) == ["trl-lib/ultrafeedback_binarized"]


@pytest.fixture
def hub_model(tmp_path, monkeypatch):
    """`org/tiny` in a Hugging Face cache, with a model card of its own that gives its licence."""
    from huggingface_hub import constants

    snapshot = make_hub_cache(tmp_path / "hf")
    (snapshot / "README.md").write_text("---\nlicense: mit\n---\n# tiny\n")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    return snapshot


def test_card_of_a_trained_model(tmp_path, hub_model):
    args = tiny_config(tmp_path / "run", max_steps=2, logging_steps=1, eval_strategy="steps", eval_steps=2,
                       reward_funcs=["length:target_words=5"])
    pairs = Dataset.from_list(make_pairs(8))
    trainer = UPOTrainer("org/tiny", args=args, train_dataset=pairs, eval_dataset=pairs)
    trainer.train()
    trainer.save_model()
    card = ModelCard.load(tmp_path / "run" / "README.md")
    assert card.data.base_model == "org/tiny" and card.data.license == "mit"  # the base model's own card says so
    assert card.data.library_name == "transformers" and "upo" in card.data.tags
    assert str(tmp_path) not in str(card.data.to_dict())  # no local path in the metadata
    logged = [e for e in trainer.state.log_history if "eval_loss" in e][-1]
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["eval_loss"] == pytest.approx(logged["eval_loss"], abs=1e-4)
    assert results["eval_rewards_accuracies"] == pytest.approx(logged["eval_rewards/accuracies"], abs=1e-4)
    assert "arxiv.org/abs/2405.17956" in card.text and "Badrinath, Anirudhan and Agarwal, Prabhat and Xu, Jiajing" in \
        card.text and "| length |" in card.text

    # upo eval's results join the model-index; a second evaluation on the same data replaces them.
    summary = {"win_rate": 0.625, "preference_score": 0.41, "designer_score": 0.3, "kl": 1.5,
               "implicit_accuracy": None}
    assert add_eval_results(tmp_path / "run", summary, "chitchat_eval.jsonl")
    assert add_eval_results(tmp_path / "run", {**summary, "win_rate": 0.75}, "chitchat_eval.jsonl")
    card = ModelCard.load(tmp_path / "run" / "README.md")
    by_metric = {r.metric_type: r.metric_value for r in card.data.eval_results if r.metric_config == "upo eval"}
    assert by_metric == {"win_rate": 0.75, "preference_score": 0.41, "designer_score": 0.3, "kl": 1.5}
    assert "eval_loss" in {r.metric_type for r in card.data.eval_results}  # the trainer's results are kept
    assert not add_eval_results(tmp_path, summary, "x")  # no card there
