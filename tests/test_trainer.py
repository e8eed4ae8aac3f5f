"""UPOTrainer end to end on tiny models: outputs, references, resume, and that the designer term learns."""

import json
import random

import pytest
import torch
from datasets import Dataset
from helpers import Recorder, make_pairs, tiny_model, tiny_training_options
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from upo import UPOConfig, UPOTrainer
from upo.data.collator import PreferenceCollator
from upo.data.tokenization import tokenize_pair
from upo.errors import ConfigError
from upo.logps import forward_logps

FAST = tiny_training_options(learning_rate=1e-3, logging_steps=1, seed=0, save_strategy="no")


def train(tokenizer, data, tmp_path, name="run", reward_funcs=None, **kwargs):
    recorder = Recorder()
    options = {**FAST, "max_steps": 2, **kwargs}
    if isinstance(reward_funcs, list) and all(isinstance(f, str) for f in reward_funcs):
        options["reward_funcs"], reward_funcs = reward_funcs, None
    trainer = UPOTrainer(tiny_model(), args=UPOConfig(output_dir=str(tmp_path / name), **options),
                         train_dataset=data, processing_class=tokenizer, callbacks=[recorder],
                         reward_funcs=reward_funcs)
    trainer.train()
    return trainer, recorder.logs


def test_output_folder_loads_with_from_pretrained(tokenizer, pairs, tmp_path):
    trainer, logs = train(tokenizer, pairs, tmp_path, reward_funcs=["readability", "length"], reward_weights=[1.0, 0.5])
    trainer.save_model()
    out = tmp_path / "run"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "value_head.safetensors", "upo_config.json",
                 "README.md"):
        assert (out / name).is_file(), name
    assert not any(k.startswith("upo_value_head") for k in load_file(out / "model.safetensors"))
    loaded = AutoModelForCausalLM.from_pretrained(out)
    for (name, p), (_, q) in zip(loaded.named_parameters(), trainer.model.named_parameters()):
        assert torch.equal(p, q), name
    AutoTokenizer.from_pretrained(out)
    config = json.loads((out / "upo_config.json").read_text())
    assert config["reward_funcs"] == ["readability", "length"] and config["alpha"] == 1.0
    assert config["designer_reward_stats"]["names"] == ["readability", "length"]
    for key in ("loss/pref", "loss/aux", "loss/value", "aux/advantage_mean", "aux/weight_mean", "aux/weight_max",
                "aux/clip_frac", "rewards/readability/mean", "rewards/length/std", "rewards/margins", "num_tokens"):
        assert key in logs[-1], key


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_a_tied_lm_head_in_a_gathered_state_dict_is_saved_once(tokenizer, pairs, tmp_path, arch):
    """Under FSDP2 the Trainer hands `_save` the full state dict gathered from the shards, where the LM head tied to
    the embeddings is a tensor of its own: it used to be saved twice. Saved once, as save_pretrained does, and the
    model loads tied. (Under FSDP2 itself: test_fsdp2_saves_a_tied_lm_head_once, slow.)"""
    trainer = UPOTrainer(tiny_model(arch, tied=True), args=UPOConfig(output_dir=str(tmp_path), **FAST, max_steps=1),
                         train_dataset=pairs, processing_class=tokenizer)
    model = trainer.model
    gathered = {k: v.detach().clone() for k, v in model.state_dict().items()}  # as accelerate's get_state_dict gives
    trainer._save(str(tmp_path / "out"), state_dict=gathered)
    trainer._save(str(tmp_path / "plain"))
    saved = load_file(tmp_path / "out" / "model.safetensors")
    assert saved.keys() == load_file(tmp_path / "plain" / "model.safetensors").keys()
    assert "lm_head.weight" not in saved and len(saved) == len(gathered) - 1
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert loaded.get_output_embeddings().weight is loaded.get_input_embeddings().weight
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in gathered.items())


