"""Frontier grid benchmark: where the wall time of `upo frontier` goes, phase by phase, and against another checkout.

Runs a small grid end to end (`upo frontier` on a config written here: the shipped chit-chat task, SmolLM2-135M-Instruct
+ LoRA r=16, as examples/frontier_chitchat_seeds.yaml) in a fresh output folder and a fresh upo cache (the converted
model is shared, so reference log-probs and designer scores are computed as a new grid computes them), and splits
its wall time into phases: training (model load, data, designer rewards, reference log-probs, steps, saving, process
start-up) and evaluation (the reference once per grid, then each run: model loading, tokenisation, generation, KL,
implicit accuracy, designer objectives, preference scorer), plus the frontier's own time.

The phases are measured from outside the library: `bench/grid_trace/sitecustomize.py`, put on `PYTHONPATH`, wraps
named functions present in every version (`upo.models.load_causal_lm`, `transformers.Trainer.train`,
`upo.eval.generate.generate`, ...) in every process of the grid, the `upo train` processes included, and logs each
call; a call's own time is its duration less that of the wrapped calls inside it, and each second is counted once.
A function one version lacks is listed as missing. So `--checkout` measures another checkout (its own code and
.venv) on the same grid, alternating the two repetition by repetition, and prints the ratio per phase (this / other,
the median of the per-repetition ratios).

    python bench/grid.py --quick                                   # 32 pairs / 4 steps / 8 prompts, 2 runs, one rep
    python bench/grid.py --reps 3                                  # the project's size: 256 / 64 / 96, 2 runs
    python bench/grid.py --reps 3 --checkout /work/wt/base-66d2ec5 # side by side with that checkout
    python bench/grid.py --runs dpo modpo upo drov --workers 2     # 4 runs shared by two frontier processes
    python bench/grid.py --quick --profile Evaluator.evaluate      # also cProfile each run's evaluation

Threads: every process runs `--threads` torch threads (default 1: the project's grids run two frontier processes of
one thread each on 2 cores), through `--num_threads` and `OMP_NUM_THREADS`; the report gives what each process had.
With `--workers 2`, phase seconds are summed over both processes and shares are of their summed wall time.
Results: a table on stdout, and `bench/results/grid_<size>[_vs_<commit>].{json,md}`.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOOK_DIR = Path(__file__).resolve().parent / "grid_trace"
DATA = ROOT / "examples" / "data"
# Runs as the project's grids have them (examples/frontier_chitchat_seeds.yaml); upo also evaluates on held-out pairs
RUN_PRESETS = {
    "dpo": {"alpha": 0.0},
    "modpo": {"loss_type": ["modpo"], "modpo_weight": 0.5, "alpha": 0.0},
    "upo": {"alpha": 1.0, "aw_temperature": 1.0, "aux_normalization": "per_sequence",
            "eval_dataset": str(DATA / "chitchat_eval.jsonl"), "per_device_eval_batch_size": 16},
    "drov": {"loss_type": ["drov"], "alpha": 1.0},
    "rpo": {"loss_type": ["sigmoid", "sft"], "alpha": 0.0},
}
FRONTIER = "frontier"
CONVERSION = "once per machine"
TRAINING = "training (each run)"
EVAL_SETUP = "evaluation set-up (each frontier process)"
EVAL_REFERENCE = "evaluation of the reference (once per grid)"
EVAL_RUNS = "evaluation (each run)"
GROUPS = (CONVERSION, TRAINING, EVAL_SETUP, EVAL_REFERENCE, EVAL_RUNS, FRONTIER)
PER_RUN = (TRAINING, EVAL_RUNS)
# A call's own time, by its name, in a training process and in evaluation (the innermost wrapped call decides).
TRAIN_PHASES = {
    "load_causal_lm": "model load", "load_tokenizer": "model load", "prepare_models": "model load",
    "prepare_preference_data": "data: load, validate, tokenise", "tokenize_dataset": "data: load, validate, tokenise",
    "score_designer_rewards": "designer rewards", "add_reference_logps": "reference log-probs",
    "UPOTrainer.__init__": "trainer set-up (rest)", "Trainer.training_step": "steps: forward + backward",
    "Trainer.train": "steps: optimizer, batches, logging", "Trainer.evaluate": "held-out eval (Trainer.evaluate)",
    "Trainer.save_model": "saving",
}
EVAL_PHASES = {
    "load_model": "model load: rest", "load_causal_lm": "model load: base weights",
    "load_tokenizer": "model load: tokenizer", "PeftModel.from_pretrained": "model load: adapter",
    "BaseTuner.merge_and_unload": "model load: merge", "Evaluator.evaluate": "rest",
    "generate": "generate: batching, text decoding", "render_prompts": "tokenisation (chat template)",
    "GenerationMixin.generate": "generation (HF generate)", "reply_kl": "KL (reference forward)",
    "implicit_reward_accuracy": "implicit accuracy: policy forward",
    "score_objectives": "designer objectives", "Evaluator._evaluate": "summary, standardisation, rest",
    "SimilarityScorer.score_replies": "preference scorer", "HumanReplySimilarity.score": "preference scorer",
    "RewardModelScorer.score_replies": "preference scorer", "FunctionScorer.score_replies": "preference scorer",
    "PairwiseJudge.compare": "preference scorer",
    # under Evaluator.__init__ / preference_scorer
    "Evaluator.__init__": "rest", "load_eval_data": "data", "fit_designer_standardization": "designer standardisation",
    "score_designer_rewards": "designer standardisation", "preference_scorer": "preference scorer load",
    "HumanReplySimilarity.__init__": "preference scorer load",
}
IMPLICIT = {"add_reference_logps": "implicit accuracy: reference log-probs",
            "tokenize_dataset": "implicit accuracy: tokenisation"}
FRONTIER_PHASES = {"run_frontier": "locks, waiting, state, logs", "check_run_options": "config: load and check",
                   "load_frontier_config": "config: load and check",
                   "collect_results": "report", "write_report": "report", "log_run_evaluation": "tracker logging",
                   "train_run": "waiting on a training process"}


@dataclass
class Checkout:
    root: Path
    label: str

    @property
    def python(self) -> Path:
        return self.root / ".venv" / "bin" / "python"

    def describe(self) -> str:
        rev = subprocess.run(["git", "-C", str(self.root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(self.root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+changes" if dirty else "")


# ------------------------------------------------------------------------------------------------ the grid


def grid_config(args, out_dir: Path) -> dict:
    return {
        "output_dir": str(out_dir), "model_name_or_path": args.model,
        "dataset": str(DATA / "chitchat_train.jsonl"), "train_pairs": args.pairs,
        "eval_data": str(DATA / "chitchat_eval.jsonl"),
        "reward_funcs": ["readability", "non_offensive"], "reward_weights": [1.0, 1.0],
        "train": {"use_peft": True, "lora_r": 16, "lora_alpha": 32, "beta": 0.1, "learning_rate": 2.0e-4,
                  "max_steps": args.steps, "per_device_train_batch_size": 4, "max_length": 256,
                  "precompute_ref_log_probs": True, "precompute_ref_batch_size": 16,
                  "logging_steps": max(1, args.steps // 8), "use_cpu": True, "seed": 0},
        "eval": {"max_prompts": args.prompts, "max_new_tokens": args.new_tokens, "batch_size": args.eval_batch_size},
        "runs": [{"name": name, "options": RUN_PRESETS[name]} for name in args.runs],
    }


def environment(args, cache: Path, trace: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    threads = str(args.threads)
    env.update(PYTHONPATH=str(HOOK_DIR), UPO_BENCH_TRACE_DIR=str(trace), UPO_CACHE=str(cache),
               OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1")
    if args.profile:
        env["UPO_BENCH_PROFILE"] = args.profile
    return env


def prepare_model(checkout: Checkout, args, work: Path) -> dict:
    """The checkout's converted model, made (and timed) now: in the shared upo cache, or with `--measure_conversion`
    in a fresh one. Returns where it lies relative to the cache (linked into every repetition's fresh cache)."""
    shared = Path(os.environ.get("UPO_CACHE") or Path.home() / ".cache" / "upo").expanduser()
    cache = work / f"conversion-{checkout.label}" if args.measure_conversion else shared
    trace = work / f"conversion-trace-{checkout.label}"
    trace.mkdir(parents=True, exist_ok=True)
    code = ("import sys; from upo.models import resolve_model_path; "
            "print('MODEL=' + str(resolve_model_path(sys.argv[1])))")
    start = time.perf_counter()
    done = subprocess.run([str(checkout.python), "-c", code, args.model], cwd=checkout.root, capture_output=True,
                          text=True, env=environment(args, cache, trace))
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{checkout.root}: could not resolve the model {args.model!r}:\n{done.stderr[-2000:]}")
    path = Path(next(line[6:] for line in done.stdout.splitlines() if line.startswith("MODEL=")))
    calls = [c for p in read_trace(trace).values() for c in p["calls"] if c["name"] == "_convert_gguf"]
    out = {"path": str(path), "in_cache": None, "converted_s": sum(c["dur"] for c in calls) or None,
           "resolve_wall_s": round(wall, 2), "cache": str(cache)}
    try:
        out["in_cache"] = str(path.resolve().relative_to(cache.resolve()))
    except ValueError:  # a folder of the user's, outside the cache: nothing to link
        pass
    return out


def run_grid(checkout: Checkout, args, rep_dir: Path, model: dict) -> dict:
    """One grid of `checkout`, traced; returns its phases (see `attribute`)."""
    cache, trace, out = rep_dir / "cache", rep_dir / "trace", rep_dir / "out"
    for folder in (cache, trace, out):
        folder.mkdir(parents=True, exist_ok=True)
    if model["in_cache"]:
        link = cache / model["in_cache"]
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path(model["cache"]) / model["in_cache"], target_is_directory=True)
    config = rep_dir / "frontier.json"  # JSON is YAML: read by every version's read_frontier_yaml
    config.write_text(json.dumps(grid_config(args, out), indent=1))
    env = environment(args, cache, trace)
    command = [str(checkout.python), "-m", "upo.cli", "frontier", "--config", str(config),
               "--num_threads", str(args.threads)]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    workers = []
    for w in range(args.workers):
        log = open(rep_dir / f"frontier-{w}.log", "w")
        workers.append((subprocess.Popen(command, cwd=checkout.root, env=env, stdout=log, stderr=subprocess.STDOUT),
                        log, time.perf_counter()))
    walls = {}
    for w, (process, log, began) in enumerate(workers):
        rc = process.wait()
        walls[process.pid] = time.perf_counter() - began
        log.close()
        if rc != 0:
            tail = (rep_dir / f"frontier-{w}.log").read_text(errors="replace").splitlines()[-15:]
            sys.exit(f"{checkout.label}: `upo frontier` failed (exit {rc}) in {rep_dir}:\n" + "\n".join(tail))
    wall = time.perf_counter() - start
    result = attribute(read_trace(trace), walls)
    result.update(wall=wall, load_before=load_before, load_after=os.getloadavg()[0], runs=len(args.runs))
    if args.profile:
        result["profiles"] = sorted(str(p) for p in trace.glob("profile-*.prof"))
    return result


