"""`UPOTrainer` where TRL's `DPOTrainer` stands: TRL's `scripts/dpo.py` with only the trainer swapped, a `DPOConfig`
converted or refused in one line, TRL's argument order, `data_collator`, `compute_metrics`, dicts of eval datasets,
TRL's metric names, and what the logged `loss` holds."""

import inspect
import json
import math

import pytest
from datasets import Dataset
from helpers import Recorder, make_pairs, make_tiny_lm_dir, tiny_model, tiny_training_options, write_hub_dataset

from upo import UPOConfig, UPOTrainer
from upo.data.collator import PreferenceCollator
from upo.errors import ConfigError

trl = pytest.importorskip("trl")

TRL_DPO_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
                   "logps/rejected", "entropy", "logits/chosen", "logits/rejected", "mean_token_accuracy",
                   "num_tokens")


def reward_accuracy(prediction):
    """A `compute_metrics` as a user writes it for preference predictions: (N, 2) rewards, label 0 = chosen."""
    return {"reward_accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def test_trls_dpo_script_runs_with_only_the_trainer_swapped(tmp_path):
    """trl/scripts/dpo.py's `make_parser` and `main`, as TRL 1.16 ships them, with `DPOTrainer` replaced by
    `UPOTrainer`, on a tiny model folder and a dataset folder laid out as on the Hub; its eval set is a dict."""
    from datasets import load_dataset
    from trl import (
        DatasetMixtureConfig,
        DPOConfig,
        ModelConfig,
        ScriptArguments,
        TrlParser,
        get_peft_config,
        get_quantization_config,
    )

    model = make_tiny_lm_dir(tmp_path / "model")
    data = write_hub_dataset(tmp_path / "data", {"train": make_pairs(8), "test": make_pairs(4)})
    argv = ["--dataset_name", str(data), "--model_name_or_path", str(model), "--learning_rate", "5.0e-4",
            "--num_train_epochs", "1", "--per_device_train_batch_size", "2", "--max_steps", "2",
            "--gradient_accumulation_steps", "2", "--eval_strategy", "steps", "--eval_steps", "2",
            "--output_dir", str(tmp_path / "out"), "--no_remove_unused_columns", "--use_peft", "--lora_r", "8",
            "--lora_alpha", "16", "--max_length", "64", "--use_cpu", "true", "--report_to", "none",
            "--logging_steps", "1", "--disable_tqdm", "true"]

    # make_parser() and main(), DPOTrainer -> UPOTrainer
    parser = TrlParser((ScriptArguments, DPOConfig, ModelConfig, DatasetMixtureConfig))
    script_args, training_args, model_args, dataset_args = parser.parse_args_and_config(
        argv, fail_with_unknown_args=False)
    model_init_kwargs = dict(revision=model_args.model_revision, trust_remote_code=training_args.trust_remote_code,
                             attn_implementation=model_args.attn_implementation, dtype=model_args.dtype)
    if training_args.model_init_kwargs is not None:
        model_init_kwargs.update(training_args.model_init_kwargs)
    training_args.model_init_kwargs = model_init_kwargs
    dataset = load_dataset(script_args.dataset_name, name=script_args.dataset_config,
                           streaming=script_args.dataset_streaming)
    recorder = Recorder()
    trainer = UPOTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=dataset[script_args.dataset_train_split],
        eval_dataset={"test": dataset[script_args.dataset_test_split], "again": dataset["test"].select(range(2))},
        compute_metrics=reward_accuracy,
        callbacks=[recorder],
        quantization_config=get_quantization_config(model_args),
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    trainer.end()

    assert isinstance(trainer.args, UPOConfig) and trainer.args.learning_rate == 5.0e-4
    assert trainer.args.bf16 and trainer.args.activation_checkpointing  # TRL's defaults, as TRL would have run
    assert all(key in recorder.logs[-1] for key in TRL_DPO_METRICS), sorted(recorder.logs[-1])
    evals = [log for log in trainer.state.log_history if "eval_test_loss" in log]
    assert len(evals) == 1
    for name in ("test", "again"):  # each set under its own prefix, upo's metrics included
        for key in ("loss", "rewards/accuracies", "entropy", "mean_token_accuracy", "reward_accuracy"):
            assert f"eval_{name}_{key}" in trainer.state.log_history[-2] | evals[0], f"eval_{name}_{key}"
    assert evals[0]["eval_test_reward_accuracy"] == pytest.approx(evals[0]["eval_test_rewards/accuracies"])
    assert (tmp_path / "out" / "adapter_config.json").is_file()


def test_the_arguments_are_trls_in_trls_order():
    ours = list(inspect.signature(UPOTrainer.__init__).parameters)[1:]
    theirs = list(inspect.signature(trl.DPOTrainer.__init__).parameters)[1:]
    assert ours[: len(theirs)] == theirs  # model, ref_model, args, data_collator, train_dataset, ... peft_config
    assert inspect.signature(UPOTrainer.__init__).parameters["reward_funcs"].kind is inspect.Parameter.KEYWORD_ONLY


def test_positional_arguments_as_trl_takes_them(tokenizer, tmp_path):
    args = UPOConfig(output_dir=str(tmp_path / "p"), **tiny_training_options(max_steps=1, save_strategy="no"))
    pairs = Dataset.from_list(make_pairs(4))
    trainer = UPOTrainer(tiny_model(), tiny_model(seed=1), args, None, pairs, pairs, tokenizer)
    assert trainer.ref_model is not None and trainer.eval_dataset is not None
    assert trainer.processing_class is tokenizer


def test_a_dpoconfig_with_an_option_upo_does_not_implement_is_one_line(tokenizer, tmp_path):
    config = trl.DPOConfig(output_dir=str(tmp_path / "x"), use_cpu=True, report_to="none", use_weighting=True,
                           discopop_tau=0.1)
    with pytest.raises(ConfigError) as refused:
        UPOTrainer(tiny_model(), args=config, train_dataset=Dataset.from_list(make_pairs(4)),
                   processing_class=tokenizer)
    message = str(refused.value)
    assert message.startswith("args is trl's DPOConfig with an option that upo does not implement: use_weighting=")
    assert "discopop_tau" not in message and "\n" not in message  # discopop_tau is implemented


def test_another_trl_config_is_refused_naming_the_fix(tokenizer, tmp_path):
    config = trl.KTOConfig(output_dir=str(tmp_path / "x"), use_cpu=True, report_to="none")
    with pytest.raises(ConfigError, match=r"^args is trl's KTOConfig: UPOTrainer takes a UPOConfig, TRL's DPOConfig "
                                          r".*KTO is UPOConfig\(loss_type=\['kto'\]\)"):
        UPOTrainer(tiny_model(), args=config, train_dataset=Dataset.from_list(make_pairs(4)),
                   processing_class=tokenizer)


def test_a_removed_trainer_argument_names_its_replacement(tokenizer, tmp_path):
    with pytest.raises(ConfigError, match=r"^UPOTrainer: `tokenizer` is now `processing_class`\.$"):
        UPOTrainer(tiny_model(), args=UPOConfig(output_dir=str(tmp_path / "x"), use_cpu=True), tokenizer=tokenizer)
    with pytest.raises(TypeError, match="unexpected keyword argument 'tokeniser'"):
        UPOTrainer(tiny_model(), args=UPOConfig(output_dir=str(tmp_path / "x"), use_cpu=True), tokeniser=tokenizer)


class CountingCollator(PreferenceCollator):
    calls = 0

    def __call__(self, rows):
        CountingCollator.calls += 1
        return super().__call__(rows)


def test_a_data_collator_of_ones_own_builds_every_batch(tokenizer, tmp_path):
    options = tiny_training_options(max_steps=2, logging_steps=1, save_strategy="no", eval_strategy="steps",
                                    eval_steps=2, per_device_eval_batch_size=4)
    trainer = UPOTrainer(tiny_model(), args=UPOConfig(output_dir=str(tmp_path / "c"), **options),
                         data_collator=CountingCollator(tokenizer.pad_token_id, layout="separate"),
                         train_dataset=Dataset.from_list(make_pairs(8)), eval_dataset=Dataset.from_list(make_pairs(4)),
                         processing_class=tokenizer)
    trainer.train()
    assert CountingCollator.calls >= 3  # two training batches and one evaluation batch


def test_trls_collator_is_refused_in_one_line(tokenizer, tmp_path):
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    trainer = UPOTrainer(tiny_model(), args=UPOConfig(output_dir=str(tmp_path / "t"), **tiny_training_options(
                         max_steps=1, save_strategy="no")), data_collator=DataCollatorForPreference(pad_token_id=0),
                         train_dataset=Dataset.from_list(make_pairs(4)), processing_class=tokenizer)
    with pytest.raises(ConfigError, match=r"^data_collator returned a batch without \['position_ids', "
                                          r".*completion_mask.*upo's layout"):
        trainer.train()


def test_compute_metrics_gets_each_pairs_rewards_without_a_second_forward(tokenizer, tmp_path):
    seen = {}

    def compute_metrics(prediction):
        seen["predictions"], seen["labels"] = prediction.predictions, prediction.label_ids
        return reward_accuracy(prediction)

    pairs = Dataset.from_list(make_pairs(6))
    trainer = UPOTrainer(tiny_model(), tiny_model(seed=1), UPOConfig(output_dir=str(tmp_path / "m"),
                         **tiny_training_options(save_strategy="no", per_device_eval_batch_size=6)),
                         train_dataset=pairs, eval_dataset=pairs, processing_class=tokenizer,
                         compute_metrics=compute_metrics)
    metrics = trainer.evaluate()
    assert seen["predictions"].shape == (6, 2) and (seen["labels"] == 0).all()
    assert metrics["eval_reward_accuracy"] == pytest.approx(metrics["eval_rewards/accuracies"])
    margins = seen["predictions"][:, 0] - seen["predictions"][:, 1]  # one batch: its mean is the metric
    assert float(margins.mean()) == pytest.approx(metrics["eval_rewards/margins"], rel=1e-4)


def test_evaluate_takes_a_dataset_or_a_dict_given_later(tokenizer, tmp_path):
    trainer = UPOTrainer(tiny_model(), args=UPOConfig(output_dir=str(tmp_path / "e"), **tiny_training_options(
                         save_strategy="no")), train_dataset=Dataset.from_list(make_pairs(4)),
                         processing_class=tokenizer)
    raw = Dataset.from_list(make_pairs(4))
    assert "eval_rewards/margins" in trainer.evaluate(raw)
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(row) for row in make_pairs(2)))
    both = trainer.evaluate({"a": raw, "b": str(tmp_path / "b.jsonl")})  # a file, as the trainer takes one
    assert {"eval_a_loss", "eval_b_loss", "eval_a_entropy", "eval_b_logps/chosen"} <= set(both)
    assert not any(key.startswith("eval_entropy") for key in both)


