"""Shared fixtures: a committed 512-token tokenizer, tiny GPT-2 and Llama models built from configs, small data."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoTokenizer, GPT2Config, TrainerCallback, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own upo cache, so cached rewards never leak between tests."""
    monkeypatch.setenv("UPO_CACHE", str(tmp_path / "upo-cache"))


@pytest.fixture
def tokenizer():
    return AutoTokenizer.from_pretrained(FIXTURES / "tiny_tokenizer")


class Recorder(TrainerCallback):
    """Keeps every training log (the ones with a loss)."""

    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" in logs:
            self.logs.append(dict(logs))


def tiny_model(arch: str = "llama", seed: int = 0, vocab_size: int = 512):
    torch.manual_seed(seed)
    if arch == "llama":
        config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                             pad_token_id=0, eos_token_id=1, bos_token_id=1, tie_word_embeddings=False)
        return LlamaForCausalLM(config)
    config = GPT2Config(vocab_size=vocab_size, n_embd=64, n_layer=2, n_head=4, n_positions=256,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    return GPT2LMHeadModel(config)


QUESTIONS = [
    "What is rain?", "How do plants grow?", "Why is the sky blue?", "What is a cat?", "How do I boil water?",
    "What is the sun?", "Why do birds sing?", "How do I read faster?", "What is a river?", "Why do we sleep?",
    "How do boats float?", "What is snow?", "Why is grass green?", "How do bees make honey?", "What is wind?",
    "How do I tie a knot?",
]


def make_pairs(n: int = 16) -> list[dict]:
    rows = []
    for i in range(n):
        q = QUESTIONS[i % len(QUESTIONS)]
        rows.append({
            "prompt": f"Human: {q} Assistant:",
            "chosen": " Thank you for asking! Here is a short and clear answer." if i % 2 else
                      " Long sentences with complicated terminology impede comprehension.",
            "rejected": " I will not help with that, figure it out yourself." if i % 3 else " No.",
        })
    return rows


@pytest.fixture
def pairs():
    return Dataset.from_list(make_pairs())