# ------------------------------------------------------------------------------------------- the phases


def read_trace(trace: Path) -> dict[int, dict]:
    """Per process id: its start and exit records, its calls, and the targets wrapped and missing."""
    processes = {}
    for file in sorted(trace.glob("trace-*.jsonl")):
        proc = {"start": None, "exit": None, "calls": [], "wrapped": [], "missing": {}}
        for line in file.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut by a kill
                continue
            event = record.get("event")
            if event in ("start", "exit"):
                proc[event] = record
            elif event == "call":
                proc["calls"].append(record)
        if proc["exit"] is not None:
            proc["wrapped"], proc["missing"] = proc["exit"]["wrapped"], proc["exit"]["missing"]
        processes[int(file.stem.split("-")[1])] = proc
    return processes


def own_times(calls: list[dict]) -> None:
    """Sets each call's `own` and `own_cpu` time (its duration, its CPU time, less its direct wrapped children's) and
    `chain` (the names of the wrapped calls it runs in, outermost first, then its own)."""
    for call in calls:
        call["own"], call["own_cpu"] = call["dur"], call["cpu"]
        call["chain"] = [name for name, _ in call["stack"]] + [call["name"]]
    last_at_depth: dict[tuple[int, int], dict] = {}
    for call in sorted(calls, key=lambda c: (c["p0"], -c["dur"])):
        depth = len(call["stack"])
        parent = last_at_depth.get((call["thread"], depth - 1)) if depth else None
        if parent is not None:
            parent["own"] -= call["dur"]
            parent["own_cpu"] -= call["cpu"]
        last_at_depth[(call["thread"], depth)] = call


