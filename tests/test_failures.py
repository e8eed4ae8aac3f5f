"""The boundary of every command (upo.cli.main with upo.failures.explain): a known kind of failure is one line and
status 1 (130 for Ctrl-C), told apart from a bug by its type; a bug keeps its full traceback and asks for a report."""

import errno

import pytest

from upo import cli
from upo.errors import DataError, Interrupted
from upo.failures import BUG_NOTE, INTERRUPTED_STATUS, explain


@pytest.mark.parametrize("error, message, status", [
    (DataError("pairs.jsonl, line 3: not valid JSON"), "error: pairs.jsonl, line 3: not valid JSON", 1),
    (OSError(errno.ENOSPC, "No space left on device", "runs/x/trainer_state.json"),
     "error: No space left on device: runs/x/trainer_state.json (the disk is full: free some space", 1),
    (PermissionError(errno.EACCES, "Permission denied", "/data/pairs.jsonl"),
     "error: Permission denied: /data/pairs.jsonl (permission denied", 1),
    (OSError("Can't load the configuration of 'x'.\nCheck the path."), "error: Can't load the configuration of 'x'. "
                                                                       "Check the path.", 1),
    (MemoryError(), "error: out of memory. Lower per_device_train_batch_size", 1),
    (KeyboardInterrupt(), "interrupted (Ctrl-C).", INTERRUPTED_STATUS),
    (Interrupted("while reward function 'r' scored rows 0-3"),
     "interrupted (Ctrl-C) while reward function 'r' scored rows 0-3.", INTERRUPTED_STATUS),
], ids=["upo-error", "full-disk", "permission", "library-oserror", "memory", "ctrl-c", "ctrl-c-named"])
def test_known_failures_are_one_line(error, message, status):
    known = explain(error)
    assert known.message.startswith(message) and "\n" not in known.message and known.status == status


@pytest.mark.parametrize("error", [KeyError("prompt"), TypeError("unsupported operand"), IndexError("list index"),
                                   AttributeError("'NoneType' object has no attribute 'x'"), RuntimeError("CUDA")])
def test_anything_else_is_a_bug(error):
    assert explain(error) is None


def test_a_bug_keeps_its_traceback_and_asks_for_a_report(monkeypatch, capsys):
    def buggy(argv):
        return {}["missing"]

    monkeypatch.setitem(cli.COMMANDS, "score", buggy)
    assert cli.main(["score"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "KeyError: 'missing'" in err
    assert err.rstrip().endswith(f"upo score: {BUG_NOTE}")


def test_ctrl_c_anywhere_in_a_command_exits_130(monkeypatch, capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "score", interrupted)
    assert cli.main(["score"]) == 130
    assert capsys.readouterr().err == "upo score: interrupted (Ctrl-C).\n"


def test_sigterm_in_a_command_is_a_stop_with_its_status_and_the_handler_is_restored(monkeypatch, capsys):
    """SIGTERM (a `kill`, a scheduler) is handled as Ctrl-C is: the command stops where it stands with what was
    running named (upo.errors.Terminated), status 143, instead of the process vanishing mid-write."""
    import os
    import signal
    import time

    from upo.errors import Terminated

    def killed(argv):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal's handler raises here
        raise AssertionError("not stopped")

    monkeypatch.setitem(cli.COMMANDS, "score", killed)
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["score"]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err == "upo score: stopped by SIGTERM.\n"
    assert signal.getsignal(signal.SIGTERM) is before
    assert explain(Terminated("during training at step 3 of runs/x", signal.SIGHUP)).message == (
        "stopped by SIGHUP during training at step 3 of runs/x.")
