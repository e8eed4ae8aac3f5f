"""Before the first step, the model, the data and a resumed checkpoint are checked to fit together
(upo.training.compatibility): positions, vocabulary, and a checkpoint's model and objective. Each misfit used to be a
torch IndexError at the first long batch, a size mismatch while loading, an optimizer error, or a silent resume into
another objective."""

import json

import pytest
from helpers import tiny_config, tiny_model
from transformers import GPT2Config, GPT2LMHeadModel

from upo import UPOTrainer
from upo.errors import ConfigError
from upo.training.compatibility import positions_needed


def gpt2(n_positions: int):
    return GPT2LMHeadModel(GPT2Config(vocab_size=512, n_embd=32, n_layer=1, n_head=2, n_positions=n_positions,
                                      pad_token_id=0, eos_token_id=1, bos_token_id=1))


def test_pairs_longer_than_the_learned_positions_are_refused_naming_max_length(tmp_path, tokenizer, pairs):
    with pytest.raises(ConfigError) as error:
        UPOTrainer(gpt2(16), args=tiny_config(tmp_path, max_steps=1), train_dataset=pairs, processing_class=tokenizer)
    message = str(error.value)
    assert message.startswith("the model ") and "takes 37 positions, but the model has learned position embeddings " \
                                                "for 16" in message
    assert "Set max_length to 16 or less (it is 64)" in message
    UPOTrainer(gpt2(16), args=tiny_config(tmp_path / "ok", max_steps=1, max_length=16), train_dataset=pairs,
               processing_class=tokenizer).train()  # within them: trains


def test_positions_count_the_separate_layouts_padding(tokenizer, pairs):
    from upo.data.tokenization import tokenize_dataset

    dataset = tokenize_dataset(pairs, tokenizer, 64)
    assert positions_needed(dataset) == 37 and positions_needed(dataset, 64) == 64


def test_a_rotary_model_past_its_positions_is_a_warning(tmp_path, tokenizer, pairs, capsys):
    model = tiny_model()
    model.config.max_position_embeddings = 16
    UPOTrainer(model, args=tiny_config(tmp_path, max_steps=1), train_dataset=pairs, processing_class=tokenizer)
    assert "beyond the model's max_position_embeddings=16; its rotary positions run" in capsys.readouterr().err


def test_a_tokenizer_larger_than_the_embedding_matrix_is_refused(tmp_path, tokenizer, pairs):
    with pytest.raises(ConfigError, match=r"the tokenizer gives token ids up to \d+ on dataset, but the model's "
                                          r"embedding matrix has 100 rows \(ids 0-99\)"):
        UPOTrainer(tiny_model(vocab_size=100), args=tiny_config(tmp_path, max_steps=1), train_dataset=pairs,
                   processing_class=tokenizer)


@pytest.fixture
def dpo_checkpoint(tmp_path, tokenizer, pairs):
    """checkpoint-2 of a DPO run (no designer term, no value head) of the tiny Llama."""
    out = tmp_path / "dpo"
    UPOTrainer(tiny_model(), args=tiny_config(out, max_steps=2, save_steps=1, learning_rate=1e-3),
               train_dataset=pairs, processing_class=tokenizer).train()
    return out / "checkpoint-2"


@pytest.mark.parametrize("change, message", [
    ({"reward_funcs": ["length"]}, "was trained with another objective: UPO's designer term off there, on here"),
    ({"loss_type": ["ipo"]}, "was trained with another objective: loss_type ['sigmoid'] there, ['ipo'] here"),
], ids=["designer-term", "loss-type"])
def test_resuming_into_another_objective_is_refused(tmp_path, tokenizer, pairs, dpo_checkpoint, change, message):
    trainer = UPOTrainer(tiny_model(), args=tiny_config(tmp_path / "resumed", max_steps=3, **change),
                         train_dataset=pairs, processing_class=tokenizer)
    with pytest.raises(ConfigError) as error:
        trainer.train(resume_from_checkpoint=str(dpo_checkpoint))
    assert str(error.value).startswith(f"resume_from_checkpoint {dpo_checkpoint} {message}")
    assert "start a new run (another output_dir) from its weights" in str(error.value)


def test_resuming_a_checkpoint_of_another_model_is_refused(tmp_path, tokenizer, pairs, dpo_checkpoint):
    trainer = UPOTrainer(tiny_model(vocab_size=600), args=tiny_config(tmp_path / "other", max_steps=3),
                         train_dataset=pairs, processing_class=tokenizer)
    with pytest.raises(ConfigError, match=r"is not a checkpoint of this run's model: its lm_head.weight has "
                                          r"shape \[512, 64\], this model's has \[600, 64\]"):
        trainer.train(resume_from_checkpoint=str(dpo_checkpoint))


def test_a_lora_run_resuming_a_full_checkpoint_is_refused(tmp_path, tokenizer, pairs, dpo_checkpoint):
    from peft import LoraConfig

    trainer = UPOTrainer(tiny_model(), args=tiny_config(tmp_path / "lora", max_steps=3), train_dataset=pairs,
                         processing_class=tokenizer, peft_config=LoraConfig(r=4, target_modules="all-linear"))
    with pytest.raises(ConfigError, match="it holds a full model, and this run trains a LoRA adapter"):
        trainer.train(resume_from_checkpoint=str(dpo_checkpoint))


def test_resuming_with_a_tuned_option_trains_on_and_says_so(tmp_path, tokenizer, pairs, dpo_checkpoint, capsys):
    trainer = UPOTrainer(tiny_model(), args=tiny_config(tmp_path / "same", max_steps=3, beta=0.2, learning_rate=1e-3),
                         train_dataset=pairs, processing_class=tokenizer)
    trainer.train(resume_from_checkpoint=str(dpo_checkpoint))
    assert trainer.state.global_step == 3
    assert "with other values of options that shape the objective: beta 0.1 -> 0.2" in capsys.readouterr().err
    assert json.loads((dpo_checkpoint / "upo_config.json").read_text())["beta"] == 0.1


def test_generation_is_checked_the_same_way_before_upo_eval_generates():
    from upo.training.compatibility import check_generation_fits

    check_generation_fits(gpt2(16), "the model m", [[5, 6, 7]], max_new_tokens=13)  # 16 positions: fits
    with pytest.raises(ConfigError, match=r"the model m: the longest prompt has 3 tokens, and with max_new_tokens=14 a "
                                          r"reply would need 17 positions; the model has learned position embeddings "
                                          r"for 16\. Lower max_new_tokens"):
        check_generation_fits(gpt2(16), "the model m", [[5, 6, 7]], max_new_tokens=14)
    with pytest.raises(ConfigError, match=r"token ids up to 200 on the prompts, but the model's embedding matrix has "
                                          r"100 rows"):
        check_generation_fits(tiny_model(vocab_size=100), "the model m", [[5, 200]], max_new_tokens=4)
