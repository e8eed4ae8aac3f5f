"""bench/grid.py's measurement: the tracing hook reaches a child process and wraps by name (a missing function is
reported, not raised), and the phases count every second of a grid once. The grid's numbers are measured outside CI."""

import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOOK_DIR = ROOT / "bench" / "grid_trace"
TOKENIZER = str(ROOT / "tests" / "fixtures" / "tiny_tokenizer")


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


grid = load("bench_grid", ROOT / "bench" / "grid.py")


def test_the_hook_times_a_wrapped_function_in_a_child_process(tmp_path):
    code = ("from transformers import AutoTokenizer\n"
            "from upo.eval.generate import render_prompts\n"  # bound by name after the hook wrapped it
            f"render_prompts(AutoTokenizer.from_pretrained({TOKENIZER!r}), ['hello there'])\n")
    env = {**os.environ, "PYTHONPATH": str(HOOK_DIR), "UPO_BENCH_TRACE_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env, capture_output=True)
    [process] = grid.read_trace(tmp_path).values()
    [call] = [c for c in process["calls"] if c["name"] == "render_prompts"]
    assert call["stack"] == [] and call["dur"] > 0 and not call["failed"]
    assert "render_prompts" in process["wrapped"] and process["missing"] == {}
    assert process["start"]["ppid"] == os.getpid() and process["exit"] is not None


def test_a_function_missing_in_a_version_is_reported_not_raised(tmp_path, monkeypatch):
    hook = load("grid_trace_hook", HOOK_DIR / "sitecustomize.py")  # UPO_BENCH_TRACE_DIR unset: nothing installed
    monkeypatch.setattr(hook, "TRACE_DIR", str(tmp_path))
    module = types.ModuleType("old_version")
    module.Evaluator = type("Evaluator", (), {"evaluate": lambda self: 1})
    module.load_model = json.loads  # a name imported from elsewhere is wrapped where it is defined, not here
    assert "has no generate" in hook._wrap_target(module, "generate", None)
    assert "no class Scorer" in hook._wrap_target(module, "Scorer.score", None)
    assert "has no Evaluator._evaluate" in hook._wrap_target(module, "Evaluator._evaluate", None)
    assert "imported from json" in hook._wrap_target(module, "load_model", None)
    assert hook._wrap_target(module, "Evaluator.evaluate", None) is None
    wrapped = module.Evaluator.evaluate
    assert wrapped(module.Evaluator()) == 1 and hook._wrap_target(module, "Evaluator.evaluate", None) is None
    assert module.Evaluator.evaluate is wrapped  # not wrapped twice
    [process] = grid.read_trace(tmp_path).values()
    assert [c["name"] for c in process["calls"]] == ["Evaluator.evaluate"]


def call(name, t0, dur, stack=(), tag=None, cpu=None):
    return {"event": "call", "name": name, "tag": tag, "stack": [list(s) for s in stack], "thread": 1, "t0": t0,
            "p0": t0, "dur": dur, "cpu": dur if cpu is None else cpu, "failed": False}


def write_trace(folder: Path, pid: int, ppid: int, argv: list[str], start: float, calls: list[dict], cpu: float):
    records = [{"event": "start", "pid": pid, "ppid": ppid, "t": start, "argv": argv}, *calls,
               {"event": "exit", "pid": pid, "argv": argv, "torch_threads": 1, "cpu_self": cpu, "cpu_children": 0.0,
                "max_rss_mb": 100.0, "wrapped": [], "missing": {}}]
    (folder / f"trace-{pid}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_every_second_of_a_grid_is_counted_once(tmp_path):
    frontier = [
        call("run_frontier", 1.0, 10.0),
        call("train_run", 1.0, 5.0, [("run_frontier", None)], tag="dpo", cpu=0.1),
        call("Evaluator.__init__", 6.0, 1.0, [("run_frontier", None)]),
        call("load_model", 6.0, 0.5, [("run_frontier", None), ("Evaluator.__init__", None)]),
        call("Evaluator._evaluate", 7.0, 1.0, [("run_frontier", None)], tag="reference"),
        call("Evaluator.evaluate", 8.0, 3.0, [("run_frontier", None)], tag="dpo"),
        call("load_model", 8.0, 1.0, [("run_frontier", None), ("Evaluator.evaluate", "dpo")]),
        call("Evaluator._evaluate", 9.0, 2.0, [("run_frontier", None), ("Evaluator.evaluate", "dpo")], tag="dpo"),
        call("generate", 9.0, 1.5, [("run_frontier", None), ("Evaluator.evaluate", "dpo"),
                                    ("Evaluator._evaluate", "dpo")]),
        call("GenerationMixin.generate", 9.0, 1.0, [("run_frontier", None), ("Evaluator.evaluate", "dpo"),
                                                    ("Evaluator._evaluate", "dpo"), ("generate", None)]),
    ]
    training = [call("UPOTrainer.__init__", 2.0, 1.0), call("Trainer.train", 3.0, 2.0),
                call("Trainer.training_step", 3.0, 1.5, [("Trainer.train", None)])]
    write_trace(tmp_path, 10, 1, ["cli.py", "frontier"], 0.5, frontier, cpu=12.0)
    write_trace(tmp_path, 11, 10, ["cli.py", "train", "--config", "x"], 1.2, training, cpu=3.5)
    result = grid.attribute(grid.read_trace(tmp_path), {10: 12.0})
    phases = result["phases"]
    assert sum(e["wall"] for p in phases.values() for e in p.values()) == 12.0  # the frontier process's wall time
    assert phases[grid.TRAINING]["process: start, imports, parsing, exit"]["wall"] == 5.0 - 3.0
    assert phases[grid.TRAINING]["process: start, imports, parsing, exit"]["cpu"] == 3.5 - 3.0
    assert phases[grid.TRAINING]["steps: forward + backward"]["wall"] == 1.5
    assert phases[grid.TRAINING]["steps: optimizer, batches, logging"]["wall"] == 0.5
    assert phases[grid.EVAL_SETUP]["reference model load"]["wall"] == 0.5
    assert phases[grid.EVAL_REFERENCE]["summary, standardisation, rest"]["wall"] == 1.0
    runs = phases[grid.EVAL_RUNS]
    assert runs["generation (HF generate)"]["wall"] == 1.0 and runs["generate: batching, text decoding"]["wall"] == 0.5
    assert runs["model load: rest"]["wall"] == 1.0 and runs["summary, standardisation, rest"]["wall"] == 0.5
    assert phases[grid.FRONTIER]["process: start, imports, exit"]["wall"] == 2.0
    assert phases[grid.FRONTIER]["locks, waiting, state, logs"]["wall"] == 10.0 - 5.0 - 1.0 - 1.0 - 3.0
    assert result["steps"] == 1 and result["threads"] == {"frontier": [1], "train": [1]}