def test_reference_equals_policy_at_the_first_step(tokenizer, pairs, tmp_path):
    from peft import LoraConfig

    full = UPOTrainer(tiny_model(), args=UPOConfig(output_dir=str(tmp_path / "a"), **FAST, max_steps=1),
                      train_dataset=pairs, processing_class=tokenizer, callbacks=[rec := Recorder()])
    full.train()
    lora = UPOTrainer(tiny_model(), args=UPOConfig(output_dir=str(tmp_path / "b"), **FAST, max_steps=1),
                      train_dataset=pairs, processing_class=tokenizer, callbacks=[rec_lora := Recorder()],
                      peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    lora.train()
    for logs in (rec.logs, rec_lora.logs):  # policy == reference before the first update: no reward, loss log 2
        assert logs[0]["rewards/chosen"] == pytest.approx(0.0, abs=1e-6)
        assert logs[0]["loss"] == pytest.approx(0.693147, abs=1e-5)
    lora.save_model()
    assert (tmp_path / "b" / "adapter_model.safetensors").is_file()


def test_the_adapters_random_init_follows_seed_not_what_ran_before(tokenizer, pairs, tmp_path):
    from peft import LoraConfig

    def lora_a(seed, draws_before):
        model = tiny_model()
        torch.rand(draws_before)  # other code that used the global generator before the trainer was built
        trainer = UPOTrainer(model, args=UPOConfig(output_dir=str(tmp_path / "lora"), **{**FAST, "seed": seed}),
                             train_dataset=pairs, processing_class=tokenizer,
                             peft_config=LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
        return torch.cat([p.detach().flatten() for n, p in trainer.model.named_parameters() if "lora_A" in n])

    assert torch.equal(lora_a(seed=0, draws_before=1), lora_a(seed=0, draws_before=7))
    assert not torch.equal(lora_a(seed=0, draws_before=1), lora_a(seed=1, draws_before=1))


def test_precomputed_reference_equals_reference_model(tokenizer, pairs, tmp_path):
    _, live = train(tokenizer, pairs, tmp_path, "live", max_steps=3)
    trainer, pre = train(tokenizer, pairs, tmp_path, "pre", max_steps=3, precompute_ref_log_probs=True)
    assert trainer.ref_model is None
    for a, b in zip(live, pre):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
        assert a["rewards/margins"] == pytest.approx(b["rewards/margins"], abs=1e-6)


def test_modpo_and_ipo_train(tokenizer, pairs, tmp_path):
    _, dpo = train(tokenizer, pairs, tmp_path, "dpo", max_steps=1)
    _, modpo = train(tokenizer, pairs, tmp_path, "modpo", max_steps=1, loss_type=["modpo"],
                     reward_funcs=["readability"], alpha=0.0)
    _, ipo = train(tokenizer, pairs, tmp_path, "ipo", max_steps=1, loss_type=["ipo", "sft"], loss_weights=[1.0, 0.5])
    assert modpo[0]["loss"] != pytest.approx(dpo[0]["loss"])  # the designer margin shifts the logit
    assert "loss/aux" not in modpo[0]
    assert ipo[0]["loss"] > 0


def test_modpo_without_rewards_is_refused(tokenizer, pairs, tmp_path):
    with pytest.raises(ConfigError, match="modpo"):
        UPOTrainer(tiny_model(), args=UPOConfig(output_dir=str(tmp_path), loss_type=["modpo"]), train_dataset=pairs,
                   processing_class=tokenizer)


def test_conversational_pairs_train(tokenizer, tmp_path):
    rows = [{"prompt": [{"role": "user", "content": f"Question {i}?"}],
             "chosen": [{"role": "assistant", "content": "Thank you, here is a clear answer."}],
             "rejected": [{"role": "assistant", "content": "No."}]} for i in range(8)]
    trainer, logs = train(tokenizer, Dataset.from_list(rows), tmp_path, max_steps=1, reward_funcs=["readability"])
    assert len(logs) == 1 and logs[0]["loss"] > 0


def test_resume_restores_value_head_and_weights(tokenizer, pairs, tmp_path):
    opts = dict(max_steps=4, reward_funcs=["length"], save_strategy="steps", save_steps=2)
    full, _ = train(tokenizer, pairs, tmp_path, "full", **opts)
    opts = dict(opts)
    reward_funcs = opts.pop("reward_funcs")
    part = UPOTrainer(tiny_model(), args=UPOConfig(output_dir=str(tmp_path / "part"), **{**FAST, **opts}),
                      train_dataset=pairs, processing_class=tokenizer, reward_funcs=reward_funcs)
    part.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    for (name, p), (_, q) in zip(full.model.named_parameters(), part.model.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6), name
    assert full.value_head.linear.weight.abs().sum() > 0


# --- Learning: the designer term pushes an objective the preference labels do not encode ---

SUFFIX = " Have a nice day!"


def nice_day(prompts, completions, **kwargs):
    return [1.0 if "nice day" in c else 0.0 for c in completions]


def learning_data(seed=0, n=48):
    rng = random.Random(seed)
    rows = []
    for i in range(n):  # preference: an answer beats a refusal; the suffix is independent of the label
        chosen = f" The answer is {i % 7}." + (SUFFIX if rng.random() < 0.5 else "")
        rejected = " I do not know." + (SUFFIX if rng.random() < 0.5 else "")
        rows.append({"prompt": f"Human: What is {i} plus one? Assistant:", "chosen": chosen, "rejected": rejected})
    return Dataset.from_list(rows)


def suffix_preference(model, tokenizer, n=12):
    """Mean per-token log-prob of held-out responses with the suffix minus the same responses without it."""
    collator = PreferenceCollator(tokenizer.pad_token_id)
    rows = [tokenize_pair(tokenizer, f"Human: What is {100 + i} plus two? Assistant:", f" The answer is {i}." + SUFFIX,
                          f" The answer is {i}.") for i in range(n)]
    with torch.no_grad():
        out = forward_logps(model, collator(rows))
    per_token = out.logps / out.lengths
    with_suffix, without = per_token.chunk(2)
    return (with_suffix - without).mean().item()


def test_upo_pushes_the_designer_objective_more_than_dpo(tokenizer, tmp_path):
    data = learning_data()
    opts = dict(max_steps=24, learning_rate=5e-4, per_device_train_batch_size=8, beta=0.1)
    before = suffix_preference(tiny_model(), tokenizer)
    dpo, _ = train(tokenizer, data, tmp_path, "dpo", **opts)
    # Per token and at temperature 1: this model starts from random weights, so the likelihood of the data is far
    # from fitted, and the per-sequence term (the default) or the default temperature's larger weights (0.5) would
    # outweigh the preference here (see the next test).
    upo, logs = train(tokenizer, data, tmp_path, "upo", **opts, reward_funcs=[nice_day], alpha=1.0,
                      aux_normalization="per_token", aw_temperature=1.0)
    dpo_gain = suffix_preference(dpo.model, tokenizer) - before
    upo_gain = suffix_preference(upo.model, tokenizer) - before
    print(f"suffix preference gain: DPO {dpo_gain:+.3f}, UPO {upo_gain:+.3f}")
    assert upo_gain > dpo_gain + 0.3
    recent = [log["rewards/accuracies"] for log in logs[-6:]]
    assert sum(recent) / len(recent) >= 0.6  # and the preference is still learnt


def test_per_sequence_designer_term_is_stronger_and_can_outweigh_the_preference(tokenizer, tmp_path):
    """`aux_normalization: per_sequence` (the default, the paper's log pi(y|x)) weighs each response's summed
    log-prob: about a response's length times the per-token term. On data far from the policy, as here, that
    likelihood term outweighs DPO's at alpha 1 (docs/METHOD.md: lower alpha there). At temperature 1, where the
    mean advantage weight is near 1, so that the two normalisations alone differ."""
    data = learning_data()
    opts = dict(max_steps=24, learning_rate=5e-4, per_device_train_batch_size=8, beta=0.1, reward_funcs=[nice_day],
                aw_temperature=1.0)
    before = suffix_preference(tiny_model(), tokenizer)
    gains, accuracy = {}, {}
    for normalization, alpha in (("per_token", 1.0), ("per_sequence", 1.0), ("per_sequence", 0.01)):
        trainer, logs = train(tokenizer, data, tmp_path, f"{normalization}-{alpha}", **opts, alpha=alpha,
                              aux_normalization=normalization)
        gains[normalization, alpha] = suffix_preference(trainer.model, tokenizer) - before
        accuracy[normalization, alpha] = sum(log["rewards/accuracies"] for log in logs[-6:]) / 6
    print(f"suffix preference gains {gains}, last training accuracies {accuracy}")
    assert gains["per_sequence", 1.0] > gains["per_token", 1.0] + 0.1
    assert accuracy["per_sequence", 1.0] < 0.5 and accuracy["per_sequence", 0.01] >= 0.9


@pytest.mark.parametrize("aux_loss", ["awr", "infonca", "topr"])
def test_gradient_accumulation_equals_one_big_batch(tokenizer, pairs, tmp_path, aux_loss):
    """Averaged terms (sft, L_aux per response or per pair) divide by the whole step's counts, so 2 x 2 pairs ==
    1 x 4 pairs."""
    opts = dict(max_steps=2, loss_type=["sigmoid", "sft"], reward_funcs=["length"], learning_rate=1e-3,
                aux_loss=aux_loss)
    big, _ = train(tokenizer, pairs, tmp_path, "big", **opts)
    small, _ = train(tokenizer, pairs, tmp_path, "small", **opts, per_device_train_batch_size=2,
                     gradient_accumulation_steps=2)
    difference = max((p - q).abs().max().item() for p, q in zip(big.model.parameters(), small.model.parameters()))
    assert difference < 1e-5, difference


def test_the_value_head_is_clipped_apart_from_the_policy(tokenizer, pairs, tmp_path):
    """max_grad_norm clips the policy's gradient alone: the fresh value head's would otherwise shrink UPO's policy steps
    where DPO's are not shrunk. The head is clipped to the same norm on its own."""
    trainer = UPOTrainer(tiny_model(), args=UPOConfig(output_dir=str(tmp_path), **{**FAST, "max_grad_norm": 0.01},
                                                      reward_funcs=["length"]),
                         train_dataset=pairs, processing_class=tokenizer)
    model = trainer.model.train()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    trainer.compute_loss(model, batch).backward()
    head = list(trainer.value_head.parameters())
    policy = [p for n, p in model.named_parameters() if not n.startswith("upo_value_head") and p.grad is not None]

    def norm(params):
        return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])).item()

    policy_norm, head_norm = norm(policy), norm(head)
    assert policy_norm > 0.01 and head_norm > 0.01
    before = [p.grad.clone() for p in policy]
    assert float(trainer._clip_grad_norm(model)) == pytest.approx(policy_norm, rel=1e-5)
    for p, g in zip(policy, before):
        assert torch.allclose(p.grad, g * 0.01 / policy_norm, rtol=1e-4, atol=1e-12)
    assert norm(head) == pytest.approx(0.01, rel=1e-4)


