"""One run at a time in an output_dir: a second run is refused naming the other run's process, before it loads
anything; a killed run leaves no lock behind; an output_dir that is a file or read-only is refused up front."""

import gc
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import make_pairs, private_mounts_available, tiny_config, tiny_model, tiny_training_flags, write_jsonl

from upo import UPOConfig, UPOTrainer
from upo.errors import ConfigError
from upo.training.run_lock import LOCK_FILE, OWNER_FILE, OutputDirInUseError, RunLock, read_owner

ROOT = Path(__file__).parents[2]
HOLD = ("import sys, time\nfrom upo.training.run_lock import RunLock\nRunLock(sys.argv[1]).acquire()\n"
        "print('held', flush=True)\ntime.sleep(600)\n")


def hold_in_another_process(folder: Path) -> subprocess.Popen:
    """A process that takes the run lock of `folder` and keeps it (until killed)."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout.readline().strip() == "held"
    return process


def config(folder: Path, **options) -> UPOConfig:
    return tiny_config(folder, max_steps=1, **options)


def test_a_second_run_is_refused_before_loading_anything_and_a_kill_leaves_no_lock(tmp_path, tokenizer, pairs,
                                                                                   capsys):
    run = tmp_path / "run"
    other = hold_in_another_process(run)
    try:
        owner = read_owner(run)
        assert owner["pid"] == other.pid and owner["host"] == socket.gethostname()
        # The data does not exist: the refusal comes first, before any data or model work.
        with pytest.raises(OutputDirInUseError, match=rf"output_dir {run} is in use by another run: pid {other.pid} on "
                           rf"{socket.gethostname()}, started .*Wait for it to finish, or choose another output_dir"):
            UPOTrainer(tiny_model(), args=config(run), train_dataset=str(tmp_path / "missing.jsonl"),
                       processing_class=tokenizer)
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()
    # The kill released the lock (the OS drops it with the process); only the note of the killed run is left.
    assert (run / OWNER_FILE).is_file()
    trainer = UPOTrainer(tiny_model(), args=config(run), train_dataset=pairs, processing_class=tokenizer)
    assert f"the previous run into {run} (pid {other.pid} on" in capsys.readouterr().err
    assert read_owner(run)["pid"] == os.getpid()
    trainer.train()
    del trainer
    gc.collect()  # the trainer's end releases the lock and removes its note
    assert not (run / OWNER_FILE).exists() and (run / LOCK_FILE).exists()
    RunLock(run).acquire().release()


def test_the_lock_is_shared_within_a_process_and_released_by_the_last_holder(tmp_path):
    first, second = RunLock(tmp_path / "run").acquire(), RunLock(tmp_path / "run").acquire()
    first.release()
    assert read_owner(tmp_path / "run")["pid"] == os.getpid()  # still held by the second
    second.release()
    assert read_owner(tmp_path / "run") is None
    other = hold_in_another_process(tmp_path / "run")  # free for another process now
    other.kill()
    other.wait()


def test_output_dir_that_is_a_file_is_refused_before_loading(tmp_path, tokenizer):
    path = tmp_path / "run"
    path.write_text("not a folder")
    with pytest.raises(ConfigError, match=rf"output_dir {path} is a file, not a folder: choose another output_dir"):
        UPOTrainer(tiny_model(), args=config(path), train_dataset=str(tmp_path / "missing.jsonl"),
                   processing_class=tokenizer)


@pytest.mark.skipif(os.geteuid() == 0 and not private_mounts_available(), reason="needs a read-only folder")
def test_read_only_output_dir_is_refused(tmp_path):
    """A read-only file system (mounted in a private namespace, as root ignores permission bits) or folder."""
    folder = tmp_path / "ro"
    folder.mkdir()
    check = ("import sys\nfrom upo.training.run_lock import RunLock\nfrom upo.errors import ConfigError\n"
             "try:\n    RunLock(sys.argv[1] + '/run').acquire()\nexcept ConfigError as e:\n    print(e)\n")
    if os.geteuid() == 0:
        command = ["unshare", "-rm", "sh", "-c", f'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && '
                   f'exec "{sys.executable}" -c "$2" "$1"', "sh", str(folder), check]
    else:
        folder.chmod(0o555)
        command = [sys.executable, "-c", check, str(folder)]
    out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert f"Cannot create output_dir {folder}/run: Read-only file system" in out.stdout or \
        f"Cannot create output_dir {folder}/run: Permission denied" in out.stdout, out.stdout + out.stderr


@pytest.mark.slow
def test_two_upo_train_commands_into_one_folder(tmp_path, tokenizer):
    """End to end: the second `upo train` exits 1 naming the first's process; the first finishes and saves."""
    model = tmp_path / "model"
    tiny_model().save_pretrained(model)
    tokenizer.save_pretrained(model)
    data = write_jsonl(tmp_path / "pairs.jsonl", make_pairs(64))
    flags = ["-m", "upo.cli", "train", "--model_name_or_path", str(model), "--dataset", str(data), "--output_dir",
             str(tmp_path / "out"), *tiny_training_flags(per_device_train_batch_size=2, num_train_epochs=3)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen([sys.executable, *flags], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    deadline = time.monotonic() + 120
    while read_owner(tmp_path / "out") is None:
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
        time.sleep(0.05)
    second = subprocess.run([sys.executable, *flags], env=env, capture_output=True, text=True)
    assert second.returncode == 1
    assert f"output_dir {tmp_path / 'out'} is in use by another run: pid {first.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out
    assert f"Saved the trained model to {tmp_path / 'out'}" in out
