"""Each model's replies in alpaca_eval's `model_outputs.json` format, so that the same evaluation can be judged by
alpaca_eval (https://github.com/tatsu-lab/alpaca_eval) too: a JSON list of `{"instruction", "output", "generator"}`,
one per prompt, in the evaluation's order.

`upo eval` writes `OUT/alpaca_eval/{model}/model_outputs.json` for the reference and every model, and prints the
command that has alpaca_eval's annotator compare a model's replies with the reference's on the same prompts
(`alpaca_eval --model_outputs ... --reference_outputs ...`; alpaca_eval and its annotator's API key are the user's).
An instruction is the prompt's text, or a chat prompt's messages one `role: content` line each (as upo's judge reads
them); a prompt of a single user message is that message's text.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from upo.files import atomic_write_json

FOLDER = "alpaca_eval"
OUTPUTS = "model_outputs.json"


def instruction(prompt) -> str:
    """The prompt as one instruction: its text, a lone user message's content, or `role: content` lines."""
    if isinstance(prompt, str):
        return prompt.strip()
    messages = list(prompt)
    if len(messages) == 1 and messages[0].get("role") == "user":
        return str(messages[0].get("content", "")).strip()
    return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in messages)


def model_outputs(report: dict, name: str) -> list[dict]:
    """The replies of model `name` in `report` (what `upo eval` writes to `eval.json`), as alpaca_eval reads them."""
    return [{"instruction": instruction(entry["prompt"]), "output": entry[name]["reply"], "generator": name}
            for entry in report["per_prompt"]]


def write_model_outputs(out: str | Path, report: dict) -> dict[str, Path]:
    """`out/alpaca_eval/{name}/model_outputs.json` for every model of `report`; returns each model's file."""
    written = {}
    for summary in report["summaries"]:
        name = summary["name"]
        path = Path(out) / FOLDER / name / OUTPUTS
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, model_outputs(report, name))
        written[name] = path
    return written


def commands(written: dict[str, Path], reference: str = "reference") -> list[str]:
    """The alpaca_eval command for each model against the reference's replies."""
    if reference not in written:
        return []
    return [f"alpaca_eval --model_outputs {shlex.quote(str(path))} --reference_outputs "
            f"{shlex.quote(str(written[reference]))}" for name, path in written.items() if name != reference]