def phase_of(call: dict, training: bool) -> tuple[str, str]:
    chain, name = call["chain"], call["name"]
    if "_convert_gguf" in chain:
        return CONVERSION, "model conversion (first use on a machine)"
    if training:
        return TRAINING, TRAIN_PHASES.get(name, name)
    tags = {n: t for n, t in call["stack"] + [[name, call["tag"]]]}
    if "Evaluator._evaluate" in tags or "Evaluator.evaluate" in tags:
        group = EVAL_REFERENCE if tags.get("Evaluator._evaluate") == "reference" else EVAL_RUNS
    elif "Evaluator.__init__" in tags or "preference_scorer" in tags:
        group = EVAL_SETUP
    elif "collect_results" in chain or "write_report" in chain:
        return FRONTIER, "report (results, rescoring, tables, plot)"
    else:
        return FRONTIER, FRONTIER_PHASES.get(name, name)
    if "implicit_reward_accuracy" in chain and name in IMPLICIT:
        return group, IMPLICIT[name]
    if group == EVAL_SETUP and "load_model" in chain:
        return group, "reference model load"
    return group, EVAL_PHASES.get(name, name)


def attribute(processes: dict[int, dict], walls: dict[int, float]) -> dict:
    """Wall and CPU seconds per (group, phase) over every process of one grid, each second once: a call's own time
    goes to its phase; a training process's time outside any wrapped call (interpreter start, imports, parsing,
    exit) is its parent's `train_run` time less the child's wrapped calls (CPU: the child's own CPU time less theirs);
    a frontier process's time outside `run_frontier` is its wall (`walls`, measured here) less that call."""
    phases: dict[str, dict[str, dict[str, float]]] = {g: {} for g in GROUPS}

    def add(group, phase, wall, cpu):
        entry = phases[group].setdefault(phase, {"wall": 0.0, "cpu": 0.0})
        entry["wall"] += wall
        entry["cpu"] += cpu

    def top_level(proc, key):
        return sum(c[key] for c in proc["calls"] if not c["stack"])

    info = {"threads": {}, "missing": set(), "steps": 0, "cpu_over_wall": {}, "max_rss_mb": {}}
    children: dict[int, list] = {}
    for pid, proc in processes.items():
        if proc["start"] is not None:
            children.setdefault(proc["start"]["ppid"], []).append(pid)
    for pid, proc in processes.items():
        argv = (proc["exit"] or proc["start"] or {}).get("argv") or []
        training = "train" in argv
        kind = "train" if training else FRONTIER if FRONTIER in argv else "other"
        info["missing"].update(f"{name} ({'; '.join(why)})" for name, why in proc["missing"].items())
        if proc["exit"]:
            info["threads"].setdefault(kind, set()).add(proc["exit"]["torch_threads"])
            info["max_rss_mb"][kind] = max(info["max_rss_mb"].get(kind, 0), proc["exit"]["max_rss_mb"])
        own_times(proc["calls"])
        for call in proc["calls"]:
            group, phase = phase_of(call, training)
            if kind == FRONTIER and call["name"] == "train_run":  # the child's own calls are counted in the child
                kids = [processes[k] for k in children.get(pid, ()) if processes[k]["start"] is not None
                        and call["t0"] <= processes[k]["start"]["t"] <= call["t0"] + call["dur"]]
                cpu = sum(k["exit"]["cpu_self"] - top_level(k, "cpu") for k in kids if k["exit"])
                add(TRAINING, "process: start, imports, parsing, exit",
                    call["own"] - sum(top_level(k, "dur") for k in kids), cpu)
                add(FRONTIER, "following a training process", 0.0, call["own_cpu"])
                continue
            add(group, phase, call["own"], call["own_cpu"])
            info["steps"] += call["name"] == "Trainer.training_step"
        if kind == FRONTIER and pid in walls:
            cpu = proc["exit"]["cpu_self"] - top_level(proc, "cpu") if proc["exit"] else 0.0
            add(FRONTIER, "process: start, imports, exit", walls[pid] - top_level(proc, "dur"), cpu)
            if proc["exit"]:
                total = proc["exit"]["cpu_self"] + proc["exit"]["cpu_children"]
                info["cpu_over_wall"][pid] = total / walls[pid]
    return {"phases": {g: p for g, p in phases.items() if p}, "worker_walls": list(walls.values()),
            "threads": {k: sorted(v, key=str) for k, v in info["threads"].items()},
            "missing": sorted(info["missing"]), "steps": info["steps"],
            "cpu_over_wall": [round(v, 3) for v in info["cpu_over_wall"].values()],
            "max_rss_mb": {k: round(v) for k, v in info["max_rss_mb"].items()}}


