"""Numeric faults: a non-finite loss or gradient stops the run naming the step and the component (preference,
designer, value) and keeps the last good checkpoint; `skip_nonfinite_batches` skips such batches and counts them.
The numbers the data brings (`weight`, precomputed reference log-probs) are checked before training.

The faults are real: options that overflow a term, or a model that produces NaN on some inputs (a hook that
stands in for an fp16 overflow on a rare batch)."""

import math

import pytest
import torch
from datasets import Dataset
from helpers import make_pairs, nan_gradient_in_first_layer, tiny_model, tiny_training_options, write_jsonl
from safetensors.torch import load_file
from transformers import TrainerCallback

from upo import UPOConfig, UPOTrainer
from upo.errors import DataError
from upo.training.numerics import NonFiniteError

FAST = tiny_training_options(learning_rate=1e-3, logging_steps=1, seed=0, max_steps=3)
POISON = "~"  # one token of the tiny tokenizer that no other row uses


def length(prompts, completions, **kwargs):
    return [float(len(c)) for c in completions]


class Logs(TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))


def make_trainer(tmp_path, tokenizer, data=None, model=None, reward_funcs=None, **options):
    logs = Logs()
    trainer = UPOTrainer(model or tiny_model(), args=UPOConfig(output_dir=str(tmp_path / "run"), **{**FAST, **options}),
                         train_dataset=data or Dataset.from_list(make_pairs(16)), processing_class=tokenizer,
                         reward_funcs=reward_funcs, callbacks=[logs])
    return trainer, logs.logs


def nan_on_poison(model, tokenizer):
    """The model returns NaN hidden states for any batch holding the POISON token."""
    poison = tokenizer.convert_tokens_to_ids(POISON)
    seen = {}
    model.register_forward_pre_hook(
        lambda m, args, kwargs: seen.update(hit=bool((kwargs["input_ids"] == poison).any())), with_kwargs=True)
    model.model.norm.register_forward_hook(lambda m, i, out: out * math.nan if seen["hit"] else out)
    return model


def poisoned(rows):
    return Dataset.from_list([{**r, "prompt": r["prompt"].replace("Assistant:", f"{POISON} Assistant:")} for r in rows])


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- stop, naming the component ----------------------------------------------------------------------------


def test_preference_term_overflow_stops_at_step_one(tmp_path, tokenizer):
    trainer, _ = make_trainer(tmp_path, tokenizer, loss_type=["ipo"], beta=1e-30)  # IPO's 1 / (2 beta) overflows
    before = weights(trainer.model)
    with pytest.raises(NonFiniteError, match=r"^Non-finite loss at step 1: the preference \(loss/pref = inf\) term\. "
                       r".*check beta.*no checkpoint was saved yet\. Set skip_nonfinite_batches=True"):
        trainer.train()
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_designer_term_overflow_names_the_designer_term(tmp_path, tokenizer):
    trainer, _ = make_trainer(tmp_path, tokenizer, reward_funcs=[length], aw_max_weight=math.inf, aw_temperature=1e-6)
    with pytest.raises(NonFiniteError, match=r"step 1: the designer \(loss/aux = inf\) term\. .*aw_max_weight"):
        trainer.train()


def test_value_head_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path, tokenizer):
    trainer, _ = make_trainer(tmp_path, tokenizer, reward_funcs=[length], value_learning_rate=1e30,
                              save_strategy="steps", save_steps=1)
    checkpoint = tmp_path / "run" / "checkpoint-1"
    with pytest.raises(NonFiniteError, match=rf"step 2: the value \(loss/value = (inf|nan)\) term\. "
                       rf".*value_learning_rate\. .*the last good checkpoint is {checkpoint} "
                       rf"\(resume with resume_from_checkpoint=True\)"):
        trainer.train()
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-1"]
    saved = {**load_file(checkpoint / "model.safetensors"),
             **{f"upo_value_head.{k}": v for k, v in load_file(checkpoint / "value_head.safetensors").items()}}
    assert all(torch.equal(saved[k], v) for k, v in trainer.model.state_dict().items())  # not updated after step 1


def test_nan_from_the_model_names_every_term_it_reaches(tmp_path, tokenizer):
    model = nan_on_poison(tiny_model(), tokenizer)
    trainer, _ = make_trainer(tmp_path, tokenizer, data=poisoned(make_pairs(8)), model=model, reward_funcs=[length])
    with pytest.raises(NonFiniteError, match=r"step 1: the preference \(loss/pref = nan\), "
                       r"designer \(loss/aux = nan\), value \(loss/value = nan\) terms\."):
        trainer.train()



def test_non_finite_gradient_names_the_parameter(tmp_path, tokenizer):
    trainer, _ = make_trainer(tmp_path, tokenizer, model=nan_gradient_in_first_layer(tiny_model()))
    before = weights(trainer.model)
    with pytest.raises(NonFiniteError, match=r"^Non-finite gradient at step 1: first in parameter "
                       r"'model.embed_tokens.weight', of the policy.*losses were finite \(loss/pref = 0.6931\)"):
        trainer.train()
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


# --- skip and count ----------------------------------------------------------------------------------------


