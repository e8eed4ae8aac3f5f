"""Faults a long training job meets, end to end with real processes and real signals: a full disk, a kill during
reward scoring or reference precomputation, Ctrl-C during scoring or training, and a dataset that changes under a
cached reward score. Each ends with one line (or a documented, tested behaviour) and loses nothing already done."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import make_pairs, private_mounts_available, tiny_model, tiny_training_flags, write_jsonl

from upo.rewards import score_designer_rewards
from upo.training.checkpointing import MARKER_FILE, last_complete_checkpoint
from upo.training.run_lock import read_owner

ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
SLOW_REWARDS = """import os, time
def slow(prompts, completions, **kwargs):
    open(os.environ["UPO_TEST_MARKER"], "w").close()
    time.sleep(120)
    return [0.0] * len(completions)
"""


@pytest.fixture
def workspace(tmp_path, tokenizer):
    model = tmp_path / "model"
    tiny_model().save_pretrained(model)
    tokenizer.save_pretrained(model)
    data = write_jsonl(tmp_path / "pairs.jsonl", make_pairs(16))
    (tmp_path / "slow_rewards.py").write_text(SLOW_REWARDS)
    return {"model": model, "data": data, "out": tmp_path / "out", "marker": tmp_path / "marker",
            "env": {**ENV, "UPO_TEST_MARKER": str(tmp_path / "marker"), "UPO_CACHE": str(tmp_path / "cache")}}


def upo_train(w, *flags, max_steps=8):
    return [sys.executable, "-m", "upo.cli", "train", "--model_name_or_path", str(w["model"]), "--dataset",
            str(w["data"]), "--output_dir", str(w["out"]), *tiny_training_flags(max_steps=max_steps), *flags]


def start(w, command, cwd) -> subprocess.Popen:
    # Ctrl-C as in a terminal: a shell's background job starts with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt, so the child gets the default disposition back.
    return subprocess.Popen(command, cwd=cwd, env=w["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(predicate, process, timeout=300):
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the run ended (rc={process.returncode}) first:\n{out[-2000:]}\n{err[-3000:]}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_a_dataset_that_changes_under_a_cached_score_is_scored_again(tmp_path):
    """The cache key is the data's content: an edited row (or a new column the function reads) is never served a
    stale score, and the unchanged data is served from the cache without a call."""
    calls = []

    def words(prompts, completions, **kwargs):
        calls.append(len(completions))
        return [float(len(c.split())) for c in completions]

    def score(chosen, extra=None):
        return score_designer_rewards(["p", "q"], chosen, ["x y", "z"], [words], extra_columns=extra,
                                      cache_dir=tmp_path, show_progress=False)["words"]

    assert score(["a", "b c"]) == ([1.0, 2.0], [2.0, 1.0]) and len(calls) == 1
    assert score(["a", "b c"]) == ([1.0, 2.0], [2.0, 1.0]) and len(calls) == 1  # from the cache
    assert score(["a", "b c d"]) == ([1.0, 3.0], [2.0, 1.0]) and len(calls) == 2  # row 1 edited: scored again
    assert score(["a", "b c d"], {"topic": ["t", "u"]}) == ([1.0, 3.0], [2.0, 1.0]) and len(calls) == 3


@pytest.mark.slow
def test_ctrl_c_during_reward_scoring_then_a_kill_then_a_clean_run(workspace, tmp_path):
    w = workspace
    flags = ["--reward_funcs", "slow_rewards.slow"]
    # Ctrl-C while the reward function runs: status 130, one line naming the function and rows.
    process = start(w, upo_train(w, *flags), cwd=tmp_path)
    wait_for(w["marker"].exists, process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    print(last_line(err))
    assert last_line(err) == "upo train: interrupted (Ctrl-C) while reward function 'slow' scored rows 0-15."
    assert "Traceback" not in err
    # SIGKILL while it runs: no lock is left, no cache file was written, nothing half-written anywhere.
    w["marker"].unlink()
    process = start(w, upo_train(w, *flags), cwd=tmp_path)
    wait_for(w["marker"].exists, process)
    process.kill()
    process.wait()
    assert read_owner(w["out"])["pid"] == process.pid  # its note is left; its lock went with it
    leftovers = [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert leftovers == []
    # The next run takes the folder (naming the killed one), scores with a working function and trains.
    done = subprocess.run(upo_train(w, "--reward_funcs", "length"), cwd=tmp_path, env=w["env"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"the previous run into {w['out']} (pid {process.pid} on" in done.stderr
    assert (w["out"] / "model.safetensors").is_file() and read_owner(w["out"]) is None


KILL_IN_PRECOMPUTE = """
import sys, time
from pathlib import Path
from helpers import FIXTURES, make_pairs, tiny_model
from datasets import Dataset
from transformers import AutoTokenizer
from upo import UPOConfig, UPOTrainer
model = tiny_model()
def stall(*_):
    Path(sys.argv[2]).touch()
    time.sleep(120)
model.register_forward_hook(stall)
UPOTrainer(model, args=UPOConfig(output_dir=sys.argv[1], use_cpu=True, report_to="none", max_length=64,
           precompute_ref_log_probs=True, per_device_train_batch_size=4, max_steps=2),
           train_dataset=Dataset.from_list(make_pairs(16)),
           processing_class=AutoTokenizer.from_pretrained(FIXTURES / "tiny_tokenizer"))
