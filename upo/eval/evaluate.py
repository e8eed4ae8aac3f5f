"""`upo eval`: generate on held-out prompts with trained models and the reference, and score what they say.

For every model (and the reference, as its own row) on the same held-out chat prompts:

* replies are decoded greedily (`Decoding`: at most `max_new_tokens` new tokens), batches seeded anyway;
* **designer objectives**: each reward function's mean over the replies, and the **designer score**: per
  reply `sum_k w_k (r_k - mean_k) / std_k` with the means and stds of the *training* responses (the same
  standardisation UPO trains with), averaged over prompts;
* **preference score**: the fixed preference scorer (`upo.eval.scorers`: cosine similarity to what the
  human actually answered), averaged; **win rate**: the fraction of prompts where the model's reply scores
  higher than the reference's (ties, e.g. identical replies, count one half);
* **KL** to the reference: `sum_t KL(pi(.|x, y<t) || pi_ref(.|x, y<t))`, exact over the vocabulary, summed
  over the tokens of the model's own reply (up to its end-of-turn token), averaged over prompts;
* **implicit-reward accuracy** on the held-out pairs: how often `log pi/pi_ref` ranks chosen above rejected
  (ties count one half, so the reference itself gets 0.5);
* reply length in words and in tokens.

Outputs: `eval.json` (summary per model, and per prompt the replies and their scores) and `eval.md` (tables).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from upo.eval.generate import Decoding, generation_batches, render_prompts

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


@dataclass
class DesignerScale:
    """Turns raw objective scores into the weighted designer score; fitted on the training responses."""

    names: list[str]
    weights: list[float]
    mean: list[float]
    std: list[float]
    # Each standardised objective is clipped to [-z_clip, z_clip] before weighting, so that one degenerate reply
    # (a single 47-letter "word" scores about -3,500 in Flesch reading ease, -178 std) cannot outweigh all
    # the other prompts in a mean over 64 of them. None: no clipping.
    z_clip: float | None = 3.0

    @classmethod
    def fit(cls, train_path: str | os.PathLike, reward_funcs: Sequence, reward_weights: Sequence[float] | None = None,
            standardize: bool = True) -> DesignerScale:
        from upo.data.loading import load_preference_pairs
        from upo.losses import designer_statistics
        from upo.rewards import score_designer_rewards

        dataset, _ = load_preference_pairs(str(train_path))
        extra = {c: dataset[c] for c in dataset.column_names if c not in ("prompt", "chosen", "rejected")}
        scores = score_designer_rewards(dataset["prompt"], dataset["chosen"], dataset["rejected"], list(reward_funcs),
                                        extra_columns=extra, show_progress=False)
        names = list(scores)
        columns = [[math.nan if v is None else v for v in scores[n][0] + scores[n][1]] for n in names]
        matrix = torch.tensor(columns, dtype=torch.float64).T
        if standardize:
            mean, std = designer_statistics(matrix)
        else:
            mean, std = torch.zeros(len(names)), torch.ones(len(names))
        weights = list(reward_weights) if reward_weights is not None else [1.0] * len(names)
        return cls(names, [float(w) for w in weights], mean.tolist(), std.tolist())

    def weighted(self, scores: dict[str, list[float | None]]) -> list[float]:
        """Per reply: `sum_k w_k clip((r_k - mean_k) / std_k, +-z_clip)` (objectives that do not apply count 0)."""
        matrix = torch.tensor([[math.nan if v is None else v for v in scores[n]] for n in self.names],
                              dtype=torch.float64).T.reshape(-1, len(self.names))
        w, mean, std = (torch.tensor(x, dtype=torch.float64) for x in (self.weights, self.mean, self.std))
        z = (matrix - mean) / std
        if self.z_clip is not None:
            z = z.clamp(-self.z_clip, self.z_clip)
        return (torch.nan_to_num(z, nan=0.0) * w).sum(-1).tolist()


def score_objectives(prompts: list, replies: list[str], reward_funcs: Sequence, rows: list[dict]) -> dict[str, list]:
    """Each objective's raw score of each reply, through the same reward-function contract as training."""
    from upo.rewards import resolve_reward_funcs, reward_func_name

    completions = [[{"role": "assistant", "content": r}] if isinstance(p, list) else r for p, r in zip(prompts, replies)]
    extra_names = sorted({k for row in rows for k in row} - {"prompt", "chosen", "rejected"})
    kwargs = {k: [row.get(k) for row in rows] for k in extra_names}
    out = {}
    for func in resolve_reward_funcs(list(reward_funcs)):
        values = func(prompts=prompts, completions=completions, **kwargs)
        out[reward_func_name(func)] = [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
                                       for v in values]
    return out


