"""User reward functions run under a guard: sys.exit, KeyboardInterrupt, exceptions and calls that never return
stop the run with the function and the rows named, and `upo train` exits non-zero (130 for Ctrl-C)."""

import signal
import threading
import time

import pytest
from helpers import make_pairs, tiny_model, write_jsonl

from upo.cli import main
from upo.errors import Interrupted, RewardFunctionError
from upo.rewards import score_designer_rewards
from upo.rewards.guard import UserFunctionRaised, UserFunctionTimeout, call_user_function


def score(func, timeout=None):
    return score_designer_rewards(["p", "q"], ["a", "b"], ["c", "d"], [func], show_progress=False, use_cache=False,
                                  timeout=timeout)


def test_sys_exit_in_a_reward_function_names_the_function_and_row():
    def quits_on_d(prompts, completions, **kwargs):
        if "d" in completions:
            raise SystemExit(0)
        return [1.0] * len(completions)

    with pytest.raises(RewardFunctionError, match=r"reward function 'quits_on_d' raised on row 1 \(the rejected "
                       r"response\): called sys.exit\(0\): a reward function must return its scores"):
        score(quits_on_d)


def test_keyboard_interrupt_in_a_reward_function_stops_as_an_interruption_naming_it():
    def interrupted(prompts, completions, **kwargs):
        raise KeyboardInterrupt

    with pytest.raises(Interrupted, match=r"while reward function 'interrupted' scored rows 0-1"):
        score(interrupted)


def test_reward_timeout_stops_a_call_that_never_returns():
    release = threading.Event()

    def hangs(prompts, completions, **kwargs):
        release.wait(60)
        return [0.0] * len(completions)

    start = time.perf_counter()
    try:
        with pytest.raises(RewardFunctionError, match=r"reward function 'hangs' did not return within "
                           r"reward_timeout=0.2 s on rows 0-1; upo stopped waiting for it"):
            score(hangs, timeout=0.2)
    finally:
        release.set()
    assert time.perf_counter() - start < 5


def test_the_guard_passes_values_through_and_a_column_may_be_called_timeout():
    def echo(prompts, completions, timeout, **kwargs):
        return [float(t) for t in timeout]

    assert call_user_function(echo, {"prompts": ["p"], "completions": ["c"], "timeout": [3]}, timeout=5) == [3.0]
    with pytest.raises(UserFunctionRaised, match="ZeroDivisionError"):
        call_user_function(lambda: 1 / 0, {})
    with pytest.raises(UserFunctionTimeout):
        call_user_function(lambda seconds: time.sleep(seconds), {"seconds": 1}, timeout=0.05)


def test_a_reward_value_too_large_for_a_float():
    def huge(prompts, completions, **kwargs):
        return [10 ** 400] * len(completions)

    with pytest.raises(RewardFunctionError, match=r"'huge' returned 10+ for row 0 \(the chosen response\): too large "
                       r"for a float"):
        score(huge)


@pytest.fixture
def cli_run(tmp_path, tokenizer, monkeypatch):
    """`upo train` in this process with the reward function `bad_rewards.<name>` from a module in tmp_path."""
    model = tmp_path / "model"
    tiny_model().save_pretrained(model)
    tokenizer.save_pretrained(model)
    data = write_jsonl(tmp_path / "pairs.jsonl", make_pairs(8))
    (tmp_path / "bad_rewards.py").write_text(
        "import sys\n"
        "def exits(prompts, completions, **kwargs):\n    sys.exit(0)\n"
        "def interrupted(prompts, completions, **kwargs):\n    raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def run(name):
        return main(["train", "--model_name_or_path", str(model), "--dataset", str(data), "--output_dir",
                     str(tmp_path / "out"), "--use_cpu", "true", "--report_to", "none", "--max_steps", "1",
                     "--reward_funcs", f"bad_rewards.{name}", "--disable_tqdm", "true"])

    return run


def test_upo_train_with_a_reward_function_that_exits_fails_with_status_1(cli_run, tmp_path, capsys):
    assert cli_run("exits") == 1  # it ended the run with 0 before, and no model: a script took it for success
    err = capsys.readouterr().err
    assert "upo train: error: reward function 'exits' raised on row 0 (the chosen response): called sys.exit(0)" in err
    assert "Traceback" not in err and not (tmp_path / "out" / "model.safetensors").exists()


def test_upo_train_interrupted_inside_a_reward_function_exits_130(cli_run, capsys):
    assert cli_run("interrupted") == 130
    err = capsys.readouterr().err
    assert "upo train: interrupted (Ctrl-C) while reward function 'interrupted' scored rows 0-7." in err
    assert "Traceback" not in err


def test_a_call_is_bounded_by_default_and_ctrl_c_while_waiting_names_the_function():
    """`reward_timeout` defaults to an hour (a function that never returns no longer hangs a run that did not set it);
    the call then runs in its own thread, and Ctrl-C while the run waits for it still names the function."""
    from upo import UPOConfig
    from upo.eval.settings import EvalSettings, ScorerArguments
    from upo.rewards.guard import DEFAULT_TIMEOUT

    assert UPOConfig(output_dir="unused").reward_timeout == DEFAULT_TIMEOUT == 3600
    assert EvalSettings().reward_timeout == ScorerArguments().scorer_timeout == DEFAULT_TIMEOUT
    release = threading.Event()

    def waits(prompts, completions, **kwargs):
        release.wait(30)
        return [0.0] * len(completions)

    # Python's own handler, even when the tests run in a shell's background job (which starts them ignoring SIGINT);
    # then a real SIGINT to the main thread, as a terminal's Ctrl-C reaches it (interrupt_main only sets a flag, which
    # a main thread already blocked in its wait would not see before the wait ended)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Timer(0.3, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)).start()
    try:
        with pytest.raises(Interrupted, match=r"while reward function 'waits' scored rows 0-1"):
            score(waits, timeout=DEFAULT_TIMEOUT)
    finally:
        release.set()
        signal.signal(signal.SIGINT, previous)
