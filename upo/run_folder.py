"""What a run folder holds, by name: the one place that spells the files `upo train` and `upo eval` write.

A finished `upo train` run folder (`output_dir`):

| file | written by | what |
|---|---|---|
| `model.safetensors` / `adapter_model.safetensors` | transformers / peft | the weights (a LoRA run: the adapter) |
| `upo_config.json` | `UPOTrainer._save` | the resolved options, the designer objectives and their standardisation |
| `value_head.safetensors` | `UPOTrainer._save` | `V(x)`, when the run has one |
| `trainer_state.json` | `upo.training.trainer_state` | transformers' `TrainerState` (`log_history`), every log |
| `README.md` | `upo.training.model_card` | the model card |
| `checkpoint-N/upo_checkpoint.json` | `upo.training.checkpointing` | a checkpoint's completion marker |

`upo eval` adds `eval.json`, `eval.md` and `eval.html` to the folder it writes into.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from upo.errors import DataError

UPO_CONFIG = "upo_config.json"
VALUE_HEAD = "value_head.safetensors"
TRAINER_STATE = "trainer_state.json"
MODEL_CARD = "README.md"
CHECKPOINT_MARKER = "upo_checkpoint.json"
ADAPTER_CONFIG = "adapter_config.json"
EVAL_JSON = "eval.json"
EVAL_MARKDOWN = "eval.md"
EVAL_PAGE = "eval.html"

# A folder holding one of these holds a trained model: training into it again needs overwrite_output_dir.
TRAINED_MODEL_FILES = {"model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors", UPO_CONFIG}


def read_run_config(folder: str | os.PathLike) -> dict | None:
    """The `upo_config.json` of a run folder, or None when the folder has none (a plain model folder)."""
    path = Path(folder) / UPO_CONFIG
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except ValueError as error:
        raise DataError(f"{path}: not valid JSON ({error}); the run folder is damaged. Delete the file to use the "
                        "folder as a plain model folder.") from None
    return config


def read_trainer_state(folder: str | os.PathLike) -> dict | None:
    """The run's `trainer_state.json` (`log_history`, `global_step`, `max_steps`, ...), or None when absent or
    being replaced (it is written atomically, so a reader sees a whole file or none)."""
    path = Path(folder) / TRAINER_STATE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
