"""`upo env` and `upo --version`: what a bug report needs, the GPU stack beside upo included. (Its CUDA lines run
on a GPU machine: scripts/gpu_check.sh starts with `upo env`.)"""

import sys
from importlib.metadata import version

import torch

from upo import UPOConfig
from upo.cli import main
from upo.environment import GPU_STACK, report


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == "upo 0.1.0\n"


def test_env_lists_the_stack_the_gpu_packages_present_and_the_devices(tmp_path, monkeypatch, capsys):
    # A distribution's metadata is all importlib.metadata reads: bitsandbytes "installed" in a folder on sys.path.
    dist = tmp_path / "bitsandbytes-0.49.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bitsandbytes\nVersion: 0.49.0\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    lines = report()
    assert lines[0] == "upo 0.1.0" and f"transformers {version('transformers')}" in lines
    assert f"filelock {version('filelock')}" in lines
    assert "bitsandbytes 0.49.0" in lines
    absent = next(line for line in lines if line.startswith("not installed: "))
    assert "bitsandbytes" not in absent and all(n in absent for n in GPU_STACK if n != "bitsandbytes")
    build = next(i for i, line in enumerate(lines) if line.startswith("torch build: "))
    if torch.version.cuda:
        assert lines[build].startswith(f"torch build: cuda {torch.version.cuda}; threads: ")
    elif not getattr(torch.version, "hip", None):
        assert lines[build].startswith("torch build: cpu only; threads: ")
    devices = lines[build + 1:]
    if torch.cuda.is_available():  # a GPU machine: one line per device, then bf16's support
        assert [d.split()[0] for d in devices[:-1]] == [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        assert devices[-1].startswith("bf16 on the GPU: ")
    else:
        assert len(devices) == 1 and devices[0].startswith("cuda devices: none (torch.cuda.is_available() is False)")
    bf16 = UPOConfig(output_dir=str(tmp_path / "run"), report_to="none").bf16
    assert f"(upo's bf16 default: {'on' if bf16 else 'off'})" in devices[-1]  # what the config does here
    assert main(["env"]) == 0
    assert capsys.readouterr().out.splitlines() == lines