# ---------------------------------------------------------------------------------- models and KL


def load_model(name_or_path: str, dtype=torch.float32):
    """A trained run folder (full model, or a LoRA adapter merged into its base), a local model, or a known name.

    Returns `(model, tokenizer)`, the model in eval mode.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from upo.models import resolve_model_path

    folder = Path(name_or_path)
    adapter = folder / "adapter_config.json"
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
    """The good control tag for a model trained with conditional SFT (read from its `upo_config.json`), else None."""
    path = Path(model_path) / "upo_config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text())
    return config["csft_tags"][0] if config.get("loss_type") == ["csft"] else None


def _eos_ids(model, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids |= set(eos) if isinstance(eos, (list, tuple)) else {eos}
    return {i for i in ids if i is not None}


@torch.no_grad()
def generate_with_kl(policy, reference, tokenizer, prompts: Sequence, decoding: Decoding = Decoding(),
                     seed: int = 0, batch_size: int = 32, progress: bool = True, desc: str = "generating",
                     response_prefix: str | None = None):
    """Greedy (or sampled) replies of `policy`, with each reply's exact KL to `reference` along it.

    Returns `(replies, kls, token_counts)`: one string, float and int per prompt. With `reference=None`
    (the reference evaluating itself) every KL is 0. `response_prefix` starts every reply (not returned in it);
    the KL is measured on the reply after it.
    """
    from tqdm.auto import tqdm

    prompt_ids = render_prompts(tokenizer, prompts, response_prefix)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = torch.tensor(sorted(_eos_ids(policy, tokenizer)))
    replies, kls, counts = [None] * len(prompts), [0.0] * len(prompts), [0] * len(prompts)
    bar = tqdm(total=len(prompts), desc=desc, unit="prompt", disable=not progress, dynamic_ncols=True)
    for b, indices in enumerate(generation_batches(prompt_ids, batch_size)):
        length = max(len(prompt_ids[i]) for i in indices)
        input_ids = torch.full((len(indices), length), pad, dtype=torch.long)
        mask = torch.zeros((len(indices), length), dtype=torch.long)
        for row, i in enumerate(indices):
            input_ids[row, length - len(prompt_ids[i]):] = torch.tensor(prompt_ids[i])
            mask[row, length - len(prompt_ids[i]):] = 1
        torch.manual_seed(seed + b)
        sampling = dict(do_sample=True, temperature=decoding.temperature, top_k=decoding.top_k) \
            if decoding.do_sample else dict(do_sample=False)
        out = policy.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=decoding.max_new_tokens,
                              pad_token_id=pad, output_logits=True, return_dict_in_generate=True, **sampling)
        generated = out.sequences[:, length:]
        is_eos = torch.isin(generated, eos)
        # A token counts while no end-of-turn token came before it (the end-of-turn token itself counts).
        valid = (is_eos.long().cumsum(-1) - is_eos.long()) == 0
        texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
        kl = torch.zeros(len(indices))
        if reference is not None:
            steps = generated.shape[1]
            full_mask = torch.cat([mask, valid.long()], dim=1)
            position_ids = (full_mask.cumsum(-1) - 1).clamp(min=0)
            ref_logits = reference(input_ids=out.sequences, attention_mask=full_mask, position_ids=position_ids,
                                   logits_to_keep=steps + 1).logits[:, :-1].float()
            policy_logp = torch.stack(out.logits, dim=1).float().log_softmax(-1)
            per_token = (policy_logp.exp() * (policy_logp - ref_logits.log_softmax(-1))).sum(-1)
            kl = (per_token * valid).sum(-1)
        for row, i in enumerate(indices):
            replies[i] = texts[row].strip()
            kls[i] = float(kl[row])
            counts[i] = int((valid[row] & ~is_eos[row]).sum())
        bar.update(len(indices))
    bar.close()
    return replies, kls, counts


@torch.no_grad()
def implicit_reward_accuracy(policy, reference, tokenizer, rows: list[dict], max_length: int = 256,
                             batch_size: int = 16) -> float | None:
    """Fraction of held-out pairs where `log pi/pi_ref` of chosen beats rejected's (ties one half)."""
    from datasets import Dataset

    from upo.data.collator import PreferenceCollator
    from upo.data.tokenization import tokenize_dataset
    from upo.logps import forward_logps
    from upo.training.reference import add_reference_logps

    pairs = [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows
             if "chosen" in r and "rejected" in r]
    if not pairs:
        return None
    if reference is None:
        return 0.5
    dataset = tokenize_dataset(Dataset.from_list(pairs), tokenizer, max_length)
    collator = PreferenceCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    dataset = add_reference_logps(dataset, reference, collator, batch_size)  # cached: same for every run
    wins = 0.0
    columns = ["prompt_ids", "chosen_ids", "rejected_ids"]
    for start in range(0, len(dataset), batch_size):
        part = dataset.select(range(start, min(start + batch_size, len(dataset))))
        batch = collator([{c: row[c] for c in columns} for row in part])
        chosen, rejected = forward_logps(policy, batch).logps.chunk(2)
        margin = (chosen - torch.tensor(part["ref_chosen_logps"])) - (rejected - torch.tensor(part["ref_rejected_logps"]))
        wins += float((margin > 0).sum() + 0.5 * (margin == 0).sum())
    return wins / len(dataset)


