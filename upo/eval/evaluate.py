"""`upo eval`: generate on held-out prompts with trained models and the reference, and score what they say.

For every model (and the reference, as its own row) on the same held-out prompts, replies are decoded
greedily (`upo.eval.generate`), scored by the designer objectives and the preference scorer
(`upo.eval.scorers`), and summarised (`upo.eval.metrics`: designer score, preference score, win rate against
the reference, exact KL to the reference, held-out implicit-reward accuracy, length).

Outputs: `eval.json` (summary per model, and per prompt the replies and their scores) and `eval.md` (tables,
`upo.eval.tables`).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from upo.eval.generate import Decoding, generate
from upo.eval.metrics import implicit_reward_accuracy, score_objectives, summarize
from upo.eval.tables import side_by_side
from upo.files import atomic_write_json, atomic_write_text
from upo.rewards.standardization import DesignerStandardization
from upo.training.run_folder import ADAPTER_CONFIG, EVAL_JSON, EVAL_MARKDOWN, read_run_config

REFERENCE = "reference"


# ----------------------------------------------------------------------------------------------- data


def load_eval_rows(path: str | os.PathLike, max_prompts: int | None = None) -> list[dict]:
    """Held-out rows: `prompt` (messages or text), `human_reply`, and optionally `chosen` / `rejected`."""
    from upo.errors import DataError

    rows = []
    with open(path) as f:
        for line_number, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if "prompt" not in row or "human_reply" not in row:
                raise DataError(f"{path}, line {line_number}: evaluation rows need 'prompt' and 'human_reply' "
                                "(the human's real answer, which the preference scorer compares with).")
            rows.append(row)
    return rows[:max_prompts] if max_prompts else rows


# ------------------------------------------------------------------------------------ designer score


def fit_designer_standardization(train_path: str | os.PathLike, reward_funcs: Sequence,
                                 reward_weights: Sequence[float] | None = None,
                                 standardize: bool = True) -> DesignerStandardization:
    """The standardisation UPO trains with, fitted on both responses of the training pairs in `train_path`."""
    from upo.data.loading import load_preference_pairs

    dataset, _ = load_preference_pairs(str(train_path))
    extra = {c: dataset[c] for c in dataset.column_names if c not in ("prompt", "chosen", "rejected")}
    standardization, _ = DesignerStandardization.fit_on_pairs(
        dataset["prompt"], dataset["chosen"], dataset["rejected"], reward_funcs, reward_weights, standardize,
        extra_columns=extra)
    return standardization


# ---------------------------------------------------------------------------------- models and KL


def load_model(name_or_path: str, dtype=torch.float32):
    """A trained run folder (full model, or a LoRA adapter merged into its base), a local model, or a known name.

    Returns `(model, tokenizer)`, the model in eval mode.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from upo.models import resolve_model_path

    folder = Path(name_or_path)
    adapter = folder / ADAPTER_CONFIG
    if adapter.is_file():
        from peft import PeftModel

        base_name = json.loads(adapter.read_text()).get("base_model_name_or_path") or "smollm2-135m-instruct"
        if not os.path.isdir(base_name):  # a cache folder of another machine: resolve its name again
            base_name = Path(base_name).name
        base_path = resolve_model_path(base_name)
        base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype)
        # Merged: generation then costs what the base model costs.
        model = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
        tokenizer_path = folder if (folder / "tokenizer_config.json").is_file() else base_path
        return model.eval(), AutoTokenizer.from_pretrained(tokenizer_path)
    path = resolve_model_path(str(name_or_path))
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval(), AutoTokenizer.from_pretrained(path)


def conditioning_prefix(model_path: str | os.PathLike) -> str | None:
    """The good control tag for a model trained with conditional SFT (read from its run config), else None."""
    config = read_run_config(model_path) or {}
    return config["csft_tags"][0] if config.get("loss_type") == ["csft"] else None


@dataclass
class EvalSettings:
    """What every model of one comparison is evaluated with."""

    eval_data: str
    train_data: str
    reward_funcs: list
    reward_weights: list[float] | None = None
    standardize_rewards: bool = True
    max_prompts: int | None = None
    max_new_tokens: int = 32
    batch_size: int = 32
    seed: int = 0
    max_length: int = 256
    do_sample: bool = False  # greedy by default; sampling (temperature, top_k 0) shows the distribution, noisier
    temperature: float = 1.0


