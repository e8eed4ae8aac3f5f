"""A frontier config: what every run shares, what each run changes, and what decides that a result is stale.

A frontier config (YAML, or the same as a dict) names the data, the designer objectives, the options shared by
every run (`train`: any `upo train` option), the evaluation (`eval`), and the runs, each a name and the options
it changes (`alpha`, `loss_type`, `modpo_weight`, `value_baseline`, `aw_temperature`, ...), and optionally how
each run is launched (`accelerate_config`, `accelerate_args`: every run under `accelerate launch`, using all the
processes that config starts). See `examples/frontier_chitchat.yaml` and docs/SCALING.md.

`frontier_runs(config)` is the one list of runs every other module reads: a run is `{"name", "options", "group",
"seed"}`, trained into `run_dir(config, name)`. With `seeds: [0, 1, 2]`, each run of the config is trained once per
seed, as `{name}-s{seed}` (`upo.experiments.frontier.seeds`); its `group` is the config's name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import MISSING, asdict
from pathlib import Path

from upo import methods
from upo.files import atomic_write_text

REQUIRED_KEYS = ("output_dir", "dataset", "eval_data", "reward_funcs", "runs")


def load_frontier_config(path_or_dict) -> dict:
    """The config with its defaults filled in; a missing key or a bad run name is a `ConfigError`."""
    from upo.errors import ConfigError
    from upo.experiments.frontier.checks import check_frontier_config, read_frontier_yaml

    config = dict(path_or_dict) if isinstance(path_or_dict, dict) else read_frontier_yaml(path_or_dict)
    check_frontier_config(config)  # unknown keys, runs that are not mappings, eval settings (frontier/checks.py)
    for key in REQUIRED_KEYS:
        if key not in config:
            raise ConfigError(f"frontier config: missing {key!r} (see examples/frontier_chitchat.yaml).")
    names = [run.get("name") for run in config["runs"]]
    if any(not isinstance(n, str) or not n or "/" in n for n in names) or len(set(names)) != len(names):
        raise ConfigError(f"frontier config: every run needs a distinct name without '/', got {names}.")
    config.setdefault("model_name_or_path", "smollm2-135m-instruct")
    config.setdefault("train_pairs", None)
    config.setdefault("reward_weights", None)
    config.setdefault("train", {})
    config.setdefault("eval", {})
    # Each run under `accelerate launch` with the user's accelerate config (upo.experiments.frontier.runner)
    config.setdefault("accelerate_config", None)
    config.setdefault("accelerate_args", [])
    if config["accelerate_config"] is not None and not Path(config["accelerate_config"]).is_file():
        raise ConfigError(f"frontier config: accelerate_config {config['accelerate_config']!r} is not a file; give "
                          "the path of an accelerate config (examples/accelerate/ddp.yaml, fsdp2.yaml, ...).")
    if isinstance(config["accelerate_args"], str):
        config["accelerate_args"] = config["accelerate_args"].split()
    config.setdefault("seeds", None)
    seeds = config["seeds"]
    if seeds is not None and (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
                              or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds)):
        raise ConfigError(f"frontier config: seeds must be a list of distinct integers, e.g. seeds: [0, 1, 2]; got "
                          f"{seeds!r}.")
    if seeds and any("seed" in run.get("options", {}) for run in config["runs"]):
        raise ConfigError("frontier config: with seeds, a run cannot set its own seed (it is trained once per seed); "
                          "remove seed from its options.")
    return config


def frontier_runs(config: dict) -> list[dict]:
    """Every run of the grid, `{"name", "options", "group", "seed"}`: in the config's order, or once per seed of
    `seeds`, seed by seed."""
    from upo.experiments.frontier.seeds import expand_seeds

    runs = [{"name": run["name"], "options": dict(run.get("options", {}))} for run in config["runs"]]
    return expand_seeds(runs, config.get("seeds"))


def select_runs(config: dict, only: Sequence[str] | None) -> list[dict]:
    """The runs of `frontier_runs` that `only` names, by a run's name (`upo-s1`) or its config name (`upo`: every
    seed of it); every run when `only` is None. A name that matches no run is a `ConfigError` listing the names."""
    from upo.errors import ConfigError

    runs = frontier_runs(config)
    if only is None:
        return runs
    known = {run["name"] for run in runs} | {run["group"] for run in runs}
    unknown = [name for name in only if name not in known]
    if unknown:
        raise ConfigError(f"--only {' '.join(unknown)}: no such run in the frontier config. Its runs: "
                          f"{', '.join(dict.fromkeys(run['group'] for run in runs))}"
                          + (" (each also by seed, as {name}-s{seed})" if config.get("seeds") else "") + ".")
    return [run for run in runs if run["name"] in only or run["group"] in only]


def run_dir(config: dict, name: str) -> Path:
    return Path(config["output_dir"]) / "runs" / name


def run_train_options(config: dict, run: dict) -> dict:
    """Every `upo train` option of one run: shared options, then the run's own, then what the frontier fixes."""
    options = {**config["train"], **run.get("options", {})}
    options.update({
        "model_name_or_path": config["model_name_or_path"],
        "dataset": str(training_data(config)),
        "reward_funcs": config["reward_funcs"],
        "reward_weights": config["reward_weights"],
        "output_dir": str(run_dir(config, run["name"])),
        "overwrite_output_dir": True,  # only ever a run that did not finish
    })
    # The tracker and the run's name reach every run: `report_to` at the top of the config (or in `train`).
    options["report_to"] = config.get("report_to") or options.get("report_to") or "none"
    options.setdefault("run_name", f"{Path(config['output_dir']).name}-{run['name']}")
    options.setdefault("save_strategy", "no")
    return options