# ------------------------------------------------------------------------------------------ metrics


def rescore_designer(summary: dict, replies: list[str], rows: list[dict], reward_funcs: Sequence,
                     scale: DesignerScale) -> tuple[dict, list[float], dict[str, list]]:
    """A summary's objective means and designer score recomputed from its stored replies (no generation)."""
    prompts = [r["prompt"] for r in rows]
    objectives = score_objectives(prompts, replies, reward_funcs, rows)
    designer = scale.weighted(objectives)
    summary = {k: v for k, v in summary.items() if not k.startswith("objective/")}
    fresh = summarize(summary["name"], replies, objectives, designer, [0.0] * len(replies), None, None,
                      [0.0] * len(replies), [0] * len(replies), None)
    for key, value in fresh.items():
        if key.startswith("objective/") or key.startswith("designer_score"):
            summary[key] = value
    return summary, designer, objectives


def win_indicators(model_scores: Sequence[float], reference_scores: Sequence[float],
                   model_replies: Sequence[str] | None = None, reference_replies: Sequence[str] | None = None) -> list[float]:
    """Per prompt: 1 when the model's reply scores higher than the reference's, 0 when lower, 0.5 for a tie."""
    out = []
    for k, (m, r) in enumerate(zip(model_scores, reference_scores)):
        same_text = model_replies is not None and reference_replies is not None and model_replies[k] == reference_replies[k]
        out.append(0.5 if same_text or abs(m - r) < 1e-6 else float(m > r))
    return out


def win_rate(model_scores: Sequence[float], reference_scores: Sequence[float],
             model_replies: Sequence[str] | None = None, reference_replies: Sequence[str] | None = None) -> float:
    """Fraction of prompts where the model's reply scores higher than the reference's; ties count one half."""
    wins = win_indicators(model_scores, reference_scores, model_replies, reference_replies)
    return sum(wins) / len(wins) if wins else float("nan")