def test_grad_norm_without_clipping_is_still_the_policys(tokenizer, pairs, tmp_path):
    """max_grad_norm 0 turns clipping off; the logged grad_norm is then the policy's true norm, as with clipping (it
    used to be the norm of the policy and the value head together), and no gradient changes."""
    trainer = UPOTrainer(tiny_model(), args=UPOConfig(output_dir=str(tmp_path), **{**FAST, "max_grad_norm": 0},
                                                      reward_funcs=["length"]),
                         train_dataset=pairs, processing_class=tokenizer)
    model = trainer.model.train()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    trainer.compute_loss(model, batch).backward()
    head = {id(p) for p in trainer.value_head.parameters()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    policy = [g for n, g in grads.items() if not n.startswith("upo_value_head")]
    policy_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in policy])).item()
    assert policy_norm > 0.01 and any(id(p) in head and p.grad.norm() > 0.01 for p in model.parameters())
    assert float(trainer._get_grad_norm(model)) == pytest.approx(policy_norm, rel=1e-6)
    assert all(torch.equal(p.grad, grads[n]) for n, p in model.named_parameters() if p.grad is not None)


def test_the_value_fit_on_held_out_pairs_is_reported(tokenizer, pairs, tmp_path):
    """`eval_value/explained_variance`: 1 - SSE / SST of r_aux by V(x) over the whole evaluation set."""
    held_out = Dataset.from_list([{**row, "prompt": row["prompt"].replace("Human:", "Human: Tell me,")}
                                  for row in make_pairs(12)])
    args = UPOConfig(output_dir=str(tmp_path), **{**FAST, "max_steps": 4}, reward_funcs=["length:target_words=3"],
                     per_device_eval_batch_size=5)
    trainer = UPOTrainer(tiny_model(), args=args,
                         train_dataset=pairs, eval_dataset=held_out, processing_class=tokenizer)
    trainer.train()
    metrics = trainer.evaluate()
    targets, values = [], []
    with torch.no_grad():
        for batch in trainer.get_eval_dataloader():
            batch = trainer._prepare_inputs(batch)
            v = trainer.value_head(forward_logps(trainer.model.eval(), batch).prompt_hidden)
            targets += batch["designer_rewards"].tolist()
            values += v.repeat(2).tolist()
    mean = sum(targets) / len(targets)
    expected = 1 - sum((t - v) ** 2 for t, v in zip(targets, values)) / sum((t - mean) ** 2 for t in targets)
    assert len(targets) == 24 and metrics["eval_value/explained_variance"] == pytest.approx(expected, rel=1e-6)


