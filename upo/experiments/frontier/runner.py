"""Training and evaluating the runs of a frontier that are not done yet.

Each run trains with `upo train` in its own process (`train_command`: as a user would run it, under `accelerate
launch` with the config's `accelerate_config`), its output into `train.log`. The runner follows the run through the
`trainer_state.json` the trainer writes at every log (`upo.run_folder.TrainerStateWriter`), never by
parsing what it prints. The run is then evaluated by `upo.eval.evaluate.Evaluator` against the reference, which
is evaluated once for the whole grid. Several `upo frontier` processes on one config share the grid: each run is
locked while one process works on it, the others skip to the next.

The log gives each run's time (training, and the evaluation's phases: load, generation, KL, implicit accuracy,
scoring) and, at the end, the grid's totals over every finished run (`time_line`, `grid_time_line`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from upo.errors import Terminated, UPOError
from upo.eval.evaluate import REFERENCE, Evaluator
from upo.eval.phases import add_phases, format_phases
from upo.eval.scorers import build_preference_scorer
from upo.eval.tracking import SUPPORTED_TRACKERS, log_evaluation
from upo.experiments.frontier.config import (
    FrontierConfig,
    FrontierRun,
    check_inputs,
    run_dir,
    run_train_options,
    scorer_options,
    select_runs,
    settings_key,
)
from upo.experiments.frontier.report import one_line, write_report
from upo.experiments.frontier.results import collect_results
from upo.experiments.frontier.state import (
    EVAL_SUMMARY,
    REFERENCE_EVAL,
    REFERENCE_LOCK,
    RUN_OPTIONS,
    TRAIN_DONE,
    TRAIN_LOG,
    changed_defaults,
    evaluation_seconds,
    mark_train_done,
    read_eval_summary,
    run_lock_file,
    run_seconds,
    set_aside_finished,
    stored_evaluation,
    take_over,
    train_done,
    write_train_file,
)
from upo.files import atomic_write_json, exclusive_lock, try_lock
from upo.run_folder import TRAINER_STATE, read_trainer_state

_SHOWN_METRICS = (("epoch", "epoch {:.2f}"), ("loss", "loss {:.4g}"), ("loss/pref", "pref {:.4g}"),
                  ("loss/aux", "aux {:.4g}"), ("loss/value", "value {:.4g}"), ("rewards/margins", "margin {:+.3f}"),
                  ("rewards/accuracies", "acc {:.0%}"), ("perf/tokens_per_second", "{:.0f} tok/s"))


def metrics_line(entry: dict) -> str:
    """One entry of a trainer's `log_history` as one short line: epoch, losses, margin, accuracy, speed."""
    if "train_runtime" in entry:  # the summary transformers logs at the end of training
        return f"done in {entry['train_runtime']:.0f} s, mean loss {entry.get('train_loss', float('nan')):.4g}"
    return ", ".join(form.format(float(entry[key])) for key, form in _SHOWN_METRICS if key in entry)


def time_line(seconds: dict) -> str:
    """`training 412.3 s (steps 380.1 s), evaluation 21.0 s (load 0.7 s, generation 12.1 s, ...)` from
    `state.run_seconds` (or their sums over runs); what is not known is left out."""
    parts = []
    if "training" in seconds:
        steps = f" (steps {seconds['steps']:.1f} s)" if "steps" in seconds else ""
        parts.append(f"training {seconds['training']:.1f} s{steps}")
    if "evaluation" in seconds:
        phases = f" ({format_phases(seconds['phases'])})" if seconds.get("phases") else ""
        parts.append(f"evaluation {seconds['evaluation']:.1f} s{phases}")
    return ", ".join(parts) or "not recorded"


def grid_time_line(config: FrontierConfig) -> str:
    """The grid's time so far, summed over every finished run of the config (whichever process ran it): training,
    evaluation by phase, the evaluation's share, and the reference's evaluation (once per grid)."""
    total, runs = {}, 0
    for run in config.runs:
        seconds = run_seconds(run_dir(config, run.name))
        if not seconds:
            continue
        runs += 1
        for name in ("training", "steps", "evaluation"):
            if name in seconds:
                total[name] = total.get(name, 0.0) + seconds[name]
        total["phases"] = add_phases(total.get("phases", {}), seconds.get("phases"))
    line = f"{runs} run(s): {time_line(total)}"
    training, evaluation = total.get("training"), total.get("evaluation")
    if training is not None and evaluation is not None and training + evaluation > 0:  # 0.0 s on a tiny grid too
        line += f"; evaluation {evaluation / (training + evaluation):.0%} of the runs' time"
    reference = read_eval_summary(Path(config.output_dir) / REFERENCE_EVAL, settings_key(config)) or {}
    if isinstance((reference.get("summary") or {}).get("seconds"), (int, float)):
        line += f"; the reference's evaluation (once) {reference['summary']['seconds']:.1f} s"
    return line


