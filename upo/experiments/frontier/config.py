"""A frontier config: what every run shares, what each run changes, and what decides that a result is stale.

A frontier config (YAML, or the same as a dict) names the data (`dataset`, a local file or folder, or `dataset_name`,
a Hub ID or a local folder laid out as one, with `dataset_config` and `dataset_train_split`; `train_pairs` keeps the
first N rows, as the data loader reads them), the designer objectives, the options shared by
every run (`train`: any `upo train` option), the evaluation (`eval`), and the runs, each a name and the options
it changes (`alpha`, `loss_type`, `modpo_weight`, `value_baseline`, `aw_temperature`, ...), and optionally how
each run is launched (`accelerate_config`, `accelerate_args`: every run under `accelerate launch`, using all the
processes that config starts). See `examples/frontier_chitchat.yaml` and docs/SCALING.md.

`load_frontier_config` reads it once into a `FrontierConfig`, which every other module of the frontier takes, and
checks it whole before anything is trained. A misspelt key (`eval: {max_prompt: 8}`, `runs: [{name: a, option:
{...}}]`) was silently ignored, and a bad option of the fifth run surfaced only when the first four had trained; so
the loader refuses: a missing or invalid file, or one that is not a mapping (one line, `upo.options.read_yaml_mapping`);
unknown keys at every level (`TOP_KEYS`, `EVAL_KEYS`, `RUN_KEYS`, the target's `TARGET_KEYS`); runs that are not
mappings, or without a distinct name; options the frontier sets itself (`FRONTIER_SET`: given under `train` or a run
they were overridden without a word); out-of-range evaluation settings (as `upo eval` declares them,
upo.eval.settings); bad `seeds`; a `target` naming a family or run the grid does not have
(`upo.experiments.frontier.target.read_target`); and every run's options as `upo train` itself parses them
(`upo.options.parse_train_options`), named with their run.

`FrontierConfig.runs` is the one list of runs: each a `FrontierRun`, trained into `run_dir(config, name)`. With
`seeds: [0, 1, 2]`, each run of the config is trained once per seed, as `{name}-s{seed}` with `seed` set; its
`group` is the config's name, and everything else about it (its folder, its key) is as for any run.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import MISSING, dataclass
from pathlib import Path

from transformers import HfArgumentParser

from upo import methods
from upo.config import UPOConfig
from upo.config_checks import declared_ranges, range_problems
from upo.data.loading import HubDataset, load_preference_pairs
from upo.errors import ConfigError, UPOError
from upo.eval.data import load_eval_data
from upo.eval.scorers import check_preference_scorer
from upo.eval.settings import (
    DEFAULT_EVAL_DATA,
    EVAL_RUNTIME_SETTINGS,
    SCORER_RUNTIME_OPTIONS,
    EvalSettings,
    ScorerArguments,
)
from upo.eval.tracking import SUPPORTED_TRACKERS
from upo.experiments.frontier.target import Target, read_target
from upo.models import SMOLLM2_NAME, resolve_model_path
from upo.option_types import check_option_values
from upo.options import parse_train_options, read_yaml_mapping
from upo.preflight import MissingRequirements, hub_problem, tracker_problems, training_problems
from upo.rewards import resolve_reward_funcs

# The keys of a frontier config: those it must give, then the others with their defaults.
REQUIRED_KEYS = ("output_dir", "eval_data", "reward_funcs", "runs")  # and one of dataset, dataset_name
DEFAULTS = {"dataset": None, "dataset_name": None, "dataset_config": None, "dataset_train_split": "train",
            "model_name_or_path": SMOLLM2_NAME, "train_pairs": None, "reward_weights": None, "train": {}, "eval": {},
            "accelerate_config": None, "accelerate_args": [], "seeds": None, "report_to": None, "target": None}
TOP_KEYS = (*REQUIRED_KEYS, *DEFAULTS)
# Under `eval`: some of `upo eval`'s settings (EvalSettings, with its defaults; the others come from the top level
# and `train`), every option of the preference scorer (ScorerArguments), and `preference_scorer_model`, the older
# spelling of `preference_scorer: similarity:FOLDER`.
EVAL_SETTINGS_KEYS = ("max_prompts", "max_new_tokens", "batch_size", "seed", "do_sample", "temperature")
SCORER_KEYS = tuple(f.name for f in dataclasses.fields(ScorerArguments))
EVAL_KEYS = (*EVAL_SETTINGS_KEYS, *SCORER_KEYS, "preference_scorer_model")
RUN_KEYS = ("name", "options")
# Set by the frontier for every run (`run_train_options`), from the top level.
FRONTIER_SET = ("model_name_or_path", "dataset", "dataset_name", "dataset_config", "dataset_train_split",
                "reward_funcs", "reward_weights", "output_dir", "overwrite_output_dir")


@dataclass(frozen=True)
class FrontierRun:
    """One run of the grid, trained into `run_dir(config, name)` with the shared options and its own."""

    name: str  # its folder: the config's name for it, or `{name}-s{seed}` in a grid over seeds
    options: dict  # the `upo train` options it changes (with `seed` in a grid over seeds)
    group: str  # the config's name for it: the runs of one group differ by their seed only
    seed: int | None  # the seed it trains with, when the config gives one


@dataclass(frozen=True)
class FrontierConfig:
    """A frontier config, read and checked whole by `load_frontier_config` (its keys: frontier_chitchat.yaml)."""

    output_dir: str
    dataset: str | None  # every training pair: a local file or folder (or None, with `dataset_name`)
    train_pairs: int | None  # train on the first N pairs only, None: on every pair
    # What every run trains on: `dataset` itself, or the rows the data loader reads from `dataset` or `dataset_name`
    # (the first `train_pairs` of them) written once into the output folder (state.write_train_file)
    train_file: Path
    reward_funcs: list
    reward_weights: list | None
    runs: tuple[FrontierRun, ...]  # every run of the grid: in the config's order, or once per seed, seed by seed
    seeds: list[int] | None
    model_name_or_path: str
    train: dict  # `upo train` options shared by every run
    evaluation: EvalSettings  # how every run and the reference are evaluated (eval_data, the `eval:` settings, ...)
    scorer: ScorerArguments  # the preference scorer (`eval: {preference_scorer, judge_model, ...}`)
    scorer_model: str | None  # `eval: {preference_scorer_model}`: the similarity scorer's embedding folder
    accelerate_config: str | None  # each run under `accelerate launch --config_file` this file
    accelerate_args: list[str]  # more `accelerate launch` flags
    report_to: str | list | None  # the tracker of every run (and of its evaluation)
    target: Target | None  # the target the config declares (`target:`), judged in the report; None: no verdict
    source: dict = dataclasses.field(repr=False, compare=False)  # as given, defaults filled in: frontier.json's
    dataset_name: str | None = None  # a Hub ID or a local folder laid out as a Hub dataset repository
    dataset_config: str | None = None
    dataset_train_split: str = "train"

    @property
    def training_source(self):
        """What the data loader reads the training rows from: `dataset`, or `dataset_name` as a `HubDataset`."""
        if self.dataset_name is not None:
            return HubDataset(self.dataset_name, self.dataset_config, self.dataset_train_split)
        return self.dataset


def read_frontier_yaml(path: str | os.PathLike) -> dict:
    return read_yaml_mapping(path, "frontier config")


def load_frontier_config(path_or_mapping, **overrides) -> FrontierConfig:
    """The config in a YAML file (or a mapping of the same keys), with `overrides` (the command's flags) on top,
    checked whole (see the module docstring): anything a run would fail on or silently ignore is a `ConfigError`."""
    if isinstance(path_or_mapping, dict):
        given = dict(path_or_mapping)
    else:
        given = read_frontier_yaml(path_or_mapping)
    given.update(overrides)
    _check_keys(given)
    for key in REQUIRED_KEYS:
        if key not in given:
            raise ConfigError(f"frontier config: missing {key!r} (see examples/frontier_chitchat.yaml).")
    sources = [key for key in ("dataset", "dataset_name") if given.get(key) is not None]
    if len(sources) != 1:
        raise ConfigError("frontier config: " + ("both dataset and dataset_name are set: give one" if sources else
                          "missing 'dataset' (a local file or folder) or 'dataset_name' (a Hub ID, or a local folder "
                          "laid out as one)") + " (see examples/frontier_chitchat.yaml).")
    names = [run.get("name") for run in given["runs"]]
    if any(not isinstance(n, str) or not n or "/" in n for n in names) or len(set(names)) != len(names):
        raise ConfigError(f"frontier config: every run needs a distinct name without '/', got {names}.")
    source = {**given, **{key: copy.deepcopy(default) for key, default in DEFAULTS.items() if key not in given}}
    if source["accelerate_config"] is not None and not Path(source["accelerate_config"]).is_file():
        raise ConfigError(f"frontier config: accelerate_config {source['accelerate_config']!r} is not a file; give "
                          "the path of an accelerate config (examples/accelerate/ddp.yaml, fsdp2.yaml, ...).")
    if isinstance(source["accelerate_args"], str):
        source["accelerate_args"] = source["accelerate_args"].split()
    seeds = source["seeds"]
    if seeds is not None and (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
                              or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds)):
        raise ConfigError(f"frontier config: seeds must be a list of distinct integers, e.g. seeds: [0, 1, 2]; got "
                          f"{seeds!r}.")
    if seeds and any("seed" in (run.get("options") or {}) for run in source["runs"]):
        raise ConfigError("frontier config: with seeds, a run cannot set its own seed (it is trained once per seed); "
                          "remove seed from its options.")
    config = _build(source)
    _check_run_options(config)
    return config


def _build(source: dict) -> FrontierConfig:
    section, train = source["eval"] or {}, source["train"] or {}
    runs = [FrontierRun(run["name"], dict(run.get("options") or {}), run["name"], None) for run in source["runs"]]
    output_dir, pairs = str(source["output_dir"]), source["train_pairs"]
    dataset = None if source["dataset"] is None else str(source["dataset"])
    if pairs:
        train_file = Path(output_dir) / f"train_pairs_{pairs}.jsonl"
    elif dataset is None:  # a dataset by name: its rows written once, so that every run reads the same file
        train_file = Path(output_dir) / "train_pairs.jsonl"
    else:
        train_file = Path(dataset)
    from_train = {}  # as the runs train; else EvalSettings' defaults
    if "standardize_rewards" in train:
        from_train["standardize_rewards"] = train["standardize_rewards"]
    if train.get("max_length"):  # None (no limit in training) keeps the evaluation's
        from_train["max_length"] = train["max_length"]
    if "reward_timeout" in train:  # the designer functions are the training's: the same limit
        from_train["reward_timeout"] = train["reward_timeout"]
    evaluation = EvalSettings(
        eval_data=source["eval_data"], train_data=str(train_file), reward_funcs=list(source["reward_funcs"]),
        reward_weights=source["reward_weights"], **from_train,
        **{name: section[name] for name in EVAL_SETTINGS_KEYS if name in section})
    return FrontierConfig(
        output_dir=output_dir, dataset=dataset, train_pairs=pairs, train_file=train_file,
        reward_funcs=source["reward_funcs"], reward_weights=source["reward_weights"],
        runs=tuple(expand_seeds(runs, source["seeds"])), seeds=source["seeds"],
        model_name_or_path=source["model_name_or_path"], train=train, evaluation=evaluation,
        scorer=ScorerArguments(**{name: section[name] for name in SCORER_KEYS if name in section}),
        scorer_model=section.get("preference_scorer_model"), accelerate_config=source["accelerate_config"],
        accelerate_args=list(source["accelerate_args"] or []), report_to=source["report_to"],
        target=read_target(source["target"], {run.name: run_family({"options": run.options}) for run in runs}),
        source=source, dataset_name=source["dataset_name"], dataset_config=source["dataset_config"],
        dataset_train_split=source["dataset_train_split"])


def expand_seeds(runs: list[FrontierRun], seeds: list[int] | None) -> list[FrontierRun]:
    """Each run once per seed, seed-major (every run's seed 0 first), so that a grid stopped early has every method
    at some seed; without `seeds`, the runs as they are, each with the seed its options give."""
    if not seeds:
        return [dataclasses.replace(run, seed=run.options.get("seed")) for run in runs]
    return [FrontierRun(f"{run.name}-s{seed}", {**run.options, "seed": seed}, run.name, seed)
            for seed in seeds for run in runs]


def _unknown(keys, known, where: str) -> None:
    unknown = sorted(str(k) for k in keys if k not in known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; the keys are {list(known)} (see "
                          "examples/frontier_chitchat.yaml).")


def _mapping(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping of key: value, got {type(value).__name__} {value!r:.60}.")
    return value


def _check_keys(config: dict) -> None:
    """Unknown keys at every level, runs that are not mappings, evaluation settings out of range, `train_pairs`, and
    options that the frontier sets itself."""
    _mapping(config, "frontier config")
    _unknown(config, TOP_KEYS, "frontier config")
    runs = config.get("runs", [])  # a missing key is named with the other required ones
    if not isinstance(runs, list) or ("runs" in config and not runs):
        raise ConfigError(f"frontier config: 'runs' must be a list of runs ({{name: ..., options: {{...}}}}), got "
                          f"{runs!r:.60}.")
    for index, run in enumerate(runs):
        where = f"frontier config, runs[{index}]"
        _mapping(run, where)
        _unknown(run, RUN_KEYS, where)
        _mapping(run.get("options"), f"{where} ({run.get('name')!r}): options")
    train = _mapping(config.get("train"), "frontier config: train")
    evaluation = _mapping(config.get("eval"), "frontier config: eval")
    _unknown(evaluation, EVAL_KEYS, "frontier config, eval")
    # each value of the kind its option declares, as `upo eval`'s flag would take it (upo.option_types)
    check_option_values(evaluation, HfArgumentParser((EvalSettings, ScorerArguments)), "frontier config, eval")
    problems = range_problems({**evaluation, "reward_weights": config.get("reward_weights")},
                              declared_ranges(EvalSettings))
    if problems:
        raise ConfigError("frontier config, eval: " + "; ".join(problems) + ".")
    pairs = config.get("train_pairs")
    if pairs is not None and (isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < 1):
        raise ConfigError(f"frontier config: train_pairs must be an integer >= 1, or None (every pair), got {pairs!r}.")
    for where, options in [("train", train)] + [(f"run {run.get('name')!r}", run.get("options") or {}) for run in runs]:
        fixed = sorted(set(options) & set(FRONTIER_SET))
        if fixed:
            raise ConfigError(f"frontier config, {where}: {fixed} are set by the frontier for every run from the "
                              "top-level keys (model_name_or_path, dataset or dataset_name, reward_funcs, "
                              "reward_weights, output_dir); set them there.")


def _check_run_options(config: FrontierConfig) -> None:
    """Parse every run's `upo train` options as the command will, before the first run trains."""
    for run in config.runs:
        where = f"frontier config, run {run.group!r}"
        try:
            parse_train_options(run_train_options(config, run), where=where)
        except ConfigError as error:
            message = str(error)
            raise ConfigError(message if message.startswith(where) else f"{where}: {message}") from None


def scorer_options(config: FrontierConfig) -> ScorerArguments:
    """The grid's preference scorer options: `eval.preference_scorer` and the scorer's options of the `eval:` section;
    `eval.preference_scorer_model`, the older option, is the similarity scorer's embedding folder."""
    scorer = config.scorer
    if scorer.preference_scorer == "similarity" and config.scorer_model:
        scorer = dataclasses.replace(scorer, preference_scorer=f"similarity:{config.scorer_model}")
    return scorer


def check_inputs(config: FrontierConfig, runs: Sequence[FrontierRun] | None = None) -> None:
    """Everything the grid will read, checked before its first run trains: the training data and the evaluation
    data (read and checked whole), the designer reward functions and the preference scorer (imported, their models
    found, the evaluation rows scorable), the base model, and for each run of `runs` (default: all) every optional
    package it needs and the Hub when it pushes (upo.preflight), the evaluation's trackers too. `load_frontier_config`
    checks the config's own keys and values; these are the inputs it names. Before, a frontier trained and evaluated
    its first run before it found an eval_data that did not exist, or a scorer it could not import. Every problem at
    once: `MissingRequirements`, one line each."""
    problems: list[str] = []

    def attempt(check):
        try:
            return check()
        except (UPOError, OSError) as error:
            problems.append(f"{error}")
            return None

    attempt(lambda: load_preference_pairs(config.training_source))
    s = config.evaluation
    data = attempt(lambda: load_eval_data(None if s.dataset_name else s.eval_data or DEFAULT_EVAL_DATA, s.dataset_name,
                                          s.dataset_config, s.split, s.max_prompts, s.prompt_column,
                                          s.reference_column))
    attempt(lambda: resolve_reward_funcs(config.reward_funcs))
    attempt(lambda: check_preference_scorer(scorer_options(config), data.rows if data is not None else None))
    if config.model_name_or_path.lower() != SMOLLM2_NAME:  # the default is prepared from its wheel when first used
        attempt(lambda: resolve_model_path(config.model_name_or_path))
    pushes = False
    for run in runs if runs is not None else config.runs:
        parsed = attempt(lambda run=run: parse_train_options(run_train_options(config, run)))
        if parsed is None:
            continue
        _, model_args, options = parsed
        pushes = pushes or options.push_to_hub
        try:
            found = training_problems(options, model_args.quantization_config(), check_hub=False)
        except UPOError as error:
            found = [str(error)]
        problems.extend(p for p in found if p not in problems)  # the same for every run: named once
    if pushes:
        problems.append(hub_problem())
    trackers = [config.report_to] if isinstance(config.report_to, str) else list(config.report_to or [])
    problems.extend(p for p in tracker_problems([t for t in trackers if t in SUPPORTED_TRACKERS]) if p not in problems)
    problems = [p for p in problems if p]
    if problems:
        raise MissingRequirements([f"frontier config: {p}" for p in problems])


def select_runs(config: FrontierConfig, only: Sequence[str] | None) -> list[FrontierRun]:
    """The runs that `only` names, by a run's name (`upo-s1`) or its config name (`upo`: every seed of it); every run
    when `only` is None. A name that matches no run is a `ConfigError` listing the names."""
    runs = list(config.runs)
    if only is None:
        return runs
    known = {run.name for run in runs} | {run.group for run in runs}
    unknown = [name for name in only if name not in known]
    if unknown:
        raise ConfigError(f"--only {' '.join(unknown)}: no such run in the frontier config. Its runs: "
                          f"{', '.join(dict.fromkeys(run.group for run in runs))}"
                          + (" (each also by seed, as {name}-s{seed})" if config.seeds else "") + ".")
    return [run for run in runs if run.name in only or run.group in only]


def run_dir(config: FrontierConfig, name: str) -> Path:
    return Path(config.output_dir) / "runs" / name


def run_train_options(config: FrontierConfig, run: FrontierRun) -> dict:
    """Every `upo train` option of one run: shared options, then the run's own, then what the frontier fixes."""
    options = {**config.train, **run.options}
    options.update({
        "model_name_or_path": config.model_name_or_path,
        "dataset": str(config.train_file),
        "reward_funcs": config.reward_funcs,
        "reward_weights": config.reward_weights,
        "output_dir": str(run_dir(config, run.name)),
        "overwrite_output_dir": True,  # only ever a run that did not finish
    })
    # The tracker and the run's name reach every run: `report_to` at the top of the config (or in `train`).
    options["report_to"] = config.report_to or options.get("report_to") or "none"
    options.setdefault("run_name", f"{Path(config.output_dir).name}-{run.name}")
    options.setdefault("save_strategy", "no")
    return options


# The settings of the first frontiers: always in the evaluation key. A setting added since enters the key only away
# from its default, so that the runs of an older frontier stay evaluated (and a new `upo eval` option costs nothing).
FIRST_SETTINGS = ("eval_data", "train_data", "reward_funcs", "reward_weights", "standardize_rewards", "max_prompts",
                  "max_new_tokens", "batch_size", "seed", "max_length")
# The scorer's options of the first frontiers that chose a scorer: in the key whenever the scorer is not `similarity`.
# An option added since enters the key only away from its default, and one that changes how the scorer runs, never
# what it scores (upo.eval.settings.SCORER_RUNTIME_OPTIONS), never.
FIRST_SCORER_OPTIONS = ("preference_scorer", "judge_model", "judge_template")


def settings_key(config: FrontierConfig) -> str:
    """Changes whenever the evaluation would give other numbers: a stored evaluation with another key is stale."""
    evaluation = {f.name: getattr(config.evaluation, f.name) for f in dataclasses.fields(EvalSettings)}
    settings = {name: value for name, value in evaluation.items() if name not in EVAL_RUNTIME_SETTINGS
                and (name in FIRST_SETTINGS or value != option_default(EvalSettings, name))}
    keyed = [settings, config.model_name_or_path]
    scorer = config.scorer
    if scorer.preference_scorer != "similarity":  # it changes every preference number (similarity: older grids' key)
        keyed.append([getattr(scorer, name) for name in FIRST_SCORER_OPTIONS])
    unkeyed = (*FIRST_SCORER_OPTIONS, *SCORER_RUNTIME_OPTIONS)
    added = {f.name: getattr(scorer, f.name) for f in dataclasses.fields(ScorerArguments)
             if f.name not in unkeyed and getattr(scorer, f.name) != option_default(ScorerArguments, f.name)}
    if added:
        keyed.append(added)
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:16]


# Options that only say where the run's logs go: changing them never makes a finished run stale.
TRACKER_OPTIONS = ("report_to", "run_name")
# Options of how a run runs, never what it trains: neither.
RUNTIME_OPTIONS = ("reward_timeout", "reward_cache_dir")


def train_key(options: dict) -> str:
    """Changes whenever a run's `upo train` options do, except the tracker's (`TRACKER_OPTIONS`) and the runtime's
    (`RUNTIME_OPTIONS`): a finished run with another key is trained again."""
    trained = {name: value for name, value in options.items() if name not in (*TRACKER_OPTIONS, *RUNTIME_OPTIONS)}
    return hashlib.sha256(json.dumps(trained, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_family(run: dict) -> str:
    """DPO, UPO, RPO, MODPO, KTO, KTO-UPO, aoPPO, DRO-V, A-LOL, CSFT, ... (`upo.methods.family_of`), from the run's
    options and `UPOConfig`'s defaults."""
    options = run.get("options", {})
    loss_type = options.get("loss_type", option_default(UPOConfig, "loss_type"))
    loss_type = [loss_type] if isinstance(loss_type, str) else loss_type
    return methods.family_of(loss_type, float(options.get("alpha", option_default(UPOConfig, "alpha"))),
                             aux_loss=options.get("aux_loss", option_default(UPOConfig, "aux_loss")))


def option_default(options: type, name: str):
    """The default of the option `name` as its dataclass (`UPOConfig`, `EvalSettings`, `ScorerArguments`) declares it:
    the one place it is stated."""
    field = options.__dataclass_fields__[name]
    return field.default_factory() if field.default_factory is not MISSING else field.default
