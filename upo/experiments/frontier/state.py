"""What a frontier leaves on disk, and how it tells finished work from stale or interrupted work.

Layout of `output_dir`:

* `runs/{name}/`: the run's `upo train` folder (`upo.run_folder`), plus
  * `run.yaml`: the options it was trained with, `train.log`: what the training process printed;
  * `train_done.json`: written last, once training succeeded, with the key of its options (`config.train_key`);
  * `eval_summary.json`: its evaluation (summary with its time per phase, replies, per-prompt scores), with the key
    of the settings;
* `runs/.{name}.lock`: held by the process working on the run;
* `reference_eval.json` (and `.reference.lock`): the reference model's evaluation, done once, with its held-out pairs'
  log-probs;
* `train_pairs_{N}.jsonl`: with `train_pairs`, the first N pairs, which every run trains on (`write_train_file`);
* `frontier.json`, `frontier.md`, `frontier.png`, `frontier.html`: the report (`upo.experiments.frontier.report`).

A run is trained again when its `train_done.json` is missing (a kill interrupted it) or holds another options
key; it is evaluated again when its `eval_summary.json` holds another settings key. A run that finished with other
options is never overwritten: its folder is first renamed `runs/{name}.options-{key}` (`set_aside_finished`). A
trained model or checkpoints the frontier finds in a run's folder without a `train_done.json` are never trained over
either (`take_over`): the frontier's own run, finished but not yet marked, is adopted; its own run interrupted after a
complete checkpoint resumes from it; anything else is renamed `runs/{name}.found-N`, whole. A finished run that left a
method option at a default that has changed since (`changed_defaults`) is kept, and the frontier says so.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml

from upo import methods
from upo.config import UPOConfig
from upo.data.loading import load_preference_dataset
from upo.experiments.frontier.config import (
    RUNTIME_OPTIONS,
    FrontierConfig,
    FrontierRun,
    run_dir,
    run_train_options,
    train_key,
)
from upo.files import atomic_write_json, atomic_write_text
from upo.run_folder import TRAINED_MODEL_FILES, UPO_CONFIG, read_run_config
from upo.training.checkpointing import CHECKPOINT_PATTERN, last_complete_checkpoint

TRAIN_DONE = "train_done.json"
EVAL_SUMMARY = "eval_summary.json"
REFERENCE_EVAL = "reference_eval.json"
RUN_OPTIONS = "run.yaml"
TRAIN_LOG = "train.log"
REFERENCE_LOCK = ".reference.lock"


def run_lock_file(folder: Path) -> Path:
    """Held by the frontier process working on the run in `folder`, so that two processes never take the same run."""
    return folder.parent / f".{folder.name}.lock"


def write_train_file(config: FrontierConfig) -> Path:
    """The pairs every run trains on (`config.train_file`): with `train_pairs`, the first N rows of `dataset` or
    `dataset_name` as the data loader reads them (any file type, a dataset folder, a Hub dataset), and with
    `dataset_name`, its rows; written once into the output folder as JSON Lines (again only when they changed), so
    that every run, the reference log-probs and the designer statistics cover exactly the pairs the budget reaches."""
    if config.train_file == Path(config.dataset or ""):
        return config.train_file
    rows = load_preference_dataset(config.training_source, config.dataset_train_split)
    if config.train_pairs:
        rows = rows.select(range(min(config.train_pairs, len(rows))))
    text = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)
    if not config.train_file.is_file() or config.train_file.read_text() != text:
        atomic_write_text(config.train_file, text)
    return config.train_file


def train_done(config: FrontierConfig, run: FrontierRun) -> bool:
    """True when the run finished training with exactly the options the config now gives it."""
    marker = run_dir(config, run.name) / TRAIN_DONE
    if not marker.is_file():
        return False
    try:
        done = json.loads(marker.read_text())
    except ValueError:
        return False
    key = train_key(run_train_options(config, run))
    # The options it stored are keyed again: a run finished before a tracker option was added or changed stays done.
    return key in (done.get("options_key"), train_key(done.get("options") or {}))


def method_defaults() -> dict:
    """The defaults of the options `UPOConfig` adds to `TrainingArguments` (None-valued ones left out: those are
    resolved when the run starts, so their stored values are not defaults; and `RUNTIME_OPTIONS`, which change
    how a run runs, never what it trains)."""
    from transformers import TrainingArguments

    inherited = {f.name for f in dataclasses.fields(TrainingArguments)}
    return {f.name: f.default for f in dataclasses.fields(UPOConfig)
            if f.name not in inherited and f.name not in RUNTIME_OPTIONS and f.default is not dataclasses.MISSING
            and f.default is not None}


# read by UPO's designer term only
DESIGNER_TERM_OPTIONS = ("aux_loss", "designer_target", "aw_temperature", "aw_max_weight", "aux_normalization")
# Method options added since the first grids, at the value every run before them trained with.
IMPLICIT_BEFORE_ADDED = {"aux_loss": "awr"}


def changed_defaults(folder: Path, options: dict) -> dict:
    """`{option: (value it trained with, default now)}` for each method option the run in `folder` left at its
    default when that default has changed since (read from its `upo_config.json`): the run stands for the old
    default. Options of UPO's designer term are left out for a run without it (DPO, MODPO, DRO-V, ...), which
    they did not change. Empty when the folder records nothing."""
    stored = read_run_config(folder) or {}
    if stored:
        stored = {**IMPLICIT_BEFORE_ADDED, **stored}
    without_term = "alpha" in stored and "loss_type" in stored and not methods.uses_designer_term(
        stored["loss_type"], stored["alpha"], True)
    changed = {}
    for name, default in method_defaults().items():
        now = json.loads(json.dumps(default, default=str))
        if without_term and name in DESIGNER_TERM_OPTIONS:
            continue
        if name == "aw_temperature" and stored.get("designer_target") is not None:
            continue  # solved from the target when the run started, not a default
        if name not in options and name in stored and stored[name] != now:
            changed[name] = (stored[name], now)
    return changed


def mark_train_done(folder: Path, options: dict, seconds: float, trainer_state: dict | None) -> None:
    """Written last, once the training process exited cleanly; keeps its final logged metrics."""
    history = (trainer_state or {}).get("log_history") or []
    atomic_write_json(folder / TRAIN_DONE, {
        "options_key": train_key(options), "seconds": round(seconds, 1), "options": options,
        "global_step": (trainer_state or {}).get("global_step"),
        "final_logs": [entry for entry in history if "loss" in entry][-1:] + [e for e in history if "train_loss" in e],
    })


def set_aside_finished(folder: Path) -> Path | None:
    """Rename `folder` to `{name}.options-{its options key}` when it holds a finished training (its `train_done.json`),
    so that training the run again with other options cannot replace that model; returns the new place, or None."""
    marker = folder / TRAIN_DONE
    if not marker.is_file():
        return None
    try:
        key = json.loads(marker.read_text()).get("options_key") or "unknown"
    except ValueError:
        key = "unknown"
    kept, n = folder.with_name(f"{folder.name}.options-{key}"), 1
    while kept.exists():
        n += 1
        kept = folder.with_name(f"{folder.name}.options-{key}-{n}")
    folder.rename(kept)
    return kept


def holds_training(folder: Path) -> bool:
    """Whether `folder` holds a trained model or checkpoints (what training into it again would replace)."""
    return folder.is_dir() and any(path.name in TRAINED_MODEL_FILES or CHECKPOINT_PATTERN.match(path.name)
                                   for path in folder.iterdir())


def written_options(folder: Path) -> dict | None:
    """The options this frontier wrote into `folder/run.yaml` when it started the run there (without the resume it
    may have added), or None."""
    try:
        options = yaml.safe_load((folder / RUN_OPTIONS).read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(options, dict):
        return None
    options.pop("resume_from_checkpoint", None)
    return options


def take_over(folder: Path, options: dict) -> tuple[str, Path | None]:
    """What to do with what `folder` holds before the run (with `options`) trains into it, when it has no
    `train_done.json` (one with other options is set aside by `set_aside_finished` first):

    * `("fresh", None)`: nothing trained is there;
    * `("adopt", None)`: this frontier started the run with these options (its `run.yaml`) and the final model was
      saved (`upo_config.json` beside the weights), but the frontier was stopped before it marked the run done: the
      caller marks it, and it is not trained again;
    * `("resume", checkpoint)`: this frontier's run with these options, interrupted after a complete checkpoint: it
      resumes from there instead of starting over;
    * `("set aside", place)`: a trained model or checkpoints the frontier did not train with these options (another
      `upo train`, a copy, an older grid): the folder is renamed `{name}.found-N`, whole, and never trained over.
    """
    if not holds_training(folder):
        return "fresh", None
    if written_options(folder) == json.loads(json.dumps(options, default=str)):
        if (folder / UPO_CONFIG).is_file() and any((folder / name).is_file() for name in TRAINED_MODEL_FILES
                                                   if name != UPO_CONFIG):
            return "adopt", None
        checkpoint = last_complete_checkpoint(folder)
        return ("resume", checkpoint) if checkpoint is not None else ("fresh", None)
    kept, n = folder.with_name(f"{folder.name}.found-1"), 1
    while kept.exists():
        n += 1
        kept = folder.with_name(f"{folder.name}.found-{n}")
    folder.rename(kept)
    return "set aside", kept


def read_eval_summary(folder: Path, settings_key: str) -> dict | None:
    """A run's (or, given the file, the reference's) stored evaluation, or None when absent or stale."""
    path = folder / EVAL_SUMMARY if folder.is_dir() else folder
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except ValueError:
        return None
    return stored if stored.get("settings_key") == settings_key else None


def stored_evaluation(record: dict, settings_key: str) -> dict:
    """What is kept of an `Evaluator` record: enough to rescore the designer columns and redraw the report (and, for
    the reference, its held-out pairs' log-probs, which every run's implicit accuracy compares with)."""
    keep = ("summary", "replies", "preference", "designer", "kl", "objectives", "wins")
    stored = {"settings_key": settings_key, **{k: record.get(k) for k in keep}}
    if record.get("pair_logps"):
        stored["pair_logps"] = record["pair_logps"]
    return stored


def run_seconds(folder: Path) -> dict:
    """What a run took, in wall seconds, as its files record it: `training` (the training process, from
    `train_done.json`), `steps` (the trainer's own `train_runtime`), `evaluation` and its `phases` (from
    `eval_summary.json`); a value its files do not hold is left out."""
    out = {}
    for name, read in ((TRAIN_DONE, training_seconds), (EVAL_SUMMARY, evaluation_seconds)):
        try:
            out.update(read(json.loads((folder / name).read_text())))
        except (OSError, ValueError, TypeError, AttributeError):
            continue
    return out


def training_seconds(done: dict) -> dict:
    # 0: not measured (a run adopted by `take_over` is marked done with no time of its own)
    seconds = done.get("seconds")
    out = {"training": float(seconds)} if isinstance(seconds, (int, float)) and seconds > 0 else {}
    runtime = next((e["train_runtime"] for e in done.get("final_logs") or [] if "train_runtime" in e), None)
    if isinstance(runtime, (int, float)):
        out["steps"] = float(runtime)
    return out


def evaluation_seconds(stored: dict) -> dict:
    summary = stored.get("summary") or {}
    out = {"evaluation": float(summary["seconds"])} if isinstance(summary.get("seconds"), (int, float)) else {}
    if isinstance(summary.get("phases"), dict):
        out["phases"] = summary["phases"]
    return out
