"""Pairs -> token ids (upo/data/tokenization.py) through UPOTrainer: rows longer than max_length cut or dropped and
counted, no pair left to train on, and a tokenizer whose chat template is missing or refuses a row."""

import pytest
from datasets import Dataset
from helpers import make_pairs, tiny_config, tiny_model, write_jsonl

from upo import UPOTrainer
from upo.errors import DataError

PAIRS = make_pairs(8)


def trainer(tmp_path, tokenizer, data):
    return UPOTrainer(tiny_model(), args=tiny_config(tmp_path / "run", max_steps=1), train_dataset=data,
                      processing_class=tokenizer)


def test_conversational_data_with_a_tokenizer_without_chat_template(tmp_path, tokenizer):
    tokenizer.chat_template = None
    rows = [{"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Hello!"}],
             "rejected": [{"role": "assistant", "content": "Go away."}]}] * 4
    with pytest.raises(DataError, match="conversational .* the tokenizer has no chat template"):
        trainer(tmp_path, tokenizer, Dataset.from_list(rows))


def test_huge_rows_are_truncated_or_dropped_and_counted(tmp_path, tokenizer, capsys):
    rows = [dict(r) for r in PAIRS]
    rows[2]["chosen"] = " Thank you." * 100_000  # about 1 MB
    rows[5]["prompt"] = "Human: " + "why " * 100_000 + "Assistant:"
    trainer(tmp_path, tokenizer, str(write_jsonl(tmp_path / "pairs.jsonl", rows))).train()
    assert "Loaded 8 standard pairs from" in (out := capsys.readouterr().out)
    assert "kept 7, dropped 1 (prompt alone reaches max_length=64); truncated 1 to max_length=64" in out


def test_every_prompt_too_long(tmp_path, tokenizer):
    data = Dataset.from_list([{**r, "prompt": "why " * 100} for r in PAIRS])
    with pytest.raises(DataError, match=r"kept 0, dropped 8 \(prompt alone reaches max_length=64\).*raise max_length"):
        trainer(tmp_path, tokenizer, data)


ALTERNATING = ("{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
               "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
               "<|{{ message['role'] }}|>{{ message['content'] }}</s>{% endfor %}"
               "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def test_chat_template_refusing_a_rows_role_order_names_the_row(tmp_path, tokenizer):
    tokenizer.chat_template = ALTERNATING
    rows = [{"prompt": [{"role": "user", "content": f"Hi {i}"}], "chosen": [{"role": "assistant", "content": "Hello!"}],
             "rejected": [{"role": "assistant", "content": "Go away."}]} for i in range(4)]
    rows[2]["prompt"] = [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Are you there?"}]
    with pytest.raises(DataError, match=r"chat\.jsonl, pair 2 \(prompt user/user: 'Are you there\?'\): the tokenizer's "
                       r"chat template refused it \(TemplateError: Conversation roles must alternate"):
        trainer(tmp_path, tokenizer, str(write_jsonl(tmp_path / "chat.jsonl", rows)))