def train_command(config: FrontierConfig, options_file: Path) -> list[str]:
    """The command that trains one run: `python -m upo.cli train --config run.yaml`; with the config's
    `accelerate_config`, `accelerate launch --config_file CONFIG [accelerate_args] -m upo.cli train --config
    run.yaml`, so that a run uses every process that config starts (all the GPUs of a node, say)."""
    train = ["-m", "upo.cli", "train", "--config", str(options_file)]
    if config.accelerate_config:
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config.accelerate_config)]
        return [*launch, *map(str, config.accelerate_args), *train]
    return [sys.executable, *train]


def train_run(config: FrontierConfig, run: FrontierRun, num_threads: int | None = None, log=print,
              poll_seconds: float = 2.0) -> None:
    """Trains one run in a child process (see the module docstring); each metrics log it writes is shown as one
    line. A failure raises `UPOError` with the end of `train.log`. What the run's folder already holds is never
    trained over (`state.set_aside_finished`, `state.take_over`). Stopped itself (Ctrl-C, SIGTERM), it stops the
    child first (`stop_process_group`), so no training goes on without it, holding the run's lock."""
    import yaml

    options = run_train_options(config, run)
    folder = Path(options["output_dir"])
    kept = set_aside_finished(folder)  # trained before with other options: kept, never overwritten
    if kept is not None and log is not None:
        log(f"    [{run.name}] its options changed: the run trained before is kept in {kept}")
    action, place = take_over(folder, options)
    if action == "adopt":  # this frontier trained it; it was stopped before it could say so
        if log is not None:
            log(f"    [{run.name}] its training had finished (its model is saved in {folder}): kept as it is")
        mark_train_done(folder, options, 0.0, read_trainer_state(folder))
        return
    if log is not None and action == "set aside":
        log(f"    [{run.name}] {folder} held a trained model or checkpoints that this frontier did not train with "
            f"these options: kept in {place}")
    if log is not None and action == "resume":
        log(f"    [{run.name}] resuming its interrupted training from {place}")
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (TRAIN_DONE, EVAL_SUMMARY, TRAINER_STATE):
        (folder / stale).unlink(missing_ok=True)
    written = {**options, "resume_from_checkpoint": str(place)} if action == "resume" else options
    (folder / RUN_OPTIONS).write_text(yaml.safe_dump(written, sort_keys=False))
    env = dict(os.environ)
    if num_threads:
        env["OMP_NUM_THREADS"] = str(num_threads)
    start = time.perf_counter()
    shown = 0
    with open(folder / TRAIN_LOG, "a" if action == "resume" else "w") as out:
        # Its own session: a signal for the frontier (Ctrl-C in its terminal, SIGTERM) is forwarded once, by the
        # frontier, to the child and whatever it started (accelerate's workers).
        process = subprocess.Popen(train_command(config, folder / RUN_OPTIONS), stdout=out, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
        try:
            while True:
                try:
                    rc = process.wait(timeout=poll_seconds)
                except subprocess.TimeoutExpired:
                    rc = None
                state = read_trainer_state(folder)
                history = (state or {}).get("log_history") or []
                for entry in history[shown:]:
                    if log is not None:
                        log(f"    [{run.name}] step {entry.get('step', '?')}/{state.get('max_steps', '?')}: "
                            f"{metrics_line(entry)}")
                shown = max(shown, len(history))
                if rc is not None:
                    break
        except BaseException as error:  # Ctrl-C, SIGTERM (upo.errors.Terminated), or anything else: stop the child
            stop_process_group(process, signal.SIGINT if isinstance(error, KeyboardInterrupt) and not isinstance(
                error, Terminated) else signal.SIGTERM)
            raise
    if rc != 0:
        tail = "".join((folder / TRAIN_LOG).read_text(errors="replace").splitlines(keepends=True)[-5:])
        raise UPOError(f"training run {run.name!r} failed (exit {rc}); the end of {folder / TRAIN_LOG}:\n{tail}")
    mark_train_done(folder, options, time.perf_counter() - start, read_trainer_state(folder))


def stop_process_group(process: subprocess.Popen, signal_number: int, grace: float = 60.0) -> int | None:
    """Send `signal_number` to `process` and every process of its group (started with `start_new_session`), wait up
    to `grace` seconds for them to end (the training process names its last checkpoint and releases its lock), then
    kill what is left. Returns the process's exit status."""
    group = process.pid
    try:
        os.killpg(group, signal_number)
    except (ProcessLookupError, PermissionError):
        return process.poll()
    deadline = time.monotonic() + grace
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    while time.monotonic() < deadline:  # its own children (accelerate's workers) may outlive it a moment
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return process.poll()
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)
    return process.wait()


