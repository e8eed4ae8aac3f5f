"""A frontier config checked whole before anything is trained: every key known, every run's options as `upo train`
itself parses them.

A misspelt key (`eval: {max_prompt: 8}`, `runs: [{name: a, option: {...}}]`) was silently ignored, and a bad
option of the fifth run surfaced only when the first four had trained. Here:

* `read_frontier_yaml` turns a missing file, invalid YAML or a file that is not a mapping into one line;
* `check_frontier_config` refuses unknown keys at every level (top, `eval`, each run), runs that are not
  mappings, options the frontier sets itself (`output_dir`, `dataset`, ...: given under `train` or a run they
  were overridden without a word), out-of-range evaluation settings (`upo.config_checks.EVAL_RANGES`), and
  parses each run's options with `upo.cli.parse_train_options`, so unknown, mistyped and out-of-range training
  options are named with their run.
"""

from __future__ import annotations

import os

from upo.config_checks import declared_ranges, range_problems
from upo.errors import ConfigError
from upo.eval.settings import EvalSettings
from upo.options import read_yaml_mapping

# Every key the frontier reads (tests/experiments/test_frontier_checks.py finds the ones its code reads in these).
TOP_KEYS = ("output_dir", "dataset", "eval_data", "reward_funcs", "runs", "model_name_or_path", "train_pairs",
            "reward_weights", "train", "eval", "accelerate_config", "accelerate_args", "seeds", "report_to")
EVAL_KEYS = ("max_prompts", "max_new_tokens", "batch_size", "seed", "do_sample", "temperature", "preference_scorer",
             "preference_scorer_model", "judge_model", "judge_template")
RUN_KEYS = ("name", "options")
# Set by the frontier for every run (upo.experiments.frontier.config.run_train_options), from the top level.
FRONTIER_SET = ("model_name_or_path", "dataset", "reward_funcs", "reward_weights", "output_dir", "overwrite_output_dir")


def read_frontier_yaml(path: str | os.PathLike) -> dict:
    return read_yaml_mapping(path, "frontier config")


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


def check_frontier_config(config: dict) -> None:
    """Raise ConfigError for anything in `config` a run would fail on or silently ignore (see the module docstring)."""
    _mapping(config, "frontier config")
    _unknown(config, TOP_KEYS, "frontier config")
    runs = config.get("runs", [])  # a missing key is load_frontier_config's to name
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
                              "top-level keys (model_name_or_path, dataset, reward_funcs, reward_weights, output_dir); "
                              "set them there.")


def check_run_options(config: dict) -> None:
    """Parse every run's `upo train` options as the command will, before the first run trains."""
    from upo.experiments.frontier.config import run_dir
    from upo.options import parse_train_options

    for run in config["runs"]:
        options = {**config["train"], **(run.get("options") or {}), "model_name_or_path": config["model_name_or_path"],
                   "dataset": str(config["dataset"]), "reward_funcs": config["reward_funcs"],
                   "reward_weights": config["reward_weights"], "output_dir": str(run_dir(config, run["name"])),
                   "overwrite_output_dir": True}
        options.setdefault("report_to", "none")
        where = f"frontier config, run {run['name']!r}"
        try:
            parse_train_options(options, where=where)
        except ConfigError as error:
            message = str(error)
            raise ConfigError(message if message.startswith(where) else f"{where}: {message}") from None