def summarize(name: str, replies: list[str], objectives: dict[str, list], designer: list[float],
              preference: list[float], reference_preference: list[float] | None, reference_replies: list[str] | None,
              kls: list[float], token_counts: list[int], accuracy: float | None) -> dict:
    """The summary row of one model; every value is a mean over prompts unless named otherwise."""
    def mean(values):
        values = [v for v in values if v is not None]
        return statistics.fmean(values) if values else float("nan")

    row = {"name": name, "n_prompts": len(replies)}
    for objective, values in objectives.items():
        row[f"objective/{objective}"] = mean(values)
    row["designer_score"] = mean(designer)
    row["designer_score_std"] = statistics.pstdev(designer) if designer else float("nan")
    row["preference_score"] = mean(preference)
    row["win_rate"] = (win_rate(preference, reference_preference, replies, reference_replies)
                       if reference_preference is not None else 0.5)
    row["kl"] = mean(kls)
    row["implicit_accuracy"] = accuracy
    row["length_words"] = mean([len(r.split()) for r in replies])
    row["length_tokens"] = mean(token_counts)
    return row


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
        self.scale = DesignerScale.fit(settings.train_data, settings.reward_funcs, settings.reward_weights,
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
        replies, kls, counts = generate_with_kl(model, ref, self.tokenizer, self.prompts, self.decoding, s.seed,
                                                s.batch_size, self.progress, desc=f"{name}: generating",
                                                response_prefix=response_prefix)
        objectives = score_objectives(self.prompts, replies, s.reward_funcs, self.rows)
        designer = self.scale.weighted(objectives)
        preference = self.scorer.score(replies, self.humans)
        accuracy = implicit_reward_accuracy(model, ref, self.tokenizer, self.rows, s.max_length)
        reference = self._reference_record
        summary = summarize(name, replies, objectives, designer, preference,
                            reference["preference"] if reference else None,
                            reference["replies"] if reference else None, kls, counts, accuracy)
        summary["seconds"] = round(time.perf_counter() - t0, 1)
        return {"summary": summary, "replies": replies, "preference": preference, "designer": designer,
                "objectives": objectives, "kl": kls}

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
        return {"settings": asdict(s), "decoding": self.decoding.describe(), "designer_scale": asdict(self.scale),
                "preference_scorer": "cosine similarity to the human reply (all-MiniLM-L6-v2)",
                "n_prompts": len(self.rows)}


# ------------------------------------------------------------------------------------------ tables

METRIC_LABELS = [
    ("designer_score", "designer score (weighted z, higher better)", "{:+.3f}"),
    ("preference_score", "preference score (similarity to human)", "{:.4f}"),
    ("win_rate", "win rate vs reference", "{:.1%}"),
    ("kl", "KL to reference (nats / reply)", "{:.2f}"),
    ("implicit_accuracy", "held-out implicit-reward accuracy", "{:.1%}"),
    ("length_words", "reply length (words)", "{:.1f}"),
]


def _fmt(value, pattern: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return pattern.format(value)


def side_by_side(summaries: Sequence[dict]) -> str:
    """Markdown: one column per model, one row per metric (objectives first)."""
    names = [s["name"] for s in summaries]
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    objectives = [k for k in summaries[0] if k.startswith("objective/")]
    for key in objectives:
        lines.append(f"| {key.split('/', 1)[1]} (mean) | " + " | ".join(_fmt(s.get(key), "{:.3f}") for s in summaries) + " |")
    for key, label, pattern in METRIC_LABELS:
        lines.append(f"| {label} | " + " | ".join(_fmt(s.get(key), pattern) for s in summaries) + " |")
    return "\n".join(lines)


def summary_table(summaries: Sequence[dict], extra_columns: Sequence[str] = ()) -> str:
    """Markdown: one row per model."""
    objectives = [k for k in summaries[0] if k.startswith("objective/")]
    header = ["run", *extra_columns, *(k.split("/", 1)[1] for k in objectives), "designer score", "preference",
              "win rate", "KL", "implicit acc.", "words"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summaries:
        cells = [s["name"], *(str(s.get(c, "")) for c in extra_columns),
                 *(_fmt(s.get(k), "{:.3f}") for k in objectives),
                 _fmt(s["designer_score"], "{:+.3f}"), _fmt(s["preference_score"], "{:.4f}"),
                 _fmt(s["win_rate"], "{:.1%}"), _fmt(s["kl"], "{:.2f}"), _fmt(s.get("implicit_accuracy"), "{:.1%}"),
                 _fmt(s["length_words"], "{:.1f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    config_file = Path(args.model[0]) / "upo_config.json"
    if reward_funcs is None and config_file.is_file():
        config = json.loads(config_file.read_text())
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
    (out / "eval.json").write_text(json.dumps(report, indent=1) + "\n")
    table = side_by_side(summaries)
    (out / "eval.md").write_text(f"Held-out prompts: {len(evaluator.rows)}; decoding: {evaluator.decoding.describe()}\n\n"
                                 f"{table}\n")
    print(table)
    print(f"\nWrote {out / 'eval.json'} and {out / 'eval.md'}")