def test_disable_dropout_reaches_the_adapters_dropout(tokenizer, pairs, tmp_path):
    """As in TRL, `disable_dropout` also switches off the LoRA dropout: with it on, the policy would differ from the
    (dropout-free) reference before the first update."""
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_dropout=0.5, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = UPOTrainer(tiny_model(), args=UPOConfig(output_dir=str(tmp_path), **FAST), train_dataset=pairs,
                         processing_class=tokenizer, peft_config=lora)
    dropouts = [m for m in trainer.model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(m.p == 0 for m in dropouts)


def test_a_run_is_reproducible_from_its_seed(tokenizer, pairs, tmp_path):
    """Everything random in a run follows `seed` (adapter init, data order, KTO's mismatched completions), not what
    used the global generator before: two runs with one seed train the same weights, another seed others."""
    from peft import LoraConfig

    def trained(name, seed, draws_before):
        torch.rand(draws_before)
        lora = LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM")
        trainer = UPOTrainer(tiny_model(), args=UPOConfig(output_dir=str(tmp_path / name), **{**FAST, "seed": seed},
                                                          loss_type=["kto"], reward_funcs=["length"], max_steps=3),
                             train_dataset=pairs, processing_class=tokenizer, peft_config=lora)
        trainer.train()
        return torch.cat([p.detach().flatten() for p in trainer.model.parameters() if p.requires_grad])

    first = trained("a", 0, draws_before=1)
    assert torch.equal(first, trained("b", 0, draws_before=5))
    assert not torch.equal(first, trained("c", 1, draws_before=1))