def run_frontier(config: FrontierConfig, num_threads: int | None = None, progress: bool = True, evaluator=None,
                 log=print, only: Sequence[str] | None = None) -> dict:
    """Trains and evaluates every run not done yet (of `only`, when given), then writes the report of every
    finished run. Returns the results (`upo.experiments.frontier.results.collect_results`). The config was checked
    whole when it was loaded (`load_frontier_config`): every run's options parse as `upo train` parses them."""
    todo = select_runs(config, only)
    check_inputs(config, todo)  # the data, the scorer, the packages: before anything trains
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_train_file(config)
    key = settings_key(config)
    t0 = time.perf_counter()

    def elapsed() -> str:
        return f"{(time.perf_counter() - t0) / 60:.1f} min"

    def get_evaluator():
        nonlocal evaluator
        if evaluator is None:
            evaluator = Evaluator(config.evaluation, config.model_name_or_path, progress=progress,
                                  scorer=preference_scorer(config))
        return evaluator

    reference = None

    def ensure_reference() -> dict:
        nonlocal reference
        if reference is None:
            # A second process waits, then reads it.
            with exclusive_lock(out / REFERENCE_LOCK, "Waiting for another process evaluating the reference..."):
                reference = read_eval_summary(out / REFERENCE_EVAL, key)
                if reference is None:
                    log(f"[frontier {elapsed()}] evaluating the reference model")
                    reference = stored_evaluation(get_evaluator().evaluate_reference(), key)
                    atomic_write_json(out / REFERENCE_EVAL, reference)
                    log(f"[frontier {elapsed()}] reference took: {time_line(evaluation_seconds(reference))}")
            log(f"[frontier {elapsed()}] reference: {one_line(reference['summary'])}")
        return reference

    for k, run in enumerate(todo, 1):
        folder = run_dir(config, run.name)
        with try_lock(run_lock_file(folder)) as locked:
            if not locked:
                log(f"[frontier {elapsed()}] run {k}/{len(todo)} {run.name}: another process has it, skipped")
                continue
            if not train_done(config, run):
                log(f"[frontier {elapsed()}] run {k}/{len(todo)} {run.name}: training ({run.options})")
                train_run(config, run, num_threads, log=log if progress else None)
            for name, (then, now) in changed_defaults(folder, run_train_options(config, run)).items():
                log(f"[frontier {elapsed()}] run {run.name}: trained with {name}={then!r}, whose default is now "
                    f"{now!r}; its results stand for {then!r}. To train it at the new default, set {name} in its "
                    f"options or move {folder} away.")
            if read_eval_summary(folder, key) is not None:  # the report rescores its designer columns
                log(f"[frontier {elapsed()}] run {k}/{len(todo)} {run.name}: evaluated earlier")
                continue
            ensure_reference()
            log(f"[frontier {elapsed()}] run {k}/{len(todo)} {run.name}: evaluating")
            ev = get_evaluator()
            ev.use_reference_record(reference)  # its replies and scores, for the win rate
            record = ev.evaluate(run.name, str(folder))
            summary = stored_evaluation(record, key)
            atomic_write_json(folder / EVAL_SUMMARY, summary)
            log(f"[frontier {elapsed()}] {run.name}: {one_line(summary['summary'])}")
            log(f"[frontier {elapsed()}] {run.name} took: {time_line(run_seconds(folder))}")
            log_run_evaluation(config, run, ev, record, folder)

    ensure_reference()
    results = collect_results(config)
    written = write_report(config, results)
    log(f"[frontier {elapsed()}] wrote {', '.join(str(p) for p in written)}")
    log(f"[frontier {elapsed()}] grid time, {grid_time_line(config)}")
    return results


def preference_scorer(config: FrontierConfig):
    """The grid's preference scorer: `eval.preference_scorer` (a `upo eval --preference_scorer` spec), with the
    scorer's options of the `eval:` section (`config.scorer_options`)."""
    return build_preference_scorer(scorer_options(config))


def log_run_evaluation(config: FrontierConfig, run: FrontierRun, evaluator, record: dict, folder: Path) -> None:
    """The run's evaluation (its summary and sample replies beside the reference's) in the run's tracker, under the
    run's own name (`report_to`, `run_name` of its options); TensorBoard writes beside the training logs."""
    options = run_train_options(config, run)
    trackers = [options["report_to"]] if isinstance(options["report_to"], str) else list(options["report_to"] or [])
    logged = [t for t in trackers if t in SUPPORTED_TRACKERS]  # the training logged to every one; its evaluation can
    if not logged:  # go to these
        return

    records = {REFERENCE: evaluator.evaluate_reference(), run.name: record}
    report = {"summaries": [r["summary"] for r in records.values() if "summary" in r],
              "per_prompt": evaluator.per_prompt(records)}
    log_evaluation(report, logged, options["run_name"], folder / "runs")
