"""`upo eval`'s results in the experiment tracker the training runs log to (`report_to`, as in transformers).

Each model's summary metrics are logged as `eval/{model}/{metric}`, and a table of sample replies (the prompt, its
reference answer, each model's reply) as `eval/sample_replies`: TensorBoard (a text table, read with the
TensorBoard UI) or Weights & Biases (a `wandb.Table`), through accelerate's trackers (`accelerate.tracking`). Trackers
are imported only when asked for.
"""

from __future__ import annotations

import math
import os

from upo.errors import ConfigError
from upo.eval.scorers.judge import render_conversation

SUPPORTED_TRACKERS = ("tensorboard", "wandb")


def summary_metrics(summaries: list[dict]) -> dict[str, float]:
    """`{"eval/{model}/{metric}": value}` for every finite number of every summary row."""
    out = {}
    for summary in summaries:
        for key, value in summary.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
                    and key != "n_prompts":
                out[f"eval/{summary['name']}/{key}"] = float(value)
    return out


def sample_replies(report: dict, n: int = 16) -> tuple[list[str], list[list[str]]]:
    """The first `n` prompts with each model's reply: `(columns, rows)`."""
    names = [s["name"] for s in report["summaries"]]
    has_answer = any(e.get("reference_answer") for e in report["per_prompt"])
    columns = ["prompt", *(["reference answer"] if has_answer else []), *names]
    rows = []
    for entry in report["per_prompt"][:n]:
        row = [render_conversation(entry["prompt"])]
        if has_answer:
            row.append(entry.get("reference_answer") or "")
        row += [entry[name]["reply"] for name in names]
        rows.append(row)
    return columns, rows


def _markdown(columns: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return " ".join(str(text).split()).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def log_evaluation(report: dict, report_to, run_name: str | None, logging_dir: str | os.PathLike,
                   n_samples: int = 16) -> list[str]:
    """Logs `report` (what `upo eval` writes to `eval.json`) to each tracker of `report_to` ("none", a name, or a
    list); returns the trackers logged to. TensorBoard writes under `logging_dir/run_name`."""
    trackers = [report_to] if isinstance(report_to, str) else list(report_to or [])
    trackers = [t for t in trackers if t and t != "none"]
    if trackers == ["all"]:
        trackers = list(SUPPORTED_TRACKERS)
    unknown = [t for t in trackers if t not in SUPPORTED_TRACKERS]
    if unknown:
        raise ConfigError(f"report_to {unknown}: upo eval logs to {list(SUPPORTED_TRACKERS)}.")
    metrics = summary_metrics(report["summaries"])
    columns, rows = sample_replies(report, n_samples)
    for tracker in trackers:
        if tracker == "tensorboard":
            from accelerate.tracking import TensorBoardTracker

            board = TensorBoardTracker(run_name or "upo-eval", logging_dir)
            board.start()
            board.log({**metrics, "eval/sample_replies": _markdown(columns, rows)}, step=0)
            board.finish()
        elif tracker == "wandb":
            from accelerate.tracking import WandBTracker

            # In the project transformers' WandbCallback logs the training to, as a run of its own
            run = WandBTracker(os.getenv("WANDB_PROJECT", "huggingface"), name=run_name, job_type="eval",
                               dir=str(logging_dir), reinit="finish_previous")
            run.start()
            run.log(metrics, step=0)
            run.log_table("eval/sample_replies", columns=columns, data=rows, step=0)
            run.finish()
    return trackers
