"""`upo frontier`: train and evaluate a grid of DPO / UPO / MODPO runs with the same data, budget and seed.

A frontier config (YAML) names the data, the designer objectives, the options shared by every run
(`train`: any `upo train` option), the evaluation (`eval`), and the runs, each a name and the options it
changes (`alpha`, `loss_type`, `modpo_weight`, `value_baseline`, `aw_temperature`, ...). See
`examples/frontier_chitchat.yaml`.

Each run trains with `upo train` in its own process (as a user would run it) into
`{output_dir}/runs/{name}`, then is evaluated by `upo.eval.evaluate` against the reference, which is
evaluated once. Resumable: a run whose `train_done.json` exists is not trained again, and one whose
`eval_summary.json` matches the current evaluation settings is not evaluated again; a run that a kill
interrupted is trained again from the start. Several `upo frontier` processes on the same config share the
grid: each run is locked while one process works on it, the others skip to the next.

Writes `frontier.json` (every summary and the options of every run), `frontier.md` (the table and the
target check) and `frontier.png` (preference score against designer score, Pareto front drawn, DPO marked).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from upo.files import atomic_write_json, atomic_write_text, exclusive_lock, try_lock

TRAIN_DONE = "train_done.json"
EVAL_SUMMARY = "eval_summary.json"
REFERENCE_EVAL = "reference_eval.json"


# --------------------------------------------------------------------------------------------- config


def load_frontier_config(path_or_dict) -> dict:
    from upo.errors import ConfigError

    if isinstance(path_or_dict, dict):
        config = dict(path_or_dict)
    else:
        import yaml

        with open(path_or_dict) as f:
            config = yaml.safe_load(f) or {}
    for key in ("output_dir", "dataset", "eval_data", "reward_funcs", "runs"):
        if key not in config:
            raise ConfigError(f"frontier config: missing {key!r} (see examples/frontier_chitchat.yaml).")
    names = [run.get("name") for run in config["runs"]]
    if any(not isinstance(n, str) or not n or "/" in n for n in names) or len(set(names)) != len(names):
        raise ConfigError(f"frontier config: every run needs a distinct name without '/', got {names}.")
    config.setdefault("model_name_or_path", "smollm2-135m-instruct")
    config.setdefault("train_pairs", None)
    config.setdefault("reward_weights", None)
    config.setdefault("train", {})
    config.setdefault("eval", {})
    return config


def run_train_options(config: dict, run: dict) -> dict:
    """Every `upo train` option of one run: shared options, then the run's own, then what the frontier fixes."""
    options = {**config["train"], **run.get("options", {})}
    options.update({
        "model_name_or_path": config["model_name_or_path"],
        "dataset": str(training_data(config)),
        "reward_funcs": config["reward_funcs"],
        "reward_weights": config["reward_weights"],
        "output_dir": str(run_dir(config, run["name"])),
        "overwrite_output_dir": True,  # only ever a run that did not finish
    })
    options.setdefault("report_to", "none")
    options.setdefault("save_strategy", "no")
    return options


def training_data(config: dict) -> Path:
    """The training pairs: `dataset`, or its first `train_pairs` rows (written once into the output folder), so
    that the reference log-probs and the designer statistics cover exactly the pairs the budget reaches."""
    n = config.get("train_pairs")
    if not n:
        return Path(config["dataset"])
    subset = Path(config["output_dir"]) / f"train_pairs_{n}.jsonl"
    lines = [line for line in Path(config["dataset"]).read_text().splitlines() if line.strip()][:n]
    text = "".join(line + "\n" for line in lines)
    if not subset.is_file() or subset.read_text() != text:
        atomic_write_text(subset, text)
    return subset


def run_lock_file(folder: Path) -> Path:
    """Held by the frontier process working on the run in `folder`, so that two processes never take the same run."""
    return folder.parent / f".{folder.name}.lock"


def run_dir(config: dict, name: str) -> Path:
    return Path(config["output_dir"]) / "runs" / name


