"""Crash and resume: a SIGKILL mid-run (here, in the middle of a checkpoint save) loses nothing, and resuming
gives the same final weights as a run that was never interrupted. Checkpoints are marked complete only once
every file is written, so an interrupted save is never picked up."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import ddp_train
import pytest
import torch
from helpers import make_pairs, tiny_config, tiny_model, tiny_training_flags, write_jsonl
from safetensors.torch import load_file
from transformers.trainer_utils import get_last_checkpoint

from upo import UPOTrainer
from upo.errors import ConfigError
from upo.training.checkpointing import (
    MARKER_FILE,
    file_sha256,
    incomplete_reason,
    last_complete_checkpoint,
    resolve_resume_checkpoint,
)

ROOT = Path(__file__).parents[2]
RUN = ["--batch_size", "4", "--max_steps", "8", "--save_steps", "2", "--designer"]


def write_data(tmp_path):
    return write_jsonl(tmp_path / "pairs.jsonl", make_pairs(16))


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"training ended (rc={process.returncode}) before {path} appeared:\n"
                                 + process.stdout.read()[-3000:])
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.01)


def test_sigkill_during_a_save_then_resume_gives_the_same_final_weights(tmp_path, monkeypatch):
    data = write_data(tmp_path)
    monkeypatch.setenv("UPO_CACHE", str(tmp_path / "cache"))
    killed = tmp_path / "killed"
    # The save of step 6 stalls after the model file and before the optimizer, the trainer state and the marker.
    process = subprocess.Popen(
        [sys.executable, "tests/ddp_train.py", "--out", str(killed), "--data", str(data), *RUN, "--slow_save_at", "6"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        wait_for(killed / "run" / "checkpoint-6" / "model.safetensors", process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    run = killed / "run"
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert "no upo_checkpoint.json" in incomplete_reason(run / "checkpoint-6")
    assert get_last_checkpoint(str(run)).endswith("checkpoint-6")  # what plain transformers would resume from
    assert last_complete_checkpoint(run) == run / "checkpoint-4"
    with pytest.raises(ConfigError, match=r"checkpoint-6: not a complete upo checkpoint.*Resume from .*checkpoint-4"):
        resolve_resume_checkpoint(str(run / "checkpoint-6"), run)

    # A new run into the same folder is refused rather than overwriting it ...
    with pytest.raises(ConfigError, match="already holds a trained model or checkpoints"):
        UPOTrainer(tiny_model(), args=tiny_config(run),
                   train_dataset=str(data), processing_class=ddp_train.AutoTokenizer.from_pretrained(
                       ddp_train.FIXTURES / "tiny_tokenizer")).train()
    # ... resuming picks checkpoint-4, replaces the half-written checkpoint-6, and finishes.
    resumed = ddp_train.main(["--out", str(killed), "--data", str(data), *RUN, "--resume"])
    assert resumed.state.global_step == 8
    assert incomplete_reason(run / "checkpoint-6") is None
    ddp_train.main(["--out", str(tmp_path / "uninterrupted"), "--data", str(data), *RUN])

    a = load_file(killed / "final.safetensors")
    b = load_file(tmp_path / "uninterrupted" / "final.safetensors")
    difference = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"killed at step 6 mid-save, resumed from checkpoint-4: max weight difference {difference:.1e}")
    assert all(torch.equal(a[k], b[k]) for k in a), difference  # bit-exact, value head included
    assert "upo_value_head.linear.weight" in a


def flip_one_byte(path: Path) -> None:
    """Corrupt a file in place without changing its size, as a disk fault or a bad copy would."""
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_resume_true_takes_the_last_complete_checkpoint(tmp_path, tokenizer, pairs):
    args = tiny_config(tmp_path / "run", max_steps=4, save_strategy="steps", save_steps=2, save_total_limit=1)
    trainer = UPOTrainer(tiny_model(), args=args, train_dataset=pairs, processing_class=tokenizer)
    trainer.train()
    run = tmp_path / "run"
    assert [p.name for p in run.glob("checkpoint-*")] == ["checkpoint-4"]  # rotation kept the newest complete one
    marker = json.loads((run / "checkpoint-4" / MARKER_FILE).read_text())
    assert marker["global_step"] == 4 and "model.safetensors" in marker["files"] and "optimizer.pt" in marker["files"]
    assert marker["files"]["model.safetensors"]["sha256"] == file_sha256(run / "checkpoint-4" / "model.safetensors")

    # A leftover of a killed save with a higher step is skipped, as is a checkpoint whose file was cut short.
    shutil.copytree(run / "checkpoint-4", run / "checkpoint-6")
    (run / "checkpoint-6" / MARKER_FILE).unlink()
    assert resolve_resume_checkpoint(True, run) == str(run / "checkpoint-4")
    assert resolve_resume_checkpoint("last", run) == str(run / "checkpoint-4")  # as a CLI or YAML gives it
    shutil.copytree(run / "checkpoint-4", run / "checkpoint-8")
    with open(run / "checkpoint-8" / "optimizer.pt", "r+b") as f:
        f.truncate(100)
    assert "optimizer.pt has 100 bytes" in incomplete_reason(run / "checkpoint-8")
    assert resolve_resume_checkpoint(True, run) == str(run / "checkpoint-4")
    # A file whose bytes changed but not its size (a disk fault, a bad copy) is caught by its hash.
    shutil.copytree(run / "checkpoint-4", run / "checkpoint-10")
    flip_one_byte(run / "checkpoint-10" / "model.safetensors")
    assert "model.safetensors does not hold what was written (its sha256 changed" in incomplete_reason(
        run / "checkpoint-10")
    assert resolve_resume_checkpoint(True, run) == str(run / "checkpoint-4")
    with pytest.raises(ConfigError, match=r"Cannot resume from .*checkpoint-10: not a complete upo checkpoint, "
                       r"model.safetensors does not hold what was written.*Resume from .*checkpoint-4 instead"):
        resolve_resume_checkpoint(str(run / "checkpoint-10"), run)
    shutil.rmtree(run / "checkpoint-10")

    shutil.rmtree(run / "checkpoint-4")
    with pytest.raises(ConfigError,
                       match=r"no complete checkpoint in .*only incomplete ones \(checkpoint-6, checkpoint-8\)"):
        resolve_resume_checkpoint(True, run)
    with pytest.raises(ConfigError, match="not a folder"):
        resolve_resume_checkpoint(str(tmp_path / "nowhere"), run)


@pytest.mark.slow
def test_repeated_kills_at_random_moments_lose_nothing(tmp_path, monkeypatch):
    """Five SIGKILLs at random moments of one run (during steps, saves, rotation), each followed by a resume."""
    import random
    import threading

    data = write_data(tmp_path)
    monkeypatch.setenv("UPO_CACHE", str(tmp_path / "cache"))
    # Each kill comes at most 2 s into a run and a step takes at least 0.3 s, so five kills cannot reach step 40
    # however fast the machine is (a run that finished before its kill would leave nothing to kill).
    run_args = ["--batch_size", "2", "--max_steps", "40", "--save_steps", "2", "--designer", "--step_sleep", "0.3",
                "--option", "save_total_limit=2"]
    out = tmp_path / "killed"
    rng = random.Random(0)
    kills, steps_at_kill = 0, []
    while kills < 5:
        resume = ["--resume"] if last_complete_checkpoint(out / "run") else []
        process = subprocess.Popen([sys.executable, "tests/ddp_train.py", "--out", str(out), "--data", str(data),
                                    *run_args, *resume], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        training = threading.Event()
        threading.Thread(target=lambda p=process, e=training: [e.set() for line in p.stdout if "'loss'" in line],
                         daemon=True).start()
        assert training.wait(timeout=180), "training did not start"
        time.sleep(rng.uniform(0.5, 2.0))
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        steps_at_kill.append(getattr(last_complete_checkpoint(out / "run"), "name", None))
    ddp_train.main(["--out", str(out), "--data", str(data), *run_args, "--resume"])
    ddp_train.main(["--out", str(tmp_path / "uninterrupted"), "--data", str(data), *run_args])
    a, b = load_file(out / "final.safetensors"), load_file(tmp_path / "uninterrupted" / "final.safetensors")
    difference = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"{kills} kills (last complete checkpoint after each: {steps_at_kill}): "
          f"max weight difference {difference:.1e}")
    assert kills == 5
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_resumes_with_resume_from_checkpoint_true(tmp_path, tokenizer, capsys):
    from upo.cli import main

    model = tmp_path / "model"
    tiny_model().save_pretrained(model)
    tokenizer.save_pretrained(model)
    data = write_data(tmp_path)
    flags = ["train", "--model_name_or_path", str(model), "--dataset", str(data), "--output_dir", str(tmp_path / "out"),
             *tiny_training_flags(save_strategy="steps", save_steps=2)]
    assert main([*flags, "--max_steps", "2"]) == 0
    assert main([*flags, "--max_steps", "4", "--resume_from_checkpoint", "true"]) == 0
    state = json.loads((tmp_path / "out" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    # A checkpoint corrupted in place (same size) is refused with the reason, not loaded into a library traceback.
    flip_one_byte(tmp_path / "out" / "checkpoint-4" / "model.safetensors")
    assert main([*flags, "--max_steps", "6", "--resume_from_checkpoint", str(tmp_path / "out" / "checkpoint-4")]) == 1
    err = capsys.readouterr().err
    assert "checkpoint-4: not a complete upo checkpoint, model.safetensors does not hold what was written" in err
    assert "Resume from" in err and "checkpoint-2 instead" in err and "Traceback" not in err