# ----------------------------------------------------------------------------------------------- report


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def phase_rows(grids: list[dict]) -> list[tuple[str, str]]:
    seen = {}
    for grid in grids:
        for group in GROUPS:
            for phase in grid["phases"].get(group, {}):
                seen.setdefault((group, phase), None)
    return sorted(seen, key=lambda gp: (GROUPS.index(gp[0]), gp[1]))


def seconds(grid: dict, group: str, phase: str | None, metric: str) -> float:
    part = grid["phases"].get(group, {})
    if phase is None:
        return sum(entry[metric] for entry in part.values())
    return part.get(phase, {}).get(metric, 0.0)


def total(grid: dict, metric: str) -> float:
    """All the grid's seconds: the frontier processes' summed wall time, or every process's CPU time."""
    if metric == "wall":
        return sum(grid["worker_walls"])
    return sum(seconds(grid, group, None, "cpu") for group in grid["phases"])


def fmt(value, form="{:.1f}") -> str:
    return "-" if value is None else form.format(value)


def table(this: list[dict], other: list[dict] | None, labels: tuple[str, str]) -> str:
    """The phases' median wall seconds, their shares of the frontier processes' summed wall time, per run where a
    phase happens once per run, and their CPU time's share of all CPU time (less moved by other jobs on the machine
    than wall time). With `other`: its wall seconds and the medians of the per-repetition ratios this / other of wall
    and CPU time."""
    rows = phase_rows(this + (other or []))
    head = ["group", "phase", f"{labels[0]} wall s", "share", "per run s", "CPU share"]
    if other:
        head += [f"{labels[1]} wall s", "share", "ratio wall", "ratio CPU"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cells(group, phase, grids):
        values = [seconds(g, group, phase, "wall") for g in grids]
        shares = [v / total(g, "wall") for v, g in zip(values, grids)]
        cpu = [seconds(g, group, phase, "cpu") / max(total(g, "cpu"), 1e-9) for g in grids]
        per_run = median([v / g["runs"] for v, g in zip(values, grids)]) if group in PER_RUN else None
        return median(values), median(shares), per_run, median(cpu)

    def ratio(group, phase, metric):
        pairs = [(seconds(a, group, phase, metric), seconds(b, group, phase, metric)) for a, b in zip(this, other)]
        return median([a / b for a, b in pairs if b > 0.05 and a > 0])

    for group in GROUPS:
        members = [(g, p) for g, p in rows if g == group]
        if not members:
            continue
        for g, phase in [*members, (group, None)]:
            value, share, per_run, cpu = cells(g, phase, this)
            row = [group if phase is None else "", phase or "**total**", fmt(value), fmt(share, "{:.1%}"),
                   fmt(per_run), fmt(cpu, "{:.1%}")]
            if other:
                o_value, o_share, _, _ = cells(g, phase, other)
                row += [fmt(o_value), fmt(o_share, "{:.1%}"), fmt(ratio(g, phase, "wall"), "{:.2f}"),
                        fmt(ratio(g, phase, "cpu"), "{:.2f}")]
            lines.append("| " + " | ".join(row) + " |")
    wall = ["", "**grid wall time**", fmt(median([g["wall"] for g in this])), "", "", ""]
    cpu = ["", "**CPU time, every process**", fmt(median([total(g, "cpu") for g in this])), "", "", ""]
    if other:
        wall += [fmt(median([g["wall"] for g in other])), "",
                 fmt(median([a["wall"] / b["wall"] for a, b in zip(this, other)]), "{:.2f}"), ""]
        cpu += [fmt(median([total(g, "cpu") for g in other])), "", "",
                fmt(median([total(a, "cpu") / total(b, "cpu") for a, b in zip(this, other)]), "{:.2f}")]
    lines += ["| " + " | ".join(wall) + " |", "| " + " | ".join(cpu) + " |"]
    return "\n".join(lines)


def profile_summary(paths: list[str], top: int = 30) -> str:
    """The cProfile statistics of every profiled call, merged: the functions with the most cumulative time."""
    if not paths:
        return ""
    import io

    out = io.StringIO()
    stats = pstats.Stats(*paths, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=Path, default=None,
                        help="Another checkout of the project (with its .venv: bash scripts/setup.sh there) to run "
                        "the same grid with, alternating repetition by repetition.")
    parser.add_argument("--project", type=Path, default=ROOT,
                        help="This side's checkout; default the one of this file.")
    parser.add_argument("--reps", type=int, default=1, help="Repetitions (each checkout once per repetition).")
    parser.add_argument("--pairs", type=int, default=256, help="Training pairs (the project's grids: 256).")
    parser.add_argument("--steps", type=int, default=64, help="Training steps of 4 pairs (the project's grids: 64).")
    parser.add_argument("--prompts", type=int, default=96, help="Held-out prompts (the project's grids: 96).")
    parser.add_argument("--new_tokens", type=int, default=24, help="Greedy new tokens per reply (the project: 24).")
    parser.add_argument("--eval_batch_size", type=int, default=32, help="Prompts per generation batch.")
    parser.add_argument("--quick", action="store_true", help="32 pairs / 4 steps / 8 prompts: a check that it works.")
    parser.add_argument("--runs", nargs="+", default=["dpo", "upo"], choices=sorted(RUN_PRESETS),
                        help="The grid's runs (as in examples/frontier_chitchat_seeds.yaml).")
    parser.add_argument("--workers", type=int, default=1, help="`upo frontier` processes sharing the grid.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every process.")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--measure_conversion", action="store_true",
                        help="Convert the default model into a fresh cache once per checkout, and report the time.")
    parser.add_argument("--profile", default=None, metavar="TARGET",
                        help="cProfile every call of this wrapped function (e.g. Evaluator.evaluate, "
                        "Evaluator._evaluate, GenerationMixin.generate) and print the merged statistics; the profiler "
                        "slows what it profiles, so that grid's phase times are not comparable.")
    parser.add_argument("--work_dir", type=Path, default=None, help="Where the grids run; default a temporary folder.")
    parser.add_argument("--keep", action="store_true", help="Keep the grids' folders (always with --profile).")
    parser.add_argument("--out", type=Path, default=None, help="Result file stem; default bench/results/grid_<size>.")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.steps, args.prompts = 32, 4, 8
    sides = [Checkout(args.project.resolve(), "this")]
    if args.checkout is not None:
        sides.append(Checkout(args.checkout.resolve(), "other"))
    for side in sides:
        if not side.python.is_file():
            sys.exit(f"{side.root} has no .venv: run `bash scripts/setup.sh` there first.")
    revisions = {side.label: side.describe() for side in sides}
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="upo-grid-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    size = f"{args.pairs}p_{args.steps}s_{args.prompts}q_{args.new_tokens}t_{len(args.runs)}r_{args.workers}w"
    print(f"Grid: {len(args.runs)} runs ({' '.join(args.runs)}), {args.pairs} pairs, {args.steps} steps, "
          f"{args.prompts} prompts x {args.new_tokens} greedy tokens; {args.workers} frontier process(es) of "
          f"{args.threads} torch thread(s); {args.reps} repetition(s). " +
          "; ".join(f"{s.label}: {s.root} at {revisions[s.label]}" for s in sides) + f". Work in {work}.", flush=True)
    models = {side.label: prepare_model(side, args, work) for side in sides}
    for label, model in models.items():
        if model["converted_s"]:
            print(f"  {label}: converted the model in {model['converted_s']:.1f} s (once per machine)", flush=True)
    results = {side.label: [] for side in sides}
    for rep in range(args.reps):
        order = sides if rep % 2 == 0 else sides[::-1]  # alternated, so that a drift in load falls on both
        for side in order:
            rep_dir = work / f"{side.label}-rep{rep}"
            grid = run_grid(side, args, rep_dir, models[side.label])
            results[side.label].append(grid)
            print(f"  rep {rep} {side.label}: {grid['wall']:.1f} s (cpu/wall {grid['cpu_over_wall']}, load "
                  f"{grid['load_before']:.1f} -> {grid['load_after']:.1f})", flush=True)
            if not (args.keep or args.profile):
                shutil.rmtree(rep_dir, ignore_errors=True)
    this, other = results["this"], results.get("other")
    labels = (f"this ({revisions['this']})", f"other ({revisions.get('other')})")
    report = [table(this, other, labels), ""]
    for side in sides:
        grids = results[side.label]
        report.append(f"{side.label}: torch threads per process {grids[0]['threads']}; training steps "
                      f"{grids[0]['steps']}; peak RSS MB {grids[0]['max_rss_mb']}; cpu/wall of the frontier "
                      f"processes (with their children) per rep {[g['cpu_over_wall'] for g in grids]} (below 1: "
                      "waiting for a core or disk).")
        if models[side.label]["converted_s"]:
            report.append(f"{side.label}: model conversion {models[side.label]['converted_s']:.1f} s (once per "
                          "machine).")
        missing = sorted({m for g in grids for m in g["missing"]})
        if missing:
            report.append(f"{side.label}: not in this version, not measured: " + "; ".join(missing))
    text = "\n".join(report)
    print("\n" + text)
    if args.profile:
        summary = profile_summary([p for g in this for p in g.get("profiles", [])])
        print(summary)
    stem = args.out or ROOT / "bench" / "results" / (f"grid_{size}" + (f"_vs_{revisions['other']}" if other else ""))
    stem.parent.mkdir(parents=True, exist_ok=True)
    header = (f"Grid: {len(args.runs)} runs ({' '.join(args.runs)}), {args.pairs} pairs / {args.steps} steps / "
              f"{args.prompts} prompts x {args.new_tokens} tokens, {args.workers} process(es) x {args.threads} "
              f"thread(s), {args.reps} rep(s); medians.\n\n")
    Path(f"{stem}.md").write_text(header + text + "\n")
    Path(f"{stem}.json").write_text(json.dumps({
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "revisions": revisions, "models": models, "config": grid_config(args, Path("OUT")),
        "cpu_count": os.cpu_count(), "results": results}, indent=1, default=str))
    print(f"Wrote {stem}.md and {stem}.json")


if __name__ == "__main__":
    main()