def eval_settings(config: dict):
    from upo.eval.evaluate import EvalSettings

    e = config["eval"]
    return EvalSettings(
        eval_data=config["eval_data"], train_data=str(training_data(config)), reward_funcs=list(config["reward_funcs"]),
        reward_weights=config["reward_weights"], standardize_rewards=config["train"].get("standardize_rewards", True),
        max_prompts=e.get("max_prompts"), max_new_tokens=e.get("max_new_tokens", 32), batch_size=e.get("batch_size", 32),
        seed=e.get("seed", 0), max_length=config["train"].get("max_length", 256) or 256,
        do_sample=e.get("do_sample", False), temperature=e.get("temperature", 1.0),
    )


# Evaluation settings added after the first frontiers were run: at these values they leave the key unchanged.
_LATER_SETTINGS = {"do_sample": False, "temperature": 1.0}


def _settings_key(config: dict) -> str:
    settings = asdict(eval_settings(config))
    for name, default in _LATER_SETTINGS.items():
        if settings.get(name) == default:
            settings.pop(name)
    return hashlib.sha256(json.dumps([settings, config["model_name_or_path"]],
                                     sort_keys=True, default=str).encode()).hexdigest()[:16]


def _train_key(options: dict) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ state


def train_done(config: dict, run: dict) -> bool:
    """True when the run finished training with exactly the options the config now gives it."""
    marker = run_dir(config, run["name"]) / TRAIN_DONE
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("options_key") == _train_key(run_train_options(config, run))
    except ValueError:
        return False


def read_eval_summary(folder: Path, settings_key: str) -> dict | None:
    path = folder / EVAL_SUMMARY if folder.is_dir() else folder
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except ValueError:
        return None
    return stored if stored.get("settings_key") == settings_key else None


# ------------------------------------------------------------------------------------------ train


_SHOWN_METRICS = (("epoch", "epoch {:.2f}"), ("loss", "loss {:.4g}"), ("loss/pref", "pref {:.4g}"),
                  ("loss/aux", "aux {:.4g}"), ("loss/value", "value {:.4g}"), ("rewards/margins", "margin {:+.3f}"),
                  ("rewards/accuracies", "acc {:.0%}"), ("perf/tokens_per_second", "{:.0f} tok/s"))


def short_log_line(line: str) -> str:
    """A trainer's logged metrics dict as one short line (epoch, losses, margin, accuracy, speed); other
    lines (progress bars, errors) as their last 120 characters."""
    import ast

    text = line.strip()
    try:
        metrics = ast.literal_eval(text[text.index("{"): text.rindex("}") + 1])
        shown = [form.format(float(metrics[key])) for key, form in _SHOWN_METRICS if key in metrics]
    except (ValueError, SyntaxError, TypeError):
        return text[-120:]
    return ", ".join(shown) if shown else text[-120:]


