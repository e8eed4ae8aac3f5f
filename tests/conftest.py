"""Fixtures only (shared code lives in helpers.py): offline Hub settings, an isolated upo cache per test, the tokenizer,
pairs."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
from datasets import Dataset  # noqa: E402
from helpers import FIXTURES, make_pairs  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own upo cache, so cached rewards never leak between tests, and its own datasets cache
    (datasets.load_dataset writes Arrow files there; datasets reads HF_DATASETS_CACHE once, at import)."""
    import datasets

    monkeypatch.setenv("UPO_CACHE", str(tmp_path / "upo-cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")


@pytest.fixture
def without_cuda(monkeypatch):
    """This machine as one without a CUDA device, a GPU machine too (torch.cuda.is_available() is False), for the
    tests of what upo refuses or turns off there."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def tokenizer():
    return AutoTokenizer.from_pretrained(FIXTURES / "tiny_tokenizer")


@pytest.fixture
def pairs():
    return Dataset.from_list(make_pairs())
