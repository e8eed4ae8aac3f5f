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


def test_step_breakdown_accounts_for_the_whole_step():
    out = run("bench/step_time.py", "--smoke", "--breakdown", "--tokenizer", TOKENIZER, "--candidates", "upo_dpo")
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| ") and line.endswith("% |")]
    parts = {row[0][2:]: float(row[1].rstrip("%")) for row in rows}
    assert {"weight matmuls (the model's own)", "LM head matmuls", "optimizer step (AdamW)",
            "log-softmax over the vocabulary"} <= set(parts)
    if parts["rest (norms, activations, copies, autograd, Python)"] > 0:  # 0 only if the profiled parts overran
        assert abs(sum(parts.values()) - 100) < 0.5
    assert "reach" in out and "of the peak (the bound)" in out


def test_padding_counts():
    out = run("bench/padding.py", "--tokenizer", TOKENIZER, "--batches", "3")
    assert "| padding_free |" in out and "| 0.0% |" in out


def test_reward_throughput_smoke():
    assert "| readability |" in run("bench/reward_throughput.py", "--texts", "50", "--reps", "1")
