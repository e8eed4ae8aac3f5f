"""What a GPU run uses, checked on CPU with tiny models: bf16 mixed precision, bf16 weights, activation
checkpointing (full and LoRA, where the adapters need input gradients), and the refusals of QLoRA where it cannot
run. (The reference log-probs computed on each process's device: tests/training/test_distributed.py.)"""

import pytest
import torch
from datasets import Dataset
from helpers import make_pairs, make_tiny_lm_dir, tiny_model, tiny_training_options
from transformers.utils import is_torch_bf16_gpu_available

from upo import UPOConfig, UPOTrainer
from upo.errors import ConfigError

FAST = tiny_training_options(learning_rate=1e-2, logging_steps=1, seed=0, save_strategy="no", max_steps=1)


def trained(model, tokenizer, tmp_path, peft_config=None, reward_funcs=None, **options):
    args = UPOConfig(output_dir=str(tmp_path / "run"), **{**FAST, **options})
    trainer = UPOTrainer(model, args=args, train_dataset=Dataset.from_list(make_pairs(8)), processing_class=tokenizer,
                         peft_config=peft_config, reward_funcs=reward_funcs)
    trainer.train()
    return trainer


def weights(trainer):
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {k: v.detach().clone().float() for k, v in model.state_dict().items()}


def test_one_bf16_mixed_precision_step_on_cpu(tokenizer, tmp_path):
    """`bf16=True`: the forward runs under bf16 autocast, the weights stay float32 and are updated."""
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    model.model.layers[0].mlp.down_proj.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    trainer = trained(model, tokenizer, tmp_path, bf16=True, reward_funcs=[lambda prompts, completions, **kw: [
        float(len(c)) for c in completions]])
    assert torch.bfloat16 in seen  # the training forward ran in bf16
    after = weights(trainer)
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.isfinite(v).all() for v in after.values())


def test_bf16_default_is_off_on_cpu_and_trl_recipes_can_turn_it_on(tmp_path):
    """bf16 defaults to on only where a GPU supports it (see the option's help): off on a machine without one, and off
    with use_cpu on any machine."""
    assert UPOConfig(output_dir=str(tmp_path), report_to="none").bf16 is is_torch_bf16_gpu_available()
    assert UPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True).bf16 is False
    assert UPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=True).bf16 is True


def test_one_step_with_bf16_weights_loaded_by_name(tokenizer, tmp_path):
    """`model_init_kwargs` as the JSON string a command line gives: the model is loaded in bf16 and trains."""
    folder = make_tiny_lm_dir(tmp_path / "model")
    trainer = trained(str(folder), tokenizer, tmp_path, model_init_kwargs='{"dtype": "bfloat16"}')
    assert trainer.args.model_init_kwargs == {"dtype": "bfloat16"}
    params = dict(trainer.model.named_parameters())
    assert params["model.layers.0.mlp.down_proj.weight"].dtype == torch.bfloat16
    reference = tiny_model().state_dict()["model.layers.0.mlp.down_proj.weight"].to(torch.bfloat16)
    assert not torch.equal(params["model.layers.0.mlp.down_proj.weight"].detach(), reference)  # trained


def test_one_step_with_bf16_weights_under_bf16_autocast(tokenizer, tmp_path):
    """TRL's GPU recipe (`dtype: bfloat16` and `bf16: true`): the forward's outputs come back in float32 from
    accelerate's autocast wrapper, the LM head (applied outside the forward) and the value head take bf16."""
    folder = make_tiny_lm_dir(tmp_path / "model")
    trainer = trained(str(folder), tokenizer, tmp_path, model_init_kwargs='{"dtype": "bfloat16"}', bf16=True,
                      reward_funcs=[lambda prompts, completions, **kw: [float(len(c)) for c in completions]])
    params = dict(trainer.model.named_parameters())
    assert params["model.layers.0.mlp.down_proj.weight"].dtype == torch.bfloat16
    assert all(torch.isfinite(p).all() for p in params.values())
    assert torch.isfinite(torch.tensor(trainer.state.log_history[0]["loss"]))


