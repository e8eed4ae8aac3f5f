"""The benchmarks run end to end (a couple of steps): the numbers themselves are measured outside CI."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = str(ROOT / "tests" / "fixtures" / "tiny_tokenizer")


def run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True, cwd=ROOT).stdout


def test_step_time_smoke():
    out = run("bench/step_time.py", "--smoke", "--tokenizer", TOKENIZER)
    for line in ("| trl_dpo |", "| upo_dpo |", "| upo_upo |", "tokens_per_s: upo_dpo / trl_dpo"):
        assert line in out


def test_padding_counts():
    out = run("bench/padding.py", "--tokenizer", TOKENIZER, "--batches", "3")
    assert "| padding_free |" in out and "| 0.0% |" in out


def test_reward_throughput_smoke():
    assert "| readability |" in run("bench/reward_throughput.py", "--texts", "50", "--reps", "1")