def test_skipping_batches_counts_them_and_trains_on_the_rest(tmp_path, tokenizer):
    rows = make_pairs(16)
    data = Dataset.from_list([poisoned([r])[0] if i == 5 else r for i, r in enumerate(rows)])
    model = nan_on_poison(tiny_model(), tokenizer)
    trainer, logs = make_trainer(tmp_path, tokenizer, data=data, model=model, reward_funcs=[length], max_steps=4,
                                 skip_nonfinite_batches=True)
    before = weights(trainer.model)
    trainer.train()  # 4 steps of 4 pairs: one epoch, one batch holds the poisoned pair
    steps = [log for log in logs if "loss" in log]
    assert steps[-1]["nonfinite/skipped_batches"] == 1
    # The skipped batch's metrics (NaN rewards and margins) stay out of the logged averages.
    bad = {k: v for log in steps for k, v in log.items() if isinstance(v, float) and not math.isfinite(v)}
    assert not bad
    state = trainer.model.state_dict()
    assert all(torch.isfinite(v).all() for v in state.values())
    assert not torch.equal(before["model.embed_tokens.weight"], state["model.embed_tokens.weight"])


def test_a_step_whose_batches_are_all_skipped_does_not_move_the_weights(tmp_path, tokenizer):
    model = nan_on_poison(tiny_model(), tokenizer)
    trainer, logs = make_trainer(tmp_path, tokenizer, data=poisoned(make_pairs(16)), model=model, reward_funcs=[length],
                                 skip_nonfinite_batches=True, gradient_accumulation_steps=2,
                                 per_device_train_batch_size=2)
    before = weights(trainer.model)
    trainer.train()
    assert [log for log in logs if "loss" in log][-1]["nonfinite/skipped_batches"] == 6  # 3 steps x 2 micro-batches
    # Not even AdamW's momentum moved anything: the optimizer saw no gradient at all.
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_skipped_gradient_step_is_dropped_whole(tmp_path, tokenizer):
    trainer, logs = make_trainer(tmp_path, tokenizer, model=nan_gradient_in_first_layer(tiny_model()),
                                 skip_nonfinite_batches=True)
    before = weights(trainer.model)
    trainer.train()
    assert [log for log in logs if "loss" in log][-1]["nonfinite/skipped_batches"] == 3
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


@pytest.mark.slow
@pytest.mark.parametrize("skip", [False, True])
def test_two_processes_stop_together_or_skip_together(tmp_path, skip):
    """Under DDP every rank takes the same decision: both stop with the message, or both skip (no hang)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[2]
    data = write_jsonl(tmp_path / "pairs.jsonl", make_pairs(16))
    command = [Path(sys.executable).parent / "torchrun", "--standalone", "--nproc_per_node", "2", "tests/ddp_train.py",
               "--out", str(tmp_path / "out"), "--data", str(data), "--batch_size", "2", "--designer",
               "--max_steps", "4", "--option", "value_learning_rate=1e30",
               "--option", f"skip_nonfinite_batches={json.dumps(skip)}"]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "UPO_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(root)})
    output = result.stdout + result.stderr
    if skip:
        assert result.returncode == 0, output[-3000:]
        logs = json.loads((tmp_path / "out" / "rank0.json").read_text())["log_history"]
        skipped = [log.get("nonfinite/skipped_batches") for log in logs if "loss" in log]
        assert skipped == [None, 1, 2, 3]  # steps 2-4, cumulative
    else:
        assert result.returncode != 0
        for rank in (0, 1):
            assert f"Non-finite loss at step 2 (rank {rank}): the value (loss/value" in output, output[-3000:]


# --- numbers in the data, checked before training ----------------------------------------------------------

PAIRS = make_pairs(8)


@pytest.mark.parametrize("weight, shown, row", [("high", "'high'", None), (True, "True", None), (-1.0, "-1.0", 3),
                                              (float("nan"), "nan", 3)])
def test_bad_weight(tmp_path, tokenizer, weight, shown, row):
    """A whole column of text or booleans, or one negative or NaN weight (JSON allows NaN)."""
    rows = [{**r, "weight": weight if row in (None, i) else 1.0} for i, r in enumerate(PAIRS)]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    row = row or 0
    with pytest.raises(DataError, match=rf"pairs\.jsonl, pair {row} \(prompt 'Human: .*'\), column 'weight': "
                       rf"{shown} is not a finite number >= 0"):
        make_trainer(tmp_path, tokenizer, str(path))


def test_one_reference_column_without_the_other(tmp_path, tokenizer):
    data = Dataset.from_list([{**r, "ref_chosen_logps": -10.0} for r in PAIRS])
    with pytest.raises(DataError, match="column 'ref_chosen_logps' without 'ref_rejected_logps'.*add the missing one"):
        make_trainer(tmp_path, tokenizer, data)


@pytest.mark.parametrize("value", [3.5, "n/a", float("-inf")])
def test_bad_precomputed_reference_logps(tmp_path, tokenizer, value):
    data = Dataset.from_list([{**r, "ref_chosen_logps": value, "ref_rejected_logps": -10.0} for r in PAIRS])
    with pytest.raises(DataError, match=r"pair 0 .*column 'ref_chosen_logps': .* "
                       r"is not a finite sum of log-probabilities"):
        make_trainer(tmp_path, tokenizer, data)


def test_every_weight_zero(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{**r, "weight": 0} for r in PAIRS])
    with pytest.raises(DataError, match=r"pairs\.jsonl, column 'weight': every pair's weight is 0, "
                       r"so the loss is 0 and nothing would be learned"):
        make_trainer(tmp_path, tokenizer, str(path))