def train_run(config: dict, run: dict, num_threads: int | None = None, log=print) -> None:
    """Trains one run with `upo train` in a child process; its output goes to `train.log` in the run folder."""
    import yaml

    from upo.errors import UPOError

    options = run_train_options(config, run)
    folder = Path(options["output_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TRAIN_DONE).unlink(missing_ok=True)
    (folder / EVAL_SUMMARY).unlink(missing_ok=True)
    (folder / "run.yaml").write_text(yaml.safe_dump(options, sort_keys=False))
    env = dict(os.environ)
    if num_threads:
        env["OMP_NUM_THREADS"] = str(num_threads)
    command = [sys.executable, "-m", "upo.cli", "train", "--config", str(folder / "run.yaml")]
    start = last = time.perf_counter()
    with open(folder / "train.log", "w") as out:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                                   bufsize=1)
        for line in process.stdout:  # progress: the trainer's tqdm bar, forwarded
            out.write(line)
            out.flush()
            progress_line = "it/s]" in line or "s/it]" in line
            if log is not None and line.strip() and (not progress_line or time.perf_counter() - last > 30):
                if progress_line or "'loss'" in line or "error" in line.lower():
                    log(f"    [{run['name']}] {short_log_line(line)}")
                    last = time.perf_counter()
        rc = process.wait()
    if rc != 0:
        raise UPOError(f"training run {run['name']!r} failed (exit {rc}); see {folder / 'train.log'}")
    atomic_write_json(folder / TRAIN_DONE, {"options_key": _train_key(options), "seconds": round(time.perf_counter() - start, 1),
                                      "options": options})


# ------------------------------------------------------------------------------------------ frontier


def run_frontier(config, num_threads: int | None = None, progress: bool = True, evaluator=None, log=print,
                 only: Sequence[str] | None = None) -> dict:
    """Trains and evaluates every run not done yet (of `only`, when given), then writes the table and the plot
    of every finished run. Returns the results."""
    config = load_frontier_config(config)
    out = Path(config["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    key = _settings_key(config)
    t0 = time.perf_counter()

    def elapsed() -> str:
        return f"{(time.perf_counter() - t0) / 60:.1f} min"

    def get_evaluator():
        nonlocal evaluator
        if evaluator is None:
            from upo.eval.evaluate import Evaluator

            evaluator = Evaluator(eval_settings(config), config["model_name_or_path"], progress=progress,
                                  scorer=_scorer(config))
        return evaluator

    reference = None

    def ensure_reference() -> dict:
        nonlocal reference
        if reference is None:
            # A second process waits, then reads it.
            with exclusive_lock(out / ".reference.lock", "Waiting for another process evaluating the reference..."):
                reference = read_eval_summary(out / REFERENCE_EVAL, key)
                if reference is None:
                    log(f"[frontier {elapsed()}] evaluating the reference model")
                    record = get_evaluator().evaluate_reference()
                    reference = {"settings_key": key, **_stored(record)}
                    atomic_write_json(out / REFERENCE_EVAL, reference)
            log(f"[frontier {elapsed()}] reference: {_one_line(reference['summary'])}")
        return reference

    todo = [run for run in config["runs"] if only is None or run["name"] in only]
    for k, run in enumerate(todo, 1):
        folder = run_dir(config, run["name"])
        with try_lock(run_lock_file(folder)) as locked:
            if not locked:
                log(f"[frontier {elapsed()}] run {k}/{len(todo)} {run['name']}: another process has it, skipped")
                continue
            if not train_done(config, run):
                log(f"[frontier {elapsed()}] run {k}/{len(todo)} {run['name']}: training "
                    f"({json.dumps(run.get('options', {}))})")
                train_run(config, run, num_threads, log=log if progress else None)
            summary = read_eval_summary(folder, key)
            if summary is not None:  # its stored numbers may predate the current scoring: the table rescores them
                log(f"[frontier {elapsed()}] run {k}/{len(todo)} {run['name']}: evaluated earlier")
                continue
            ensure_reference()
            log(f"[frontier {elapsed()}] run {k}/{len(todo)} {run['name']}: evaluating")
            ev = get_evaluator()
            if ev._reference_record is None:  # the reference's replies and scores, for the win rate
                ev._reference_record = {"replies": reference["replies"], "preference": reference["preference"]}
            record = ev.evaluate(run["name"], str(folder))
            summary = {"settings_key": key, **_stored(record)}
            atomic_write_json(folder / EVAL_SUMMARY, summary)
            log(f"[frontier {elapsed()}] {run['name']}: {_one_line(summary['summary'])}")

    ensure_reference()
    results = collect_results(config)
    write_report(config, results)
    log(f"[frontier {elapsed()}] wrote {out / 'frontier.md'}, {out / 'frontier.json'} and {out / 'frontier.png'}")
    return results


def _scorer(config: dict):
    from upo.eval.scorers import HumanReplySimilarity

    return HumanReplySimilarity(config["eval"].get("preference_scorer_model"))


def _stored(record: dict) -> dict:
    return {"summary": record["summary"], "replies": record["replies"], "preference": record["preference"],
            "designer": record["designer"], "kl": record["kl"], "objectives": record.get("objectives")}


def _one_line(s: dict) -> str:
    return (f"designer {s['designer_score']:+.3f}, preference {s['preference_score']:.4f}, win rate "
            f"{s['win_rate']:.1%}, KL {s['kl']:.2f}, {s['length_words']:.1f} words")


def collect_results(config: dict) -> dict:
    """Every finished run's summary (and the reference's), with the options that make the run.

    The designer columns are recomputed from the stored replies with the current `DesignerScale` (scoring
    replies takes milliseconds), so the table always follows its definition without generating again.
    """
    from upo.eval.evaluate import DesignerScale, load_eval_rows, rescore_designer, win_indicators

    config = load_frontier_config(config)
    key = _settings_key(config)
    out = Path(config["output_dir"])
    settings = eval_settings(config)
    rows = load_eval_rows(settings.eval_data, settings.max_prompts)
    scale = None

    def rescored(stored: dict) -> dict:
        nonlocal scale
        if scale is None:
            scale = DesignerScale.fit(settings.train_data, settings.reward_funcs, settings.reward_weights,
                                      settings.standardize_rewards)
        summary, designer, _ = rescore_designer(stored["summary"], stored["replies"], rows, settings.reward_funcs, scale)
        return {**stored, "summary": summary, "designer": designer}

    reference = read_eval_summary(out / REFERENCE_EVAL, key)
    if reference is not None and reference.get("replies"):
        reference = rescored(reference)
    runs = []
    for run in config["runs"]:
        summary = read_eval_summary(run_dir(config, run["name"]), key)
        if summary is not None and train_done(config, run):
            if summary.get("replies"):
                summary = rescored(summary)
            wins = win_indicators(summary["preference"], reference["preference"], summary["replies"],
                                  reference["replies"]) if reference is not None and summary.get("replies") else None
            runs.append({"name": run["name"], "family": run_family(run), "options": run.get("options", {}),
                         "summary": summary["summary"], "designer": summary["designer"], "wins": wins,
                         "preference": summary.get("preference")})
    return {"reference": reference["summary"] if reference else None,
            "reference_designer_std": reference["summary"]["designer_score_std"] if reference else None,
            "runs": runs, "target": target_check(runs, reference["summary"] if reference else None)}


BASELINE_FAMILIES = {"modpo": "MODPO", "aoppo": "aoPPO", "drov": "DRO-V", "csft": "CSFT"}


def run_family(run: dict) -> str:
    """DPO, UPO, RPO (DPO + NLL), MODPO, KTO, KTO-UPO, aoPPO, DRO-V or CSFT, from the run's options."""
    options = run.get("options", {})
    loss_type = options.get("loss_type", ["sigmoid"])
    loss_type = [loss_type] if isinstance(loss_type, str) else loss_type
    designer = float(options.get("alpha", 1.0)) > 0
    for name, family in BASELINE_FAMILIES.items():
        if name in loss_type:
            return family
    if "kto" in loss_type:
        return "KTO-UPO" if designer else "KTO"
    if designer:
        return "UPO"
    return "RPO" if "sft" in loss_type else "DPO"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (>= on both axes, > on one), by increasing x."""
    front = [i for i, (x, y) in enumerate(points)
             if not any(x2 >= x and y2 >= y and (x2 > x or y2 > y) for x2, y2 in points)]
    return sorted(front, key=lambda i: points[i][0])


def target_check(runs: list[dict], reference: dict | None, win_rate_tolerance: float = 0.02,
                 min_gain_std: float = 0.5) -> dict:
    """The issue's target: a UPO run within 2 points of DPO's win rate whose designer score beats DPO's by
    at least 0.5 std (std of the reference's designer score over the prompts), not dominated by a MODPO run."""
    dpo = next((r for r in runs if r["family"] == "DPO"), None)
    if dpo is None or reference is None:
        return {"met": None, "reason": "needs a finished DPO run and the reference"}
    unit = reference["designer_score_std"] or 1.0
    modpo = [r for r in runs if r["family"] == "MODPO"]
    candidates = []
    for r in runs:
        if r["family"] != "UPO":
            continue
        s = r["summary"]
        gain = (s["designer_score"] - dpo["summary"]["designer_score"]) / unit
        same_preference = abs(s["win_rate"] - dpo["summary"]["win_rate"]) <= win_rate_tolerance + 1e-9
        dominated_by = [m for m in modpo if m["summary"]["designer_score"] >= s["designer_score"]
                        and m["summary"]["preference_score"] >= s["preference_score"]]
        intervals = _paired_intervals(r, dpo, unit)
        candidates.append({"name": r["name"], "gain_std": round(gain, 3), "win_rate_gap": round(s["win_rate"] - dpo["summary"]["win_rate"], 4),
                           **intervals,
                           "same_preference": same_preference, "dominated_by_modpo": [m["name"] for m in dominated_by],
                           "met": same_preference and gain >= min_gain_std and not dominated_by})
    return {"met": any(c["met"] for c in candidates), "unit_std": unit, "candidates": candidates}


def _paired_intervals(run: dict, dpo: dict, unit: float, resamples: int = 2000, seed: int = 0) -> dict:
    """90% paired-bootstrap intervals over prompts of the designer gain (in std) and the win-rate gap vs DPO."""
    import random

    if not run.get("designer") or not dpo.get("designer") or len(run["designer"]) != len(dpo["designer"]):
        return {}
    rng = random.Random(seed)
    n = len(run["designer"])
    gains = [(a - b) / unit for a, b in zip(run["designer"], dpo["designer"])]
    gaps = [a - b for a, b in zip(run["wins"], dpo["wins"])] if run.get("wins") and dpo.get("wins") else None
    gain_means, gap_means = [], []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        gain_means.append(sum(gains[i] for i in idx) / n)
        if gaps:
            gap_means.append(sum(gaps[i] for i in idx) / n)

    def interval(values):
        values = sorted(values)
        return [round(values[int(0.05 * len(values))], 3), round(values[int(0.95 * len(values)) - 1], 3)]

    out = {"gain_std_ci90": interval(gain_means)}
    if gap_means:
        out["win_rate_gap_ci90"] = interval(gap_means)
    return out


# ------------------------------------------------------------------------------------------ report


def write_report(config: dict, results: dict) -> None:
    out = Path(config["output_dir"])
    atomic_write_json(out / "frontier.json", {"config": config, **results})
    (out / "frontier.md").write_text(format_report(results) + "\n")
    if results["runs"]:
        plot_frontier(results, out / "frontier.png")


def format_report(results: dict) -> str:
    from upo.eval.evaluate import summary_table

    rows = ([{**results["reference"], "name": "reference"}] if results["reference"] else []) + \
           [{**r["summary"], "name": r["name"]} for r in results["runs"]]
    if not rows:
        return "No finished run yet."
    families = {r["name"]: r["family"] for r in results["runs"]}
    options = {r["name"]: ", ".join(f"{k}={v}" for k, v in r["options"].items()) for r in results["runs"]}
    for row in rows:
        row["method"] = families.get(row["name"], "-")
        row["options"] = options.get(row["name"], "-")
    lines = [summary_table(rows, extra_columns=("method", "options"))]
    target = results["target"]
    if target.get("candidates") is not None:
        lines.append(f"\nTarget (UPO within 2 points of DPO's win rate, designer score >= +0.5 std above DPO's, "
                     f"not dominated by MODPO; 1 std = {target['unit_std']:.3f}): "
                     f"{'met' if target['met'] else 'not met'}.")
        for c in target["candidates"]:
            ci = c.get("gain_std_ci90")
            gap_ci = c.get("win_rate_gap_ci90")
            lines.append(f"* {c['name']}: designer {c['gain_std']:+.2f} std vs DPO"
                         f"{f' (90% CI {ci[0]:+.2f}..{ci[1]:+.2f})' if ci else ''}, win rate {100 * c['win_rate_gap']:+.1f} "
                         f"points vs DPO{f' (90% CI {100 * gap_ci[0]:+.1f}..{100 * gap_ci[1]:+.1f})' if gap_ci else ''}, "
                         f"dominated by MODPO: {', '.join(c['dominated_by_modpo']) or 'no'}"
                         f"{' -> meets the target' if c['met'] else ''}")
    return "\n".join(lines)


def plot_frontier(results: dict, path: Path, title: str | None = None) -> None:
    """Preference score (y) against designer score (x) for every run; Pareto front drawn; DPO marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    styles = {"DPO": ("*", "black", 220), "UPO": ("o", "tab:blue", 70), "MODPO": ("s", "tab:orange", 70),
              "KTO-UPO": ("o", "tab:cyan", 70), "KTO": ("v", "tab:green", 70), "RPO": ("^", "tab:olive", 70),
              "aoPPO": ("D", "tab:red", 60), "DRO-V": ("P", "tab:purple", 80), "CSFT": ("X", "tab:brown", 80)}
    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    points = [(r["summary"]["designer_score"], r["summary"]["preference_score"]) for r in runs]
    front = pareto_front(points)
    if len(front) > 1:
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "--", color="grey", lw=1,
                label="Pareto front", zorder=1)
    for family, (marker, color, size) in styles.items():
        members = [k for k, r in enumerate(runs) if r["family"] == family]
        if members:
            ax.scatter([points[k][0] for k in members], [points[k][1] for k in members], marker=marker, c=color, s=size,
                       label=family, zorder=3, edgecolors="white" if family != "DPO" else "black")
    for (x, y), r in zip(points, runs):
        ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    dpo = next((r for r in runs if r["family"] == "DPO"), None)
    if dpo is not None and len(dpo.get("designer") or []) > 1 and len(dpo.get("preference") or []) > 1:
        import statistics

        # The noise of one point: one standard error of each mean over the prompts.
        n = len(dpo["designer"])
        ax.errorbar([dpo["summary"]["designer_score"]], [dpo["summary"]["preference_score"]],
                    xerr=[statistics.pstdev(dpo["designer"]) / n ** 0.5],
                    yerr=[statistics.pstdev(dpo["preference"]) / n ** 0.5], fmt="none", ecolor="black", elinewidth=0.8,
                    capsize=3, zorder=2, label=f"±1 s.e. over {n} prompts")
    if results.get("reference"):
        ref = results["reference"]
        ax.scatter([ref["designer_score"]], [ref["preference_score"]], marker="x", c="grey", s=60, label="reference",
                   zorder=2)
    ax.set_xlabel("designer score (weighted z of the objectives, mean over held-out prompts)")
    ax.set_ylabel("preference score (similarity to the human reply)")
    ax.set_title(title or "UPO and the baselines: preference against designer score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the points fill the axes
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ command


def main(argv: list[str]) -> None:
    """`upo frontier --config examples/frontier_chitchat.yaml [--output_dir DIR] [--report_only]`."""
    parser = argparse.ArgumentParser(prog="upo frontier", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="A frontier YAML (see examples/frontier_chitchat.yaml).")
    parser.add_argument("--output_dir", default=None, help="Overrides the config's output_dir.")
    parser.add_argument("--only", nargs="+", default=None, help="Run only these runs of the config (by name).")
    parser.add_argument("--report_only", action="store_true", help="Write the table and plot from finished runs.")
    parser.add_argument("--num_threads", default="auto",
                        help="torch CPU threads, here and in each training process: a number, or 'auto' (1 when "
                        "other processes keep the CPU busy, where more threads are much slower).")
    args = parser.parse_args(argv)
    config = load_frontier_config(args.config)
    if args.output_dir:
        config["output_dir"] = args.output_dir
    from upo.threads import choose_num_threads

    threads = choose_num_threads(args.num_threads)
    if args.report_only:
        results = collect_results(config)
        write_report(config, results)
        print(format_report(results))
        return
    results = run_frontier(config, threads, only=args.only)
    print(format_report(results))
