"""Our DPO equals TRL 1.16's DPOTrainer on the same model, data and seed; UPO with alpha = 0 equals our DPO."""

import copy

import pytest
import torch
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


# --- Every TRL 1.16 DPO loss type, on one batch -------------------------------------------------------------------
# TRL's value: DPOTrainer._compute_loss with that loss type; ours: UPOTrainer.compute_loss with it. Same weights, same
# reference (a model of another seed, so that the log-ratios are far from 0), same four pairs, in eval mode.
LOSS_TYPES = {  # loss type -> label_smoothing (robust's flip probability, EXO's epsilon, cDPO's for aot)
    "sigmoid": 0.0, "hinge": 0.0, "ipo": 0.0, "exo_pair": 1e-3, "nca_pair": 0.0, "robust": 0.1, "bco_pair": 0.0,
    "sppo_hard": 0.0, "aot": 0.1, "aot_unpaired": 0.1, "apo_zero": 0.0, "apo_down": 0.0, "discopop": 0.0,
    "sft": 0.0, "sigmoid_norm": 0.0,
}
PARITY = tiny_training_options(seed=0, save_strategy="no", bf16=False, beta=0.1)


@pytest.fixture(scope="module")
def one_batch_each(tmp_path_factory):
    """A TRL DPOTrainer and a UPOTrainer on the same models and pairs, and each one's first batch of four pairs."""
    from datasets import Dataset
    from helpers import FIXTURES, make_pairs
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(FIXTURES / "tiny_tokenizer")
    pairs = Dataset.from_list(make_pairs(8))
    tmp = tmp_path_factory.mktemp("parity")
    theirs = trl.DPOTrainer(
        model=tiny_model(seed=0), ref_model=tiny_model(seed=1), train_dataset=pairs, processing_class=tokenizer,
        args=trl.DPOConfig(output_dir=str(tmp / "trl"), gradient_checkpointing=False, pad_to_multiple_of=None,
                           **PARITY))
    ours = UPOTrainer(tiny_model(seed=0), tiny_model(seed=1), UPOConfig(output_dir=str(tmp / "upo"), **PARITY),
                      train_dataset=pairs, processing_class=tokenizer)
    batches = []
    for trainer in (theirs, ours):
        trainer.model.eval()
        batches.append(trainer._prepare_inputs(next(iter(trainer.get_eval_dataloader(trainer.train_dataset)))))
    return theirs, ours, batches


def loss_on(trainer, batch) -> float:
    with torch.no_grad():
        return trainer.compute_loss(trainer.model, batch).item()


@pytest.mark.parametrize("loss_type", list(LOSS_TYPES))
def test_every_trl_loss_type_equals_trls_on_one_batch(one_batch_each, loss_type):
    theirs, ours, (their_batch, our_batch) = one_batch_each
    theirs.loss_types, theirs.loss_weights, theirs.label_smoothing = [loss_type], [1.0], LOSS_TYPES[loss_type]
    ours.args.loss_type, ours.args.label_smoothing = [loss_type], LOSS_TYPES[loss_type]
    if loss_type == "exo_pair":
        theirs.args.label_smoothing = LOSS_TYPES[loss_type]
    expected, got = loss_on(theirs, their_batch), loss_on(ours, our_batch)
    print(f"{loss_type}: TRL {expected:.8g}, upo {got:.8g}, |difference| {abs(got - expected):.3g}")
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert ours.training_metrics.values["eval"]["logps/chosen"][-1] != 0  # the batch was a real one


@pytest.mark.parametrize("method", ["simpo", "cpo-simpo", "cpo", "orpo"])
def test_reference_free_methods_equal_trls_cpo_and_orpo_losses(one_batch_each, method):
    """SimPO, CPO-SimPO and CPO as TRL's CPOTrainer.cpo_loss computes them, ORPO as its ORPOTrainer.odds_ratio_loss,
    on this batch's policy log-probs (token-averaged where TRL averages them), plus `cpo_alpha` (1 for ORPO) times the
    NLL of the chosen responses as TRL's DPOTrainer computes it (loss type 'sft')."""
    from types import SimpleNamespace

    from trl.experimental.cpo import CPOTrainer
    from trl.experimental.orpo import ORPOTrainer

    from upo.logps import forward_logps

    theirs, ours, (their_batch, our_batch) = one_batch_each
    beta, gamma, cpo_alpha = 2.0, 0.5, 0.7
    with torch.no_grad():
        out = forward_logps(ours.model, our_batch)
    chosen, rejected = out.logps.chunk(2)
    chosen_avg, rejected_avg = (out.logps / out.lengths).chunk(2)
    theirs.loss_types, theirs.loss_weights = ["sft"], [1.0]
    nll = loss_on(theirs, their_batch)
    trl_self = SimpleNamespace(alpha=0.0, beta=beta, label_smoothing=0.1, simpo_gamma=gamma,
                               accelerator=SimpleNamespace(device="cpu"))
    if method == "orpo":
        losses = ORPOTrainer.odds_ratio_loss(SimpleNamespace(beta=beta, accelerator=trl_self.accelerator),
                                             chosen_avg, rejected_avg)[0]
        expected, loss_type, weights = nll - losses.mean().item(), ["orpo"], None
    else:
        trl_self.loss_type = "sigmoid" if method == "cpo" else "simpo"
        logps = (chosen, rejected) if method == "cpo" else (chosen_avg, rejected_avg)
        losses = CPOTrainer.cpo_loss(trl_self, *logps)[0]
        alpha = 0.0 if method == "simpo" else cpo_alpha
        expected = losses.mean().item() + alpha * nll
        loss_type = {"simpo": ["simpo"], "cpo": ["cpo"], "cpo-simpo": ["simpo", "sft"]}[method]
        weights = [1.0, cpo_alpha] if method == "cpo-simpo" else None
    args = ours.args
    saved = (args.loss_type, args.loss_weights, args.beta, args.label_smoothing)
    args.loss_type, args.loss_weights, args.beta, args.label_smoothing = loss_type, weights, beta, 0.1
    args.simpo_gamma, args.cpo_alpha = gamma, cpo_alpha
    try:
        got = loss_on(ours, our_batch)
    finally:
        args.loss_type, args.loss_weights, args.beta, args.label_smoothing = saved
    print(f"{method}: TRL {expected:.8g}, upo {got:.8g}, |difference| {abs(got - expected):.3g}")
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_trls_token_metrics_equal_trls_on_one_batch(one_batch_each):
    """entropy, logits/chosen, logits/rejected, mean_token_accuracy: computed by TRL's fused LM head there, from the
    logits of the loss's own forward here; both token-weighted over the batch."""
    theirs, ours, (their_batch, our_batch) = one_batch_each
    theirs.loss_types, theirs.loss_weights = ["sigmoid"], [1.0]
    ours.args.loss_type = ["sigmoid"]
    loss_on(theirs, their_batch), loss_on(ours, our_batch)
    for key in ("entropy", "logits/chosen", "logits/rejected", "mean_token_accuracy", "rewards/margins"):
        expected, got = theirs._metrics["eval"][key][-1], ours.training_metrics.values["eval"][key][-1]
        print(f"{key}: TRL {expected:.8g}, upo {got:.8g}, |difference| {abs(got - expected):.3g}")
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-6), key
