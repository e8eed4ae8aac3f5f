"""The `upo` command: `upo train`, `upo score`, `upo env`.

Each command imports what it runs inside its own function (a command in its own module is imported only when run,
`_module_command`), so that `upo --help` answers at once instead of after seconds of importing torch, transformers
and datasets.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import traceback

from upo import __version__
from upo.errors import ConfigError, Terminated

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def _training_data(script_args, config):
    """The training and evaluation sources: local files (`dataset`, `eval_dataset`) or a dataset by name."""
    from upo.data.loading import HubDataset

    if script_args.dataset is not None and script_args.dataset_name is not None:
        raise ConfigError("Both dataset and dataset_name are set: give one (a local file, or a dataset by name).")
    if script_args.dataset_name is None:
        if script_args.dataset is None:
            raise ConfigError("No training data: pass --dataset PATH (a .jsonl/.json/.csv/.parquet file or a dataset "
                              "folder) or --dataset_name NAME (a dataset on the Hugging Face Hub, or a folder like "
                              "one).")
        return script_args.dataset, script_args.eval_dataset
    train = HubDataset(script_args.dataset_name, script_args.dataset_config, script_args.dataset_train_split)
    evaluation = script_args.eval_dataset
    if evaluation is None and config.eval_strategy != "no":  # TRL's rule: the test split when evaluating
        evaluation = HubDataset(script_args.dataset_name, script_args.dataset_config, script_args.dataset_test_split)
    return train, evaluation


def train(argv: list[str]) -> None:
    from upo.yaml_files import export_environment_of

    export_environment_of(argv)  # the recipe's env: (HF_HOME, ...), before the Hugging Face libraries read it
    from upo.options import read_train_options

    script_args, model_args, config = read_train_options(argv)
    train_data, eval_data = _training_data(script_args, config)
    from upo.trainer import UPOTrainer

    # As TRL's dpo script: the model options become from_pretrained's keyword arguments, the config's win.
    config.model_init_kwargs = model_args.model_init_kwargs(config.trust_remote_code, config.model_init_kwargs)
    trainer = UPOTrainer(
        model_args.model_name_or_path, args=config, train_dataset=train_data, eval_dataset=eval_data,
        peft_config=model_args.peft_config(), quantization_config=model_args.quantization_config(),
    )
    if script_args.ignore_bias_buffers:  # TRL's fix for DDP's "invalid scalar type" on boolean buffers
        import torch

        trainer.model._ddp_params_and_buffers_to_ignore = [
            name for name, buffer in trainer.model.named_buffers() if buffer.dtype == torch.bool]
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model(config.output_dir)
    metrics = trainer.evaluate() if eval_data is not None else None  # every process evaluates its share
    if trainer.is_world_process_zero():  # the command's answer, once however many processes run
        if metrics is not None:
            print(metrics)
        print(f"Saved the trained model to {config.output_dir}")


def score(argv: list[str]) -> None:
    from upo.data.loading import load_preference_pairs
    from upo.rewards import score_designer_rewards
    from upo.rewards.guard import DEFAULT_TIMEOUT
    from upo.rewards.report import format_reward_report, reward_report

    parser = argparse.ArgumentParser(
        prog="upo score",
        description="Scores both responses of every pair with each designer objective and tells whether the "
        "preference labels already encode it (how often chosen scores higher than rejected).",
    )
    parser.add_argument("dataset", help="A .jsonl/.json/.csv/.parquet file or a saved dataset folder.")
    parser.add_argument("--reward_funcs", nargs="+", required=True, help="Built-in names or dotted import paths.")
    parser.add_argument("--split", default="train")
    parser.add_argument("--reward_timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"Seconds one call of a reward function may take; default {DEFAULT_TIMEOUT:g}.")
    args = parser.parse_args(argv)
    dataset, report = load_preference_pairs(args.dataset, split=args.split)
    print(report.summary())
    extra = {c: dataset[c] for c in dataset.column_names if c not in ("prompt", "chosen", "rejected")}
    scores = score_designer_rewards(dataset["prompt"], dataset["chosen"], dataset["rejected"], args.reward_funcs,
                                    extra_columns=extra, timeout=args.reward_timeout)
    print(format_reward_report(reward_report(scores)))


def env(argv: list[str]) -> None:
    from upo.environment import report

    print("\n".join(report()))


def _module_command(module: str):
    """A subcommand whose code lives in its own module (`module.main(argv)`), imported only when run."""

    def run(argv: list[str]) -> None:
        import importlib

        importlib.import_module(module).main(argv)

    return run


COMMANDS = {
    "train": train, "score": score, "env": env,
    "data": _module_command("upo.experiments.chitchat"), "eval": _module_command("upo.eval.evaluate"),
    "frontier": _module_command("upo.experiments.frontier"), "demo": _module_command("upo.experiments.demo"),
}


@contextlib.contextmanager
def stopping_on_signals():
    """SIGTERM and SIGHUP raise `upo.errors.Terminated` in the command while it runs, so that a stop request is
    handled as Ctrl-C is (what was running named, a frontier's training process stopped and its locks released)
    instead of ending the process where it stands. The previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def stop(signal_number, frame):
        raise Terminated("", signal_number)

    previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["--version"], ["-V"]):
        print(f"upo {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: upo {train,score,eval,frontier,demo,data,env} ...\n\n"
              "  upo train --config run.yaml [--option value ...]   train with DPO / UPO / MODPO\n"
              "  upo score DATA --reward_funcs NAME [NAME ...]      do the labels already encode an objective?\n"
              "  upo eval --model RUN [RUN ...] --eval_data EVAL     generate on held-out prompts, score them\n"
              "  upo frontier --config frontier.yaml                train + evaluate a DPO / UPO / MODPO grid\n"
              "  upo demo                                           DPO vs UPO on SmolLM2, side by side\n"
              "  upo data chitchat [--out_dir DIR ...]              build the chit-chat preference set\n"
              "  upo env                                            versions and devices, for bug reports\n"
              "  upo --version")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    # The one boundary of every command: a known kind of failure (upo.failures) becomes one line naming the input
    # and the fix; anything else is a bug and keeps its traceback. argparse's own exits (--help, usage) pass through.
    try:
        with stopping_on_signals():
            COMMANDS[argv[0]](argv[1:])
    except SystemExit:
        raise
    except BaseException as error:  # noqa: B036 (Ctrl-C too: it gets a message and status 130, not a traceback)
        from upo.failures import BUG_NOTE, explain  # only when a command failed

        known = explain(error)
        if known is None:
            traceback.print_exc()
            print(f"upo {argv[0]}: {BUG_NOTE}", file=sys.stderr)
            return 1
        print(f"upo {argv[0]}: {known.message}", file=sys.stderr)
        return known.status
    return 0


if __name__ == "__main__":
    sys.exit(main())
