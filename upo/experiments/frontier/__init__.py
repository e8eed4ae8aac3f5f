"""`upo frontier`: train and evaluate a grid of DPO / UPO / MODPO runs with the same data, budget and seed.

Each module takes the config as `load_frontier_config` reads it, a `FrontierConfig`; each imports only the ones
above it in this list:

* `intervals`: the intervals over seeds and prompts of every difference the report shows, and the two one-sided
  tests of equal preference;
* `fronts`: each family's front, the designer gain read off it at DPO's preference, domination by a front, and the
  area a front dominates;
* `target`: the target a config declares (`target:`, none by default) and the one rule that judges it;
* `config`: the frontier YAML read and checked whole into a `FrontierConfig` (its runs, once per seed with `seeds`),
  and the keys that make a result stale;
* `state`: what the frontier leaves on disk, and how finished work is told from stale or interrupted work;
* `results`: summaries of the finished runs, each config run over its seeds against DPO, the fronts, the target;
* `report`: `frontier.json`, `frontier.md`, `frontier.png`, `frontier.html`;
* `runner`: trains each run in its own process (following its `trainer_state.json`) and evaluates it.

Resumable: a run whose `train_done.json` matches its options is not trained again, one whose `eval_summary.json`
matches the evaluation settings is not evaluated again; a run that a kill interrupted is trained again from the
start. Several `upo frontier` processes on the same config share the grid, on one machine or on several machines
that see the same output folder (docs/SCALING.md).
"""

from __future__ import annotations

import argparse

from upo.errors import ConfigError
from upo.experiments.frontier.config import (
    FrontierConfig,
    FrontierRun,
    load_frontier_config,
    run_dir,
    run_family,
    run_train_options,
    select_runs,
    settings_key,
    train_key,
)
from upo.experiments.frontier.fronts import pareto_front
from upo.experiments.frontier.report import format_report, plot_frontier, write_report
from upo.experiments.frontier.results import collect_results
from upo.experiments.frontier.runner import metrics_line, run_frontier, train_command, train_run
from upo.experiments.frontier.state import (
    EVAL_SUMMARY,
    REFERENCE_EVAL,
    TRAIN_DONE,
    read_eval_summary,
    run_lock_file,
    train_done,
    write_train_file,
)
from upo.threads import choose_num_threads

__all__ = [
    "EVAL_SUMMARY", "REFERENCE_EVAL", "TRAIN_DONE", "FrontierConfig", "FrontierRun", "collect_results",
    "format_report", "load_frontier_config", "main", "metrics_line", "pareto_front", "plot_frontier",
    "read_eval_summary", "run_dir", "run_family", "run_frontier", "run_lock_file", "run_train_options", "select_runs",
    "settings_key", "train_command", "train_done", "train_key", "train_run", "write_report",
    "write_train_file",
]


def main(argv: list[str]) -> None:
    """`upo frontier --config examples/frontier_chitchat.yaml [--output_dir DIR] [--report_only]`."""
    parser = argparse.ArgumentParser(prog="upo frontier", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="A frontier YAML (see examples/frontier_chitchat.yaml).")
    parser.add_argument("--output_dir", default=None, help="Overrides the config's output_dir.")
    parser.add_argument("--only", nargs="+", default=None,
                        help="Run only these runs of the config: by name (upo), or one seed of a run (upo-s1).")
    parser.add_argument("--report_only", action="store_true", help="Write the table and plot from finished runs.")
    parser.add_argument("--accelerate_config", default=None,
                        help="Launch each run with `accelerate launch --config_file` this file (overrides the config's "
                        "accelerate_config): a run uses every process it starts, e.g. all GPUs of this node.")
    parser.add_argument("--accelerate_args", default=None,
                        help="More `accelerate launch` flags for each run, as one string (overrides the config's "
                        "accelerate_args), e.g. '--num_processes 8 --main_process_port 0'.")
    parser.add_argument("--num_threads", default="auto",
                        help="torch CPU threads, here and in each training process: a number, or 'auto' (1 when "
                        "other processes keep the CPU busy, where more threads are much slower).")
    args = parser.parse_args(argv)
    overrides = {"output_dir": args.output_dir} if args.output_dir else {}
    overrides.update({key: getattr(args, key) for key in ("accelerate_config", "accelerate_args")
                      if getattr(args, key) is not None})
    config = load_frontier_config(args.config, **overrides)

    threads = choose_num_threads(args.num_threads)
    if args.report_only and args.only:
        raise ConfigError("--report_only writes the report of every finished run and --only chooses runs to train: "
                          "give one or the other.")
    if args.report_only:
        results = collect_results(config)
        write_report(config, results)
        print(format_report(results))
        return
    results = run_frontier(config, threads, only=args.only)
    print(format_report(results))
