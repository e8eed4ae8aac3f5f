"""upo's log: the `upo` logger that the library's progress lines, notes and warnings go through.

Library modules take a child logger (`get_logger(__name__)`: `upo.trainer`, `upo.training.reference`, ...; a plain
`logging` logger, as transformers' `logging.get_logger` gives, without importing transformers for it). One handler on
the `upo` logger writes each message to the standard output of the moment (warnings and errors to stderr), as the
command line printed them before (no prefix on info lines; "Warning: " before a warning). The logger does not pass
its records on to the root logger, as transformers' own does not: configure it with `logging.getLogger("upo")` (a
handler of your own, `propagate = True`, a level).

The level follows the Trainer's options, as transformers sets its own (`TrainingArguments.get_process_log_level`):
`log_level` on the process that logs (the main one; each node's first with `log_on_each_node`), `log_level_replica`
on the others (default "warning": an info line is printed once however many processes run). "passive" keeps upo's
default, info, on the main process and warning elsewhere.

The command line's own answers (`upo eval`'s table, `upo frontier`'s report, `upo env`) are its output, not a log,
and stay on stdout through `print`.
"""

from __future__ import annotations

import logging
import sys

ROOT = "upo"
DEFAULT_LEVEL = logging.INFO


class _CurrentStdout(logging.StreamHandler):
    """A stream handler on whatever `sys.stdout` (info and below) or `sys.stderr` (warnings and errors) is when a
    record is written (a redirected or captured one too)."""

    def __init__(self):
        super().__init__(sys.stdout)
        self._level = logging.INFO

    def emit(self, record: logging.LogRecord) -> None:
        self._level = record.levelno
        super().emit(record)

    @property
    def stream(self):
        return sys.stderr if self._level >= logging.WARNING else sys.stdout

    @stream.setter
    def stream(self, value):
        pass


class _PlainFormatter(logging.Formatter):
    """The message alone; "Warning: " before a warning, "Error: " before an error."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"Error: {message}"
        if record.levelno >= logging.WARNING:
            return f"Warning: {message}"
        return message


def _root() -> logging.Logger:
    root = logging.getLogger(ROOT)
    if not any(isinstance(h, _CurrentStdout) for h in root.handlers):
        handler = _CurrentStdout()
        handler.setFormatter(_PlainFormatter())
        root.addHandler(handler)
        root.propagate = False
        if root.level == logging.NOTSET:
            root.setLevel(DEFAULT_LEVEL)
    return root


def get_logger(name: str) -> logging.Logger:
    """The logger of a upo module (`name` is its `__name__`, under `upo`)."""
    _root()
    return logging.getLogger(name)


def process_log_level(args) -> int:
    """The level of this process's upo log under `args` (a `TrainingArguments`); see the module docstring."""
    from transformers.training_args import trainer_log_levels

    logs = args.should_log
    level = trainer_log_levels[args.log_level if logs else args.log_level_replica]
    if level == -1:  # passive
        return DEFAULT_LEVEL if logs else logging.WARNING
    return level


def set_process_log_level(args) -> None:
    """Sets the upo log's level for this process from `args.log_level` / `args.log_level_replica`."""
    _root().setLevel(process_log_level(args))


def shows_progress(args) -> bool:
    """Whether upo's own progress bars show in this process: not with `disable_tqdm`, and on the main one only, as
    the Trainer's."""
    return not getattr(args, "disable_tqdm", False) and getattr(args, "process_index", 0) == 0