def test_the_logged_loss_is_the_whole_objective_and_loss_pref_the_preference_term(tokenizer, tmp_path):
    recorder = Recorder()
    trainer = UPOTrainer(tiny_model(), args=UPOConfig(output_dir=str(tmp_path / "l"), alpha=0.5,
                         reward_funcs=["length"], **tiny_training_options(max_steps=1, logging_steps=1,
                                                                           save_strategy="no")),
                         train_dataset=Dataset.from_list(make_pairs(4)), processing_class=tokenizer,
                         callbacks=[recorder])
    trainer.train()
    log = recorder.logs[0]
    whole = log["loss/pref"] + 0.5 * log["loss/aux"] + log["loss/value"]
    assert log["loss"] == pytest.approx(whole, rel=1e-3) and log["loss"] != pytest.approx(log["loss/pref"], rel=1e-3)
    assert math.isfinite(log["entropy"]) and 0 <= log["mean_token_accuracy"] <= 1


def test_token_metrics_by_hand():
    """TRL's definitions: entropy of the next-token distribution, mean logit over the vocabulary, top-1 hit (ties go to
    the first maximum), averaged over tokens; accuracy on chosen tokens only, entropy over every response token."""
    import torch

    from upo.logps import token_logps, token_statistics

    head = torch.nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    hidden = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # logits (2, 0, 0), (0, 1, 0), (1, 1, 0)
    targets = torch.tensor([0, 2, 1])  # hit, miss, miss (a tie: the first maximum, token 0, is the top-1)
    logps, stats = token_logps(hidden, targets, head, statistics=True)

    def entropy(logits):
        p = [math.exp(x) / sum(math.exp(y) for y in logits) for x in logits]
        return -sum(q * math.log(q) for q in p)

    rows = [(2, 0, 0), (0, 1, 0), (1, 1, 0)]
    assert stats[:, 0].tolist() == pytest.approx([entropy(r) for r in rows], abs=1e-6)
    assert stats[:, 1].tolist() == pytest.approx([2 / 3, 1 / 3, 2 / 3], abs=1e-6)
    assert stats[:, 2].tolist() == [1.0, 0.0, 0.0]
    assert logps[0].item() == pytest.approx(2 - math.log(math.exp(2) + 2), abs=1e-6)
    totals = token_statistics(stats, torch.tensor([0, 0, 1]), n_rows=1)  # two chosen tokens, one rejected
    assert totals["mean_token_accuracy"].tolist() == [1.0, 2.0]
    assert totals["logits/chosen"].tolist() == pytest.approx([1.0, 2.0]) and totals["entropy"][1] == 3
    unpaired = token_statistics(stats, torch.tensor([0, 0, 1]), n_rows=1, labels=torch.tensor([0]))
    assert "mean_token_accuracy" not in unpaired and unpaired["entropy"][1] == 2  # the KL slot is left out
    assert unpaired["logits/rejected"].tolist() == pytest.approx([1.0, 2.0]) and unpaired["logits/chosen"][1] == 0