def training_data(config: dict) -> Path:
    """The training pairs: `dataset`, or its first `train_pairs` rows (written once into the output folder), so
    that the reference log-probs and the designer statistics cover exactly the pairs the budget reaches."""
    n = config.get("train_pairs")
    if not n:
        return Path(config["dataset"])
    subset = Path(config["output_dir"]) / f"train_pairs_{n}.jsonl"
    lines = [line for line in Path(config["dataset"]).read_text().splitlines() if line.strip()][:n]
    text = "".join(line + "\n" for line in lines)
    if not subset.is_file() or subset.read_text() != text:
        atomic_write_text(subset, text)
    return subset


def eval_settings(config: dict):
    """The `upo.eval.evaluate.EvalSettings` every run of the grid (and the reference) is evaluated with."""
    from upo.eval.evaluate import EvalSettings

    e = config["eval"]
    return EvalSettings(
        eval_data=config["eval_data"], train_data=str(training_data(config)), reward_funcs=list(config["reward_funcs"]),
        reward_weights=config["reward_weights"], standardize_rewards=config["train"].get("standardize_rewards", True),
        max_prompts=e.get("max_prompts"), max_new_tokens=e.get("max_new_tokens", 32),
        batch_size=e.get("batch_size", 32), seed=e.get("seed", 0),
        max_length=config["train"].get("max_length", 256) or 256,
        do_sample=e.get("do_sample", False), temperature=e.get("temperature", 1.0),
    )


# Evaluation settings added after the first frontiers were run: at these values they leave the key unchanged, so
# the runs of an older frontier stay evaluated.
_LATER_SETTINGS = {"do_sample": False, "temperature": 1.0, "dataset_name": None, "dataset_config": None, "split": None,
                   "prompt_column": "prompt", "reference_column": None, "prompt_format": "auto"}


def settings_key(config: dict) -> str:
    """Changes whenever the evaluation would give other numbers: a stored evaluation with another key is stale."""
    settings = asdict(eval_settings(config))
    for name, default in _LATER_SETTINGS.items():
        if settings.get(name) == default:
            settings.pop(name)
    keyed = [settings, config["model_name_or_path"]]
    scorer = config["eval"].get("preference_scorer", "similarity")
    if scorer != "similarity":  # the scorer changes every preference number (similarity: the key of older grids)
        keyed.append([scorer, config["eval"].get("judge_model"), config["eval"].get("judge_template")])
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:16]


# Options that only say where the run's logs go: changing them never makes a finished run stale.
TRACKER_OPTIONS = ("report_to", "run_name")


def train_key(options: dict) -> str:
    """Changes whenever a run's `upo train` options do, except the tracker's (`TRACKER_OPTIONS`): a finished run
    with another key is trained again."""
    trained = {name: value for name, value in options.items() if name not in TRACKER_OPTIONS}
    return hashlib.sha256(json.dumps(trained, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_family(run: dict) -> str:
    """DPO, UPO, RPO, MODPO, KTO, KTO-UPO, aoPPO, DRO-V, A-LOL, CSFT, ... (`upo.methods.family_of`), from the run's
    options and `UPOConfig`'s defaults."""
    options = run.get("options", {})
    loss_type = options.get("loss_type", upo_default("loss_type"))
    loss_type = [loss_type] if isinstance(loss_type, str) else loss_type
    return methods.family_of(loss_type, float(options.get("alpha", upo_default("alpha"))))


def upo_default(name: str):
    """The default of a `UPOConfig` option: the one place it is stated."""
    from upo.config import UPOConfig

    field = UPOConfig.__dataclass_fields__[name]
    return field.default_factory() if field.default_factory is not MISSING else field.default
