"""`upo frontier` loses and misreports nothing: every input checked before the first run trains, a trained model it
finds in a run's folder never trained over, and a stop request (SIGTERM, Ctrl-C) forwarded to its training process,
which names its checkpoint and releases the run's lock before the frontier exits."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from filelock import FileLock
from helpers import make_tiny_lm_dir, make_tiny_scorer_dir, write_chitchat_rows, write_jsonl

from upo.errors import ConfigError
from upo.experiments.frontier import TRAIN_DONE, load_frontier_config, run_dir, run_frontier, train_done
from upo.experiments.frontier.config import check_inputs
from upo.experiments.frontier.state import RUN_OPTIONS, run_seconds, take_over
from upo.training.run_lock import LOCK_FILE, OWNER_FILE

ROOT = Path(__file__).parents[2]


def grid_source(tmp_path, **changes) -> dict:
    """A real grid of two tiny runs (as tests/experiments/test_frontier.py's), as the mapping a YAML would hold."""
    source = {
        "output_dir": str(tmp_path / "frontier"),
        "model_name_or_path": str(make_tiny_lm_dir(tmp_path / "lm")),
        "dataset": str(write_chitchat_rows(tmp_path / "train.jsonl", 8, seed=1)),
        "eval_data": str(write_chitchat_rows(tmp_path / "eval.jsonl", 3, seed=2)),
        "reward_funcs": ["length:target_words=4"],
        "train": {"max_steps": 1, "per_device_train_batch_size": 2, "learning_rate": 1e-3, "use_cpu": True,
                  "max_length": 64, "logging_steps": 1, "disable_tqdm": True},
        "eval": {"max_new_tokens": 3, "batch_size": 3,
                 "preference_scorer_model": str(make_tiny_scorer_dir(tmp_path / "scorer"))},
        "runs": [{"name": "dpo", "options": {"alpha": 0.0}}, {"name": "upo", "options": {"alpha": 1.0}}],
    }
    return {**source, **changes}


def test_every_input_is_checked_before_the_first_run_trains(tmp_path):
    """A missing eval_data, a reward function and a scorer that cannot be imported, and a tracker that is not
    installed: all named at once, and nothing trained. Before, the first run trained and was evaluated first."""
    source = grid_source(tmp_path, eval_data=str(tmp_path / "missing.jsonl"), reward_funcs=["my_rewards.kind"],
                         eval={"preference_scorer": "function:my_scorers.prefers"},
                         train={"max_steps": 1, "use_cpu": True, "report_to": "none", "optim": "sgd",
                                "optim_args": "momentum=fast"})
    config = load_frontier_config(source)
    with pytest.raises(ConfigError) as error:
        run_frontier(config, progress=False, log=lambda line: None)
    lines = error.value.lines
    assert lines[0] == f"frontier config: {tmp_path / 'missing.jsonl'}: no such local file or folder. " + \
        lines[0].split(". ", 1)[1]
    assert lines[1].startswith("frontier config: reward function 'my_rewards.kind' could not be imported")
    assert lines[2].startswith("frontier config: reward function 'my_scorers.prefers' could not be imported")
    assert lines[3].startswith("frontier config: optim 'sgd' with optim_args 'momentum=fast': could not convert")
    assert len(lines) == 4  # the same problem of both runs is named once
    assert not (tmp_path / "frontier" / "runs").exists()


def test_the_similarity_scorer_needs_reference_answers_before_anything_trains(tmp_path):
    rows = [{"prompt": "Hi?", "chosen": "Hello.", "rejected": "No."}] * 2  # no human_reply column
    config = load_frontier_config(grid_source(tmp_path, eval_data=str(write_jsonl(tmp_path / "pairs.jsonl", rows))))
    with pytest.raises(ConfigError, match="reference answer, and 2 of 2 rows have none"):
        check_inputs(config)


def test_a_trained_model_found_in_a_runs_folder_is_kept_never_trained_over(tmp_path):
    """The folder of run `upo` holds a model another `upo train` wrote; the frontier trains its run and the model it
    found is kept whole in `upo.found-1`. Its own run, finished but not marked done, is adopted, not trained again."""
    config = load_frontier_config(grid_source(tmp_path, runs=[{"name": "upo", "options": {"alpha": 1.0}}]))
    found = run_dir(config, "upo")
    make_tiny_lm_dir(found, seed=3)
    (found / "upo_config.json").write_text("{}")
    before = {p.relative_to(found): p.read_bytes() for p in found.rglob("*") if p.is_file()}
    logs = []
    run_frontier(config, progress=True, log=logs.append)
    kept = found.with_name("upo.found-1")
    assert {p.relative_to(kept): p.read_bytes() for p in kept.rglob("*") if p.is_file()} == before
    assert any(f"did not train with these options: kept in {kept}" in line for line in logs), logs
    assert train_done(config, config.runs[0])

    # Stopped after the model was saved, before the run was marked done: the next frontier adopts it.
    (found / TRAIN_DONE).unlink()
    model = (found / "model.safetensors").read_bytes()
    logs.clear()
    run_frontier(config, progress=True, log=logs.append)
    assert any("its training had finished" in line for line in logs) and not any("step 1/1" in line for line in logs)
    assert (found / "model.safetensors").read_bytes() == model and train_done(config, config.runs[0])
    # Its training time is not known: the run's time gives its evaluation (and the trainer's steps) alone.
    assert "training" not in run_seconds(found) and "evaluation" in run_seconds(found)


def test_take_over_resumes_its_own_interrupted_run_from_a_complete_checkpoint(tmp_path):
    folder = tmp_path / "runs" / "upo"
    checkpoint = folder / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    from upo.training.checkpointing import write_completion_marker

    write_completion_marker(checkpoint, 2)
    options = {"alpha": 1.0, "output_dir": str(folder)}
    (folder / RUN_OPTIONS).write_text(yaml.safe_dump({**options, "resume_from_checkpoint": "x"}))
    assert take_over(folder, options) == ("resume", checkpoint)
    assert take_over(folder, {**options, "alpha": 2.0})[0] == "set aside"  # not its options: kept aside
    assert take_over(folder, options) == ("fresh", None)


def wait_for(condition, timeout: float, what: str, process=None):
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the frontier ended (rc={process.returncode}) before {what}:\n"
                                 + process.stdout.read()[-3000:])
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.2)