def test_one_activation_checkpointing_step_equals_a_plain_step(tokenizer, tmp_path):
    plain = weights(trained(tiny_model(), tokenizer, tmp_path / "plain"))
    checkpointed = trained(tiny_model(), tokenizer, tmp_path / "ckpt", activation_checkpointing=True)
    assert trainer_checkpointing_was_on(checkpointed)
    for name, value in weights(checkpointed).items():
        torch.testing.assert_close(value, plain[name], rtol=0, atol=1e-6, msg=name)


def trainer_checkpointing_was_on(trainer):
    return trainer.accelerator.unwrap_model(trainer.model).is_gradient_checkpointing


def test_lora_with_activation_checkpointing_trains_the_adapters_like_without(tokenizer, tmp_path):
    """Reentrant checkpointing passes no gradient to adapters inside a checkpointed layer unless the (frozen)
    embeddings' output requires grad (transformers 5.24 enables it when it turns checkpointing on; upo does too, as
    TRL does, for older versions). Same adapters as without checkpointing, reentrant or not."""
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    plain = weights(trained(tiny_model(), tokenizer, tmp_path / "plain", peft_config=lora))
    for use_reentrant in (True, False):
        checkpointed = trained(tiny_model(), tokenizer, tmp_path / f"ckpt-{use_reentrant}", peft_config=lora,
                               activation_checkpointing=True,
                               activation_checkpointing_kwargs={"use_reentrant": use_reentrant})
        assert trainer_checkpointing_was_on(checkpointed)
        after = weights(checkpointed)
        adapters = [k for k in after if "lora_B" in k]
        assert adapters and all(after[k].abs().sum() > 0 for k in adapters)  # B starts at zero: each one trained
        for name in adapters:
            torch.testing.assert_close(after[name], plain[name], rtol=0, atol=1e-6, msg=name)


def test_a_quantized_model_without_an_adapter_is_refused(tokenizer, tmp_path):
    model = tiny_model()
    model.is_loaded_in_4bit = True  # what transformers sets on a bitsandbytes model
    with pytest.raises(ConfigError, match="loaded in 4-bit or 8-bit trains only through an adapter: set use_peft"):
        trained(model, tokenizer, tmp_path)


def test_reference_is_precomputed_where_and_how_training_runs(tokenizer, tmp_path):
    """After the Trainer placed the model, under its autocast: with bf16, the precomputed reference log-probs are
    those of a bf16-autocast forward (as the reference would give during training: the model's forward under
    autocast, the LM head in its weights' dtype outside it, as the policy's), not float32 ones."""
    from upo.data.collator import PreferenceCollator
    from upo.data.tokenization import tokenize_dataset
    from upo.training.reference import add_reference_logps

    args = UPOConfig(output_dir=str(tmp_path / "run"), **{**FAST, "bf16": True, "precompute_ref_log_probs": True})
    trainer = UPOTrainer(tiny_model(), args=args, train_dataset=Dataset.from_list(make_pairs(8)),
                         processing_class=tokenizer)
    assert trainer.ref_model is None  # none kept
    precomputed = torch.tensor(trainer.train_dataset["ref_chosen_logps"][:])
    pairs = tokenize_dataset(Dataset.from_list(make_pairs(8)), tokenizer, max_length=64)
    collator = trainer.data_collator
    assert isinstance(collator, PreferenceCollator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = add_reference_logps(pairs, tiny_model(), collator, 4, use_cache=False)["ref_chosen_logps"][:]
    fp32 = add_reference_logps(pairs, tiny_model(), collator, 4, use_cache=False)["ref_chosen_logps"][:]
    torch.testing.assert_close(precomputed, torch.tensor(bf16), rtol=0, atol=1e-6)
    assert (precomputed - torch.tensor(fp32)).abs().max() > 1e-4  # 9e-4 measured


def test_a_reference_model_by_name(tokenizer, tmp_path):
    folder = make_tiny_lm_dir(tmp_path / "model")
    args = UPOConfig(output_dir=str(tmp_path / "run"), **FAST)
    trainer = UPOTrainer(str(folder), ref_model=str(folder), args=args, train_dataset=Dataset.from_list(make_pairs(8)))
    assert trainer.ref_model is not None and not any(p.requires_grad for p in trainer.ref_model.parameters())
    assert trainer.ref_model.dtype == torch.float32
