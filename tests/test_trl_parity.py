"""Our DPO equals TRL 1.16's DPOTrainer on the same model, data and seed; UPO with alpha = 0 equals our DPO."""

import copy

import pytest
from helpers import Recorder, tiny_model, tiny_training_options

from upo import UPOConfig, UPOTrainer

trl = pytest.importorskip("trl")

KEYS = ["loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
        "logps/rejected"]
COMMON = tiny_training_options(max_steps=3, learning_rate=1e-3, logging_steps=1, seed=0, save_strategy="no", bf16=False,
                              beta=0.1)


def run_trl(model, tokenizer, dataset, tmp_path):
    recorder = Recorder()
    config = trl.DPOConfig(output_dir=str(tmp_path / "trl"), gradient_checkpointing=False, pad_to_multiple_of=None,
                           **COMMON)
    trainer = trl.DPOTrainer(model=model, ref_model=copy.deepcopy(model), args=config, train_dataset=dataset,
                             processing_class=tokenizer, callbacks=[recorder])
    trainer.train()
    return recorder.logs


def run_upo(model, tokenizer, dataset, tmp_path, name, **kwargs):
    recorder = Recorder()
    config = UPOConfig(output_dir=str(tmp_path / name), **COMMON, **kwargs)
    trainer = UPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         callbacks=[recorder])
    trainer.train()
    return recorder.logs, trainer


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_dpo_matches_trl_over_three_steps(arch, tokenizer, pairs, tmp_path):
    trl_logs = run_trl(tiny_model(arch), tokenizer, pairs, tmp_path)
    upo_logs, _ = run_upo(tiny_model(arch), tokenizer, pairs, tmp_path, "upo", loss_type=["sigmoid"])
    assert len(trl_logs) == len(upo_logs) == 3
    for step, (theirs, ours) in enumerate(zip(trl_logs, upo_logs)):
        for key in KEYS:
            assert ours[key] == pytest.approx(theirs[key], abs=1e-5), f"step {step + 1}, {key}"
    # The steps must have moved the model, or the comparison proves nothing.
    assert upo_logs[-1]["rewards/margins"] != upo_logs[0]["rewards/margins"]


def test_alpha_zero_is_dpo_exactly(tokenizer, pairs, tmp_path):
    dpo_logs, dpo = run_upo(tiny_model(), tokenizer, pairs, tmp_path, "dpo")
    upo_logs, upo = run_upo(tiny_model(), tokenizer, pairs, tmp_path, "upo0", alpha=0.0, reward_funcs=["readability"])
    for ours, theirs in zip(upo_logs, dpo_logs):
        for key in KEYS:
            assert ours[key] == theirs[key], key  # to the last digit
    for (name, p), (_, q) in zip(dpo.model.named_parameters(), upo.model.named_parameters()):
        assert (p == q).all(), name
