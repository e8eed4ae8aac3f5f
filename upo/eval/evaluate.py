"""`upo eval`: generate on held-out prompts with trained models and the reference, and score what they say.

For every model (and the reference, as its own row) on the same prompts (`upo.eval.data`: any prompt or
preference dataset), replies are decoded greedily (`upo.eval.generate`), scored by the designer objectives and
the preference scorer (`upo.eval.scorers`), and summarised (`upo.eval.metrics`: designer score, preference score,
win rate against the reference, exact KL to the reference, held-out implicit-reward accuracy, length).

The reference is the evaluated run's base model unless `--reference` names another. Each model generates with its
own tokenizer, on its device and in its dtype; the KL and the implicit-reward accuracy need the reference's
vocabulary, and are left out (`-`) for a model with another one.

Each model's evaluation runs its prompts once: generation keeps the prompt states (`upo.eval.prompt_states`), the
held-out pairs' responses continue from them (`upo.eval.pair_logps`), the reference's prompt states are kept across
models so its KL runs over the replies alone, a LoRA run is merged into a copy of the reference in memory
(`upo.eval.models`); the numbers are those of whole forwards up to floating-point summation order. Where the time
went is in each summary's `phases` (`upo.eval.phases`), and printed.

Outputs: `eval.json` (summary per model, and per prompt the replies and their scores), `eval.md` (tables,
`upo.eval.tables`).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from upo.data.loading import load_preference_pairs
from upo.errors import ConfigError
from upo.eval import alpaca_eval
from upo.eval.data import load_eval_data, rows_as_chat
from upo.eval.generate import Decoding, generate, render_prompts
from upo.eval.metrics import (
    gaps_to_reference,
    implicit_accuracy_from_logps,
    implicit_reward_accuracy,
    score_objectives,
    summarize,
    win_indicators,
)
from upo.eval.models import ComparisonModels
from upo.eval.page import eval_page
from upo.eval.pair_logps import HeldOutPairs, PairLogps
from upo.eval.phases import GENERATION, IMPLICIT_ACCURACY, LOAD, SCORING, Phases, format_phases
from upo.eval.prompt_states import ReferencePrompts
from upo.eval.scorers import build_preference_scorer
from upo.eval.scorers.similarity import HumanReplySimilarity, SimilarityScorer
from upo.eval.settings import DEFAULT_EVAL_DATA, EvalSettings, ScorerArguments
from upo.eval.tables import side_by_side
from upo.eval.tracking import SUPPORTED_TRACKERS, log_evaluation
from upo.files import atomic_write_json, atomic_write_text
from upo.methods import generation_prefix
from upo.models import SMOLLM2_NAME, load_model
from upo.models.trained import default_reference
from upo.options import read_eval_options
from upo.preflight import check_evaluation
from upo.rewards import resolve_reward_funcs, reward_func_name
from upo.rewards.standardization import DesignerStandardization, fit_designer_standardization
from upo.run_folder import EVAL_JSON, EVAL_MARKDOWN, EVAL_PAGE, MODEL_CARD, read_run_config
from upo.threads import choose_num_threads
from upo.training.compatibility import check_generation_fits
from upo.training.model_card import add_eval_results, read_model_card

REFERENCE = "reference"


def load_eval_rows(path: str | os.PathLike, max_prompts: int | None = None) -> list[dict]:
    """The rows of an evaluation file, normalised (`upo.eval.data.load_eval_data`)."""
    return load_eval_data(path, max_prompts=max_prompts).rows


def conditioning_prefix(model_path: str | os.PathLike) -> str | None:
    """What generation starts with for the model in `model_path` (`upo.methods.generation_prefix` of its run
    config): the good control tag for conditional SFT, else None."""
    return generation_prefix(read_run_config(model_path) or {})


def same_vocabulary(a, b) -> bool:
    """True when two tokenizers map the same strings to the same ids (their log-probs are comparable)."""
    return a is b or a.get_vocab() == b.get_vocab()


def pad_token_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def phases_line(summary: dict) -> str:
    """`NAME: evaluated in 21.3 s (load 0.7 s, generation 12.1 s, KL 2.4 s, implicit accuracy 5.8 s, scoring 0.3 s)`."""
    phases = f" ({format_phases(summary['phases'])})" if summary.get("phases") else ""
    return f"{summary['name']}: evaluated in {summary.get('seconds', 0):.1f} s{phases}"


# ----------------------------------------------------------------------------------------- evaluator


class Evaluator:
    """Evaluates several models on the same prompts, against one reference loaded once.

    `scorer`: a `upo.eval.scorers.PreferenceScorer` (default: `similarity`). The designer standardisation is, in
    order: `designer_stats` (a run's stored one, its `designer_reward_stats`), fitted on `settings.train_data`, on the
    evaluation pairs' chosen and rejected responses, or on the reference's replies.

    `plain`: every model loaded from disk and every number from whole forwards over prompt and continuation (the KL's
    reference over prompt + reply, `implicit_reward_accuracy`), nothing kept between models: the definition the
    default path (module docstring) is tested against."""

    def __init__(self, settings: EvalSettings, reference: str = SMOLLM2_NAME, scorer=None,
                 progress: bool = True, device: str | None = None, dtype=None, trust_remote_code: bool = False,
                 designer_stats: dict | None = None, plain: bool = False):
        self.settings = settings
        self.plain = plain
        self.designer_stats = designer_stats
        self.device, self.dtype, self.trust_remote_code = device, dtype, trust_remote_code
        self.reference_name = reference
        # The data first: a missing file or a bad row is reported before minutes of model loading.
        self.data = load_eval_data(None if settings.dataset_name else settings.eval_data or DEFAULT_EVAL_DATA,
                                   settings.dataset_name, settings.dataset_config, settings.split,
                                   settings.max_prompts, settings.prompt_column, settings.reference_column)
        start = time.perf_counter()
        self.reference, self.tokenizer = load_model(reference, dtype, device, trust_remote_code)
        self.reference_load_seconds = time.perf_counter() - start
        self.models = ComparisonModels(self.reference, self.tokenizer, reference, dtype, device, trust_remote_code)
        self.reference_prompts = ReferencePrompts(self.reference, pad_token_id(self.tokenizer))
        self._pairs: dict[int, tuple] = {}  # id(tokenizer) -> (tokenizer, its HeldOutPairs or None)
        self._reference_pair_logps: dict[str, tuple] = {}  # PairLogps.key -> the reference's (chosen, rejected)
        chat = settings.prompt_format == "chat" or (settings.prompt_format == "auto" and self.tokenizer.chat_template)
        self.rows = rows_as_chat(self.data.rows) if chat else self.data.rows
        converted = sum(isinstance(a["prompt"], str) and not isinstance(b["prompt"], str)
                        for a, b in zip(self.data.rows, self.rows))
        self.prompt_note = (f"{converted} HH-style text prompts asked as chat messages (--prompt_format text keeps "
                            "the text)" if converted else "prompts as given")
        self.prompts = [r["prompt"] for r in self.rows]
        self.scale, self.scale_source = self._designer_standardization()
        if isinstance(scorer, HumanReplySimilarity):
            scorer = SimilarityScorer(similarity=scorer)
        self.scorer = scorer or build_preference_scorer(ScorerArguments(), device=device, dtype=dtype,
                                                        trust_remote_code=trust_remote_code)
        self.decoding = Decoding(max_new_tokens=settings.max_new_tokens, do_sample=settings.do_sample,
                                 temperature=settings.temperature, top_k=0)
        self.progress = progress
        self._reference_record: dict | None = None

    def _designer_standardization(self) -> tuple[DesignerStandardization | None, str]:
        s = self.settings
        if not s.reward_funcs:
            return DesignerStandardization([], [], [], []), "no designer objectives"
        if self.designer_stats:
            stored = DesignerStandardization.from_dict(self.designer_stats)
            stored.check_names([reward_func_name(f) for f in resolve_reward_funcs(s.reward_funcs)], "--reward_funcs")
            if s.reward_weights is not None:
                stored.weights = [float(w) for w in s.reward_weights]
            return stored, "the run's training statistics (upo_config.json)"
        if s.train_data:
            pairs = load_preference_pairs(s.train_data)[0].to_list()
            return (fit_designer_standardization(pairs, s.reward_funcs, s.reward_weights, s.standardize_rewards),
                    f"the training pairs {s.train_data}")
        pairs = [r for r in self.rows if r.get("chosen") is not None and r.get("rejected") is not None]
        if pairs:
            return (fit_designer_standardization(pairs, s.reward_funcs, s.reward_weights, s.standardize_rewards),
                    "the evaluation pairs' chosen and rejected responses")
        return None, "the reference model's replies"  # fitted once they exist

    def _evaluate(self, name: str, model, tokenizer, response_prefix: str | None = None,
                  phases: Phases | None = None) -> dict:
        s = self.settings
        phases = phases or Phases()
        is_reference = model is self.reference
        comparable = same_vocabulary(tokenizer, self.tokenizer)
        ref = None if is_reference or not comparable else self.reference if self.plain else self.reference_prompts
        pairs = self.held_out_pairs(tokenizer) if comparable and not self.plain else None
        collector = PairLogps(model, pairs, pad_token_id(tokenizer)) if pairs else None
        keep_reference = is_reference and not self.plain

        def on_prompts(indices, states):
            with phases.measure(IMPLICIT_ACCURACY):
                if keep_reference:  # each run's KL continues from them
                    states = self.reference_prompts.keep(states)
                if collector is not None:
                    collector.add_batch(indices, states)

        with phases.measure(GENERATION):
            check_generation_fits(model, f"the model {name}", render_prompts(tokenizer, self.prompts, response_prefix),
                                  s.max_new_tokens)  # its tokenizer's ids and its positions, before it generates
            generations = generate(model, tokenizer, self.prompts, self.decoding, seed=s.seed,
                                   batch_size=s.batch_size, reference=ref, response_prefix=response_prefix,
                                   on_prompts=on_prompts if keep_reference or collector is not None else None,
                                   phases=phases, progress=self.progress, desc=f"{name}: generating")
        with phases.measure(IMPLICIT_ACCURACY):
            if not comparable:
                accuracy = None
            elif self.plain:
                accuracy = implicit_reward_accuracy(model, None if is_reference else self.reference, tokenizer,
                                                    self.rows, s.max_length)
            else:
                accuracy = self._implicit_accuracy(pairs, collector, is_reference)
        with phases.measure(SCORING):
            replies = [r[0] for r in generations.replies]
            kls = [k[0] for k in generations.kls] if comparable else [math.nan] * len(replies)
            counts = [c[0] for c in generations.token_counts]
            objectives = score_objectives(self.prompts, replies, s.reward_funcs, self.rows,
                                          s.reward_timeout) if s.reward_funcs else {}
            if self.scale is None:  # standardised on the reference's replies: the reference comes first
                self.scale = DesignerStandardization.fit(objectives, s.reward_weights, s.standardize_rewards)
            designer = self.scale.designer_score(objectives) if self.scale.names else [math.nan] * len(replies)
            reference = self._reference_record
            if self.scorer.pairwise:
                preference = [0.5] * len(replies) if is_reference else \
                    self.scorer.compare(self.prompts, replies, reference["replies"], self.rows)
                wins = preference
            else:
                preference = self.scorer.score_replies(self.prompts, replies, self.rows)
                wins = [0.5] * len(replies) if is_reference else \
                    win_indicators(preference, reference["preference"], replies, reference["replies"])
        summary = summarize(name, replies, objectives, designer, preference, None, None, kls, counts, accuracy,
                            wins=wins)
        if not is_reference:  # each gap to the reference with its interval over the prompts
            summary.update(gaps_to_reference(wins, designer, reference["designer"], None if self.scorer.pairwise
                                             else preference, reference["preference"]))
        summary["seconds"] = round(sum(phases.seconds.values()), 1)
        summary["phases"] = phases.rounded()
        record = {"summary": summary, "replies": replies, "preference": preference, "designer": designer,
                  "objectives": objectives, "kl": kls, "wins": wins}
        if is_reference and collector is not None:  # once per grid: every run's implicit accuracy compares with them
            chosen, rejected = self._reference_pair_logps[collector.key]
            record["pair_logps"] = {"key": collector.key, "chosen": chosen.tolist(), "rejected": rejected.tolist()}
        return record

    def held_out_pairs(self, tokenizer) -> HeldOutPairs | None:
        """The evaluation rows' pairs as `tokenizer` tokenises them (once per tokenizer); None when no row has
        chosen and rejected."""
        entry = self._pairs.get(id(tokenizer))
        if entry is None or entry[0] is not tokenizer:
            entry = self._pairs[id(tokenizer)] = (tokenizer, HeldOutPairs.tokenize(tokenizer, self.rows,
                                                                                    self.settings.max_length))
        return entry[1]

    def _implicit_accuracy(self, pairs: HeldOutPairs | None, collector: PairLogps | None,
                           is_reference: bool) -> float | None:
        """The held-out implicit-reward accuracy (`upo.eval.metrics.implicit_reward_accuracy`'s definition): None
        without pairs, 0.5 for the reference, whose log-probs every model's are compared with, computed once."""
        if pairs is None:
            return None
        if collector is None:  # every pair dropped by max_length
            return 0.5 if is_reference else None
        chosen, rejected = collector.finish()
        if is_reference:
            self._reference_pair_logps[collector.key] = (chosen, rejected)
            return 0.5
        if collector.key not in self._reference_pair_logps:
            self._reference_pair_logps[collector.key] = collector.like(self.reference, self.reference_prompts.states)
        ref_chosen, ref_rejected = self._reference_pair_logps[collector.key]
        return implicit_accuracy_from_logps(chosen, rejected, ref_chosen, ref_rejected)

    def use_reference_record(self, record: dict) -> None:
        """The reference's evaluation stored earlier (its `replies` and `preference`, and its held-out pairs'
        log-probs when it has them): the win rates of the models evaluated next are against it, and the reference is
        not generated again."""
        if self._reference_record is None:
            self._reference_record = record
            if self.scale is None and record.get("objectives"):
                self.scale = DesignerStandardization.fit(record["objectives"], self.settings.reward_weights,
                                                         self.settings.standardize_rewards)
            stored = record.get("pair_logps")
            if stored and stored.get("key"):
                self._reference_pair_logps.setdefault(stored["key"], (
                    torch.tensor(stored["chosen"], dtype=torch.float32),
                    torch.tensor(stored["rejected"], dtype=torch.float32)))

    def evaluate_reference(self) -> dict:
        if self._reference_record is None:
            phases = Phases()
            phases.seconds[LOAD] = self.reference_load_seconds
            self._reference_record = self._evaluate(REFERENCE, self.reference, self.tokenizer, phases=phases)
        return self._reference_record

    def evaluate(self, name: str, model_path: str) -> dict:
        self.evaluate_reference()
        phases = Phases()
        with phases.measure(LOAD):
            model, tokenizer = load_model(model_path, self.dtype, self.device, self.trust_remote_code) \
                if self.plain else self.models.load(model_path)
        try:
            return self._evaluate(name, model, tokenizer, conditioning_prefix(model_path), phases)
        finally:
            del model

    def per_prompt(self, records: dict[str, dict]) -> list[dict]:
        """Per prompt: the prompt, its reference answer (when any), and each model's reply with its scores."""
        out = []
        for k, row in enumerate(self.rows):
            entry = {"prompt": row["prompt"]}
            if row.get("reference_answer") is not None:
                entry["reference_answer"] = row["reference_answer"]
            for name, record in records.items():
                entry[name] = {"reply": record["replies"][k], "preference": _rounded(record["preference"][k]),
                               "win": _rounded(record["wins"][k]) if record.get("wins") else None,
                               "designer": _rounded(record["designer"][k]), "kl": _rounded(record["kl"][k]),
                               "objectives": {n: _rounded(v[k]) for n, v in (record.get("objectives") or {}).items()}}
            out.append(entry)
        return out

    def describe(self) -> dict:
        return {"settings": asdict(self.settings), "reference_model": self.reference_name,
                "data": f"{self.data.describe()}; {self.prompt_note}", "decoding": self.decoding.describe(),
                "designer_scale": self.scale.to_dict() if self.scale else None,
                "designer_scale_source": self.scale_source, "preference_scorer": self.scorer.describe(),
                "preference_scorer_spec": self.scorer.spec, "n_prompts": len(self.rows)}


def _rounded(value, digits: int = 4):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(float(value), digits)


def finite_or_none(value):
    """`value` with every NaN or infinity replaced by None, so that the JSON it is written to is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------ command


def main(argv: list[str]) -> None:
    """`upo eval --model RUN [RUN ...] [--eval_data FILE | --dataset_name NAME] [--preference_scorer SPEC] ...`."""
    args, scoring, settings = read_eval_options(argv, description=__doc__.split("\n\n")[0])
    # Before anything loads: the trackers' packages, and the model cards it will add results to.
    check_evaluation(args.report_to, SUPPORTED_TRACKERS, args.generation_backend)
    if args.update_model_card:
        for path in args.model:
            if (Path(path) / MODEL_CARD).is_file():
                read_model_card(Path(path) / MODEL_CARD)
    choose_num_threads(args.num_threads)
    config = read_run_config(args.model[0]) or {}
    if not settings.reward_funcs:  # the first run's objectives (and weights, unless given)
        settings = replace(settings, reward_funcs=list(config.get("reward_funcs") or []),
                           reward_weights=settings.reward_weights or config.get("reward_weights"))
    stats = None
    if settings.train_data is None and settings.reward_funcs and config.get("designer_reward_stats"):
        stats = config["designer_reward_stats"]
    names = args.name or [Path(m).name for m in args.model]
    if len(names) != len(args.model):
        raise ConfigError(f"--name has {len(names)} values for {len(args.model)} models.")
    if settings.eval_data and settings.dataset_name:
        raise ConfigError("--eval_data and --dataset_name both given: pass one.")
    reference = args.reference or default_reference(args.model[0])
    scorer = build_preference_scorer(scoring, device=args.device, dtype=args.dtype,
                                     trust_remote_code=args.trust_remote_code)
    evaluator = Evaluator(settings, reference, scorer=scorer, device=args.device, dtype=args.dtype,
                          trust_remote_code=args.trust_remote_code, designer_stats=stats)
    print(f"Reference: {reference}. Data: {evaluator.data.describe()}; {evaluator.prompt_note}. "
          f"Preference scorer: {scorer.describe()}. "
          f"Designer objectives standardised with {evaluator.scale_source}.", flush=True)
    records = {REFERENCE: evaluator.evaluate_reference()}
    print(phases_line(records[REFERENCE]["summary"]), flush=True)
    for name, path in zip(names, args.model):
        records[name] = evaluator.evaluate(name, path)
        print(phases_line(records[name]["summary"]), flush=True)
    summaries = [r["summary"] for r in records.values()]
    out = Path(args.out or args.model[0])
    report = finite_or_none({**evaluator.describe(), "summaries": summaries,
                             "per_prompt": evaluator.per_prompt(records)})
    written = write_eval_outputs(out, report)
    exported = alpaca_eval.write_model_outputs(out, report)  # the same replies, for alpaca_eval's annotators
    print(side_by_side(summaries))
    print(f"\nWrote {', '.join(str(p) for p in written)}")
    print(f"Each model's replies in alpaca_eval's format in {out / alpaca_eval.FOLDER}; to have alpaca_eval judge them "
          "against the reference's (pip install alpaca-eval, and its annotator's API key):")
    for command in alpaca_eval.commands(exported):
        print(f"  {command}")

    run_name = args.run_name or f"upo-eval-{names[0]}"
    logged = log_evaluation(report, args.report_to, run_name, args.logging_dir or out / "runs")
    if logged:
        print(f"Logged the metrics and sample replies to {', '.join(logged)} (run {run_name})")
    if args.update_model_card:
        data_name = settings.dataset_name or Path(settings.eval_data or DEFAULT_EVAL_DATA).name
        for name, path, summary in zip(names, args.model, summaries[1:]):
            if read_run_config(path) is not None and add_eval_results(path, summary, data_name, settings.dataset_name):
                print(f"Added the results of {name} to the model card {Path(path) / 'README.md'}")


def write_eval_outputs(out: Path, report: dict) -> list[Path]:
    """`eval.json`, `eval.md` and `eval.html` (`upo.eval.page`) in `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / EVAL_JSON, report)
    header = (f"Reference: {report['reference_model']}. Data: {report['data']}. Decoding: {report['decoding']}. "
              f"Preference scorer: {report['preference_scorer']}. Designer objectives standardised with "
              f"{report['designer_scale_source']}.")
    atomic_write_text(out / EVAL_MARKDOWN, f"{header}\n\n{side_by_side(report['summaries'])}\n")
    atomic_write_text(out / EVAL_PAGE, eval_page(report, folder=out))
    return [out / EVAL_JSON, out / EVAL_MARKDOWN, out / EVAL_PAGE]