"""


@pytest.mark.slow
def test_a_kill_during_reference_precomputation_leaves_nothing_half_written(workspace, tmp_path, tokenizer):
    from datasets import Dataset

    from upo import UPOConfig, UPOTrainer

    w = workspace
    process = start(w, [sys.executable, "-c", KILL_IN_PRECOMPUTE, str(w["out"]), str(w["marker"])], cwd=tmp_path)
    wait_for(w["marker"].exists, process)
    process.kill()
    process.wait()
    reference_cache = tmp_path / "cache" / "reference"
    assert [p.suffix for p in reference_cache.iterdir()] == [".lock"]  # the lock file alone: no partial cache
    # The same run again: the reference lock and the run lock are free, the log-probs are computed and cached.
    os.environ["UPO_CACHE"] = str(tmp_path / "cache")
    try:
        trainer = UPOTrainer(tiny_model(), args=UPOConfig(output_dir=str(w["out"]), use_cpu=True, report_to="none",
                                                          max_length=64, precompute_ref_log_probs=True,
                                                          per_device_train_batch_size=4, max_steps=2),
                             train_dataset=Dataset.from_list(make_pairs(16)), processing_class=tokenizer)
        trainer.train()
    finally:
        os.environ["UPO_CACHE"] = ENV.get("UPO_CACHE", "")
    assert sorted(p.suffix for p in reference_cache.iterdir()) == [".lock", ".safetensors"]


@pytest.mark.slow
def test_ctrl_c_during_training_names_the_checkpoint_to_resume_from(workspace, tmp_path):
    w = workspace
    flags = ["--save_strategy", "steps", "--save_steps", "2"]
    process = start(w, upo_train(w, *flags, max_steps=400), cwd=tmp_path)
    wait_for(lambda: (w["out"] / "checkpoint-4" / MARKER_FILE).exists(), process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    last = last_complete_checkpoint(w["out"])
    print(last_line(err))
    assert last_line(err).startswith("upo train: interrupted (Ctrl-C) during training at step ")
    assert f"the last complete checkpoint is {last}: resume with resume_from_checkpoint=True" in last_line(err)
    assert "Traceback" not in err and not (w["out"] / "model.safetensors").exists()
    steps = int(last.name.removeprefix("checkpoint-")) + 2
    resumed = subprocess.run(upo_train(w, *flags, "--resume_from_checkpoint", "true", max_steps=steps), cwd=tmp_path,
                             env=w["env"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (w["out"] / "model.safetensors").is_file()


FULL_DISK_DRIVER = """
import json, subprocess, sys
from upo.training.checkpointing import checkpoint_folders, incomplete_reason
disk, first, resume = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
failed = subprocess.run(first, capture_output=True, text=True)
left = [(p.name, incomplete_reason(p)) for p in checkpoint_folders(disk + "/run")]
subprocess.run(["mount", "-o", "remount,size=64m", disk], check=True)
resumed = subprocess.run(resume, capture_output=True, text=True)
print(json.dumps({"rc": [failed.returncode, resumed.returncode], "stderr": [failed.stderr, resumed.stderr],
                  "left": left, "final": sorted(p.name for p in checkpoint_folders(disk + "/run")),
                  "files": sorted(__import__("os").listdir(disk + "/run"))}))
"""


@pytest.mark.skipif(not private_mounts_available(), reason="needs a private mount namespace for a small full disk")
@pytest.mark.slow
def test_full_disk_during_a_checkpoint_save_then_resume(workspace, tmp_path):
    """A real ENOSPC: a 3 MiB tmpfs in a private mount namespace (`unshare -rm`) holds the output folder. The save
    that does not fit stops the run with one line; the complete checkpoint is kept and the interrupted one removed;
    once the disk is larger (remounted at 64 MiB), the run resumes and finishes."""
    w = workspace
    disk = tmp_path / "disk"
    disk.mkdir()
    w["out"] = disk / "run"
    flags = ["--save_strategy", "steps", "--save_steps", "2"]
    first, resume = upo_train(w, *flags), upo_train(w, *flags, "--resume_from_checkpoint", "true")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=3m tmpfs "$1" && shift && exec "$@"',
                           "sh", str(disk), sys.executable, "-c", FULL_DISK_DRIVER, str(disk), json.dumps(first),
                           json.dumps(resume)], cwd=tmp_path, env=w["env"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(report["left"], report["final"], last_line(report["stderr"][0]))
    assert report["rc"] == [1, 0], report["stderr"][0][-3000:] + report["stderr"][1][-3000:]
    error = last_line(report["stderr"][0])
    assert error.startswith("upo train: error: Could not write checkpoint ") and "No space left on device" in error
    assert "the last complete checkpoint is" in error and "resume with resume_from_checkpoint=True" in error
    assert "Traceback" not in report["stderr"][0]
    assert report["left"] and all(reason is None for _, reason in report["left"])  # the interrupted one was removed
    assert report["final"][-1] == "checkpoint-8" and "model.safetensors" in report["files"]