@pytest.mark.parametrize("stop, said", [(signal.SIGTERM, "stopped by SIGTERM"),
                                        (signal.SIGINT, "interrupted (Ctrl-C)")], ids=["sigterm", "ctrl-c"])
def test_a_stopped_frontier_stops_its_training_process_and_releases_the_locks(tmp_path, stop, said):
    """Before, SIGTERM ended `upo frontier` and left its training process running, holding the run's lock. Ctrl-C
    in a terminal reaches the frontier alone (its training process has its own session): it is forwarded once."""
    source = grid_source(tmp_path, runs=[{"name": "upo", "options": {"alpha": 1.0}}])
    source["train"] = {**source["train"], "max_steps": 100000, "save_strategy": "steps", "save_steps": 1}
    config_file = tmp_path / "frontier.yaml"
    config_file.write_text(yaml.safe_dump(source))
    run = Path(source["output_dir"]) / "runs" / "upo"
    # SIGINT as in a terminal, even when the tests run in a shell's background job (which starts them ignoring it)
    frontier = subprocess.Popen([sys.executable, "-m", "upo.cli", "frontier", "--config", str(config_file)],
                                cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    child = None
    try:
        wait_for(lambda: (run / "checkpoint-1" / "upo_checkpoint.json").is_file(), 240, "first checkpoint", frontier)
        child = json.loads((run / OWNER_FILE).read_text())["pid"]
        frontier.send_signal(stop)
        output, _ = frontier.communicate(timeout=300)  # a bound for a stuck frontier; its grace is 60 s
    finally:
        if frontier.poll() is None:  # the test failed: leave no 100000-step training behind (its own session)
            frontier.kill()
            if child is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child, signal.SIGKILL)
    assert frontier.returncode == 128 + stop, output[-2000:]
    assert f"upo frontier: {said}." in output
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # the training process is gone
    FileLock(str(run / LOCK_FILE)).acquire(timeout=0)  # the run's lock is free: a new run may take it
    FileLock(str(run.parent / ".upo.lock")).acquire(timeout=0)  # and so is the frontier's lock on the run
    log = (run / "train.log").read_text()
    assert f"upo train: {said} during training at step" in log and "the last complete checkpoint is" in log
