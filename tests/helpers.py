"""Helpers shared by the tests: the committed 512-token tokenizer's folder, tiny GPT-2 and Llama models built from
configs, the options that train them quickly, small preference data, a log recorder, and tiny stand-ins for the
chit-chat pipeline's real models.

The preference scorer's real model (all-MiniLM-L6-v2) is replaced by a 2-layer BERT with a word-level vocabulary
built here, so the tests of the data builder, the evaluation and the frontier run offline in seconds. The scorer
code path (tokenise, mean-pool, normalise, cosine) is the real one. Fixtures live in conftest.py.
"""

from __future__ import annotations

import functools
import json
import random
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
    TrainerCallback,
)

from upo import UPOConfig
from upo.rewards import completion_text

FIXTURES = Path(__file__).parent / "fixtures"


class Recorder(TrainerCallback):
    """Keeps every training log (the ones with a loss)."""

    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" in logs:
            self.logs.append(dict(logs))


def tiny_model(arch: str = "llama", seed: int = 0, vocab_size: int = 512, tied: bool = False):
    """`tied`: the Llama's LM head is its embedding matrix (GPT-2's always is)."""
    torch.manual_seed(seed)
    if arch == "llama":
        config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                             pad_token_id=0, eos_token_id=1, bos_token_id=1, tie_word_embeddings=tied)
        return LlamaForCausalLM(config)
    config = GPT2Config(vocab_size=vocab_size, n_embd=64, n_layer=2, n_head=4, n_positions=256,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    return GPT2LMHeadModel(config)


def tiny_training_options(**overrides) -> dict:
    """The options that run a tiny model quickly on CPU: batches of 4, sequences cut at 64 tokens, no report, no
    progress bar. `overrides` add options or replace these (the number of steps, the learning rate, the seed and
    the saving are each test's own). UPOConfig takes them, and TRL's DPOConfig as well."""
    return {"per_device_train_batch_size": 4, "max_length": 64, "use_cpu": True, "report_to": "none",
            "disable_tqdm": True, **overrides}


def tiny_training_flags(**overrides) -> list[str]:
    """`tiny_training_options(**overrides)` as `upo train` flags (`--name value`, booleans as true / false)."""
    options = tiny_training_options(**overrides)
    return [item for name, value in options.items()
            for item in (f"--{name}", str(value).lower() if isinstance(value, bool) else str(value))]


def tiny_config(output_dir, **overrides) -> UPOConfig:
    """A UPOConfig writing to `output_dir` with `tiny_training_options(**overrides)`."""
    return UPOConfig(output_dir=str(output_dir), **tiny_training_options(**overrides))


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


WORDS = ("hi hello hey how are you doing good great fine thanks what is your name my i am a the to do like "
         "movies music food pizza dogs cats school work weekend fun cool nice yes no maybe lol haha sure why "
         "not really so that was it too well oh wow very much love hate go went see saw").split()


def random_words(rng: random.Random, n: int) -> str:
    """`n` words drawn from WORDS with `rng`."""
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write_jsonl(path: Path, rows: list) -> Path:
    """`rows` as JSON Lines in `path` (its folder made if missing), one row a line, UTF-8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def make_tiny_scorer_dir(folder: Path) -> Path:
    """A tiny BERT sentence-embedding folder (config, weights, WordPiece vocabulary) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted(set("".join(WORDS)) | set("abcdefghijklmnopqrstuvwxyz0123456789.,!?'"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *chars, *(f"##{c}" for c in chars)]
    vocab = list(dict.fromkeys(vocab))
    wordpiece = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                             special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    PreTrainedTokenizerFast(tokenizer_object=wordpiece, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]").save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=160, initializer_range=1.0)
    BertModel(config).save_pretrained(folder)
    return folder


def make_tiny_lm_dir(folder: Path, seed: int = 0) -> Path:
    """A tiny Llama causal LM with the committed tiny tokenizer (it has a chat template), saved in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    model = tiny_model("llama", seed=seed)
    model.generation_config.eos_token_id = 1
    model.generation_config.pad_token_id = 0
    model.save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(FIXTURES / "tiny_tokenizer")
    tokenizer.save_pretrained(folder)
    return folder


def make_hub_cache(hf_home: Path, repo_id: str = "org/tiny", seed: int = 0) -> Path:
    """`hf_home` laid out as the Hugging Face Hub cache holding the tiny Llama of `make_tiny_lm_dir` as `repo_id`
    (`hub/models--org--tiny/snapshots/<sha>/` and `refs/main`), as a download would leave it. Returns the snapshot."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = Path(hf_home) / "hub" / f"models--{repo_id.replace('/', '--')}"
    make_tiny_lm_dir(repo / "snapshots" / sha, seed=seed)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    return repo / "snapshots" / sha


def write_hub_dataset(folder: Path, splits: dict[str, list[dict]]) -> Path:
    """`folder` laid out as a dataset repository on the Hugging Face Hub: `data/{split}-00000-of-00001.parquet`."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        pq.write_table(pa.Table.from_pylist(rows), folder / "data" / f"{split}-00000-of-00001.parquet")
    return folder


def fake_conversations(n: int = 40) -> dict[str, dict]:
    """Conversations in chitchat-dataset's layout: id -> {"messages": [[{"text", "sender"}, ...], ...]}."""
    rng = random.Random(0)
    out = {}
    for k in range(n):
        turns = []
        for t in range(rng.randint(1, 6)):
            sender = "a" if t % 2 == 0 else "b"
            turns.append([{"text": random_words(rng, rng.randint(1, 8)), "sender": sender}
                          for _ in range(rng.randint(1, 2))])
        if k % 7 == 3:  # a monologue far too long to be context
            turns = [[{"text": " ".join(["word"] * 200), "sender": "a"}], [{"text": "ok then", "sender": "b"}]]
        out[f"conv-{k:03d}"] = {"messages": turns, "prompt": "What do you like?", "ratings": {"witty": 5}}
    return out


def write_chitchat_rows(path: Path, n: int, seed: int = 0) -> Path:
    """A small chit-chat preference file in the layout `upo data chitchat` writes."""
    rng = random.Random(seed)
    words = functools.partial(random_words, rng)
    rows = []
    for k in range(n):
        rows.append({
            "prompt": [{"role": "system", "content": "Reply casually."}, {"role": "user", "content": words(5)}],
            "chosen": [{"role": "assistant", "content": words(rng.randint(2, 9))}],
            "rejected": [{"role": "assistant", "content": words(rng.randint(2, 9))}],
            "human_reply": words(6),
            "conversation_id": f"c{seed}-{k}",
        })
    return write_jsonl(path, rows)


def make_tiny_reward_model_dir(folder: Path, seed: int = 0, num_labels: int = 1) -> Path:
    """A tiny Llama reward model (sequence classification, one logit) with the committed tiny tokenizer and its chat
    template, saved in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0,
                         eos_token_id=1, bos_token_id=1, num_labels=num_labels)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(FIXTURES / "tiny_tokenizer").save_pretrained(folder)
    return folder


def write_hh_rows(path: Path, n: int, seed: int = 0) -> Path:
    """A small preference file in Anthropic HH's layout: `chosen` and `rejected` hold the whole conversation."""
    rng = random.Random(seed)
    words = functools.partial(random_words, rng)
    rows = []
    for k in range(n):
        history = f"\n\nHuman: {words(4)}" + (f"\n\nAssistant: {words(3)}\n\nHuman: {words(3)}" if k % 2 else "")
        rows.append({"chosen": f"{history}\n\nAssistant: {words(rng.randint(2, 8))}",
                     "rejected": f"{history}\n\nAssistant: {words(rng.randint(2, 8))}"})
    return write_jsonl(path, rows)


def words_in_reply(prompts, completions, **kwargs):
    """A preference function with GRPO's reward-function signature: longer replies are preferred, an empty one has
    no score (None)."""
    return [float(len(completion_text(c).split())) or None for c in completions]


def private_mounts_available() -> bool:
    """Whether `unshare -rm` can make a private mount namespace here (a user namespace mapped to root), where a test
    mounts a small tmpfs (a full disk) or a read-only bind mount; CI containers often forbid it."""
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


class NaNGradient(torch.autograd.Function):
    """Identity forward, NaN backward: a gradient that is not finite at any loss scale, with finite losses."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def nan_gradient_in_first_layer(model):
    """`model` (a tiny Llama) with a NaN gradient behind its first MLP: every step's gradient is not finite."""
    model.model.layers[0].mlp.register_forward_hook(lambda m, i, out: NaNGradient.apply(out))
    return model