class Evaluator:
    """Evaluates several models on the same prompts, against one reference loaded once."""

    def __init__(self, settings: EvalSettings, reference: str = "smollm2-135m-instruct", scorer=None,
                 progress: bool = True):
        from upo.eval.scorers import HumanReplySimilarity

        self.settings = settings
        self.rows = load_eval_rows(settings.eval_data, settings.max_prompts)
        self.prompts = [r["prompt"] for r in self.rows]
        self.humans = [r["human_reply"] for r in self.rows]
        self.scale = fit_designer_standardization(settings.train_data, settings.reward_funcs, settings.reward_weights,
                                                  settings.standardize_rewards)
        self.scorer = scorer or HumanReplySimilarity()
        self.reference, self.tokenizer = load_model(reference)
        self.decoding = Decoding(max_new_tokens=settings.max_new_tokens, do_sample=settings.do_sample,
                                 temperature=settings.temperature, top_k=0)
        self.progress = progress
        self._reference_record: dict | None = None

    def _evaluate(self, name: str, model, response_prefix: str | None = None) -> dict:
        s = self.settings
        t0 = time.perf_counter()
        ref = None if model is self.reference else self.reference
        generations = generate(model, self.tokenizer, self.prompts, self.decoding, s.seed, s.batch_size, reference=ref,
                               response_prefix=response_prefix, progress=self.progress, desc=f"{name}: generating")
        replies = [r[0] for r in generations.replies]
        kls = [k[0] for k in generations.kls]
        counts = [c[0] for c in generations.token_counts]
        objectives = score_objectives(self.prompts, replies, s.reward_funcs, self.rows)
        designer = self.scale.designer_score(objectives)
        preference = self.scorer.score(replies, self.humans)
        accuracy = implicit_reward_accuracy(model, ref, self.tokenizer, self.rows, s.max_length)
        reference = self._reference_record
        summary = summarize(name, replies, objectives, designer, preference,
                            reference["preference"] if reference else None,
                            reference["replies"] if reference else None, kls, counts, accuracy)
        summary["seconds"] = round(time.perf_counter() - t0, 1)
        return {"summary": summary, "replies": replies, "preference": preference, "designer": designer,
                "objectives": objectives, "kl": kls}

    def use_reference_record(self, record: dict) -> None:
        """The reference's evaluation stored earlier (its `replies` and `preference`): the win rates of the models
        evaluated next are against it, and the reference is not generated again."""
        if self._reference_record is None:
            self._reference_record = record

    def evaluate_reference(self) -> dict:
        if self._reference_record is None:
            self._reference_record = self._evaluate(REFERENCE, self.reference)
        return self._reference_record

    def evaluate(self, name: str, model_path: str) -> dict:
        self.evaluate_reference()
        model, _ = load_model(model_path)
        try:
            return self._evaluate(name, model, conditioning_prefix(model_path))
        finally:
            del model

    def per_prompt(self, records: dict[str, dict]) -> list[dict]:
        out = []
        for k, row in enumerate(self.rows):
            entry = {"prompt": row["prompt"], "human_reply": row["human_reply"]}
            for name, record in records.items():
                entry[name] = {"reply": record["replies"][k], "preference": round(record["preference"][k], 4),
                               "designer": round(record["designer"][k], 4), "kl": round(record["kl"][k], 4)}
            out.append(entry)
        return out

    def describe(self) -> dict:
        s = self.settings
        return {"settings": asdict(s), "decoding": self.decoding.describe(), "designer_scale": self.scale.to_dict(),
                "preference_scorer": "cosine similarity to the human reply (all-MiniLM-L6-v2)",
                "n_prompts": len(self.rows)}


# ------------------------------------------------------------------------------------------ command


def main(argv: list[str]) -> None:
    """`upo eval --model RUN [RUN ...] --eval_data EVAL.jsonl --train_data TRAIN.jsonl --reward_funcs ...`."""
    parser = argparse.ArgumentParser(prog="upo eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", required=True, help="Run folders (full or LoRA) or model folders.")
    parser.add_argument("--name", nargs="+", default=None, help="A display name per model; default the folder name.")
    parser.add_argument("--reference", default="smollm2-135m-instruct")
    parser.add_argument("--eval_data", default="examples/data/chitchat_eval.jsonl")
    parser.add_argument("--train_data", default="examples/data/chitchat_train.jsonl",
                        help="Training pairs: the designer objectives are standardised with their statistics.")
    parser.add_argument("--reward_funcs", nargs="+", default=None,
                        help="Designer objectives; default those of the first model's upo_config.json.")
    parser.add_argument("--reward_weights", nargs="+", type=float, default=None)
    parser.add_argument("--max_prompts", type=int, default=None)
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--do_sample", action="store_true", help="Sample replies (seeded) instead of greedy decoding.")
    parser.add_argument("--temperature", type=float, default=1.0, help="Sampling temperature, with --do_sample.")
    parser.add_argument("--num_threads", default="auto",
                        help="torch CPU threads: a number, or 'auto' (1 when other processes keep the CPU busy).")
    parser.add_argument("--out", default=None, help="Folder for eval.json and eval.md; default the first model's.")
    args = parser.parse_args(argv)
    from upo.errors import ConfigError
    from upo.threads import choose_num_threads

    choose_num_threads(args.num_threads)
    reward_funcs, reward_weights = args.reward_funcs, args.reward_weights
    config = read_run_config(args.model[0])
    if reward_funcs is None and config is not None:
        reward_funcs, reward_weights = config.get("reward_funcs"), reward_weights or config.get("reward_weights")
    if not reward_funcs:
        raise ConfigError("No designer objectives to evaluate: pass --reward_funcs (and --reward_weights).")
    names = args.name or [Path(m).name for m in args.model]
    if len(names) != len(args.model):
        raise ConfigError(f"--name has {len(names)} values for {len(args.model)} models.")
    settings = EvalSettings(args.eval_data, args.train_data, reward_funcs, reward_weights, True, args.max_prompts,
                            args.max_new_tokens, args.batch_size, args.seed, do_sample=args.do_sample,
                            temperature=args.temperature)
    evaluator = Evaluator(settings, args.reference)
    records = {REFERENCE: evaluator.evaluate_reference()}
    for name, path in zip(names, args.model):
        records[name] = evaluator.evaluate(name, path)
    summaries = [r["summary"] for r in records.values()]
    out = Path(args.out or args.model[0])
    out.mkdir(parents=True, exist_ok=True)
    report = {**evaluator.describe(), "summaries": summaries, "per_prompt": evaluator.per_prompt(records)}
    atomic_write_json(out / EVAL_JSON, report)
    table = side_by_side(summaries)
    atomic_write_text(out / EVAL_MARKDOWN, f"Held-out prompts: {len(evaluator.rows)}; decoding: "
                                           f"{evaluator.decoding.describe()}\n\n{table}\n")
    print(table)
    print(f"\nWrote {out / EVAL_JSON} and {out / EVAL_MARKDOWN}")
