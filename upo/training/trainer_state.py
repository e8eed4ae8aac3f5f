"""`trainer_state.json` in the run folder at every log, so that whoever launched a run follows it from a file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from transformers import TrainerCallback

from upo.files import atomic_write_text
from upo.run_folder import TRAINER_STATE


class TrainerStateWriter(TrainerCallback):
    """Writes `trainer_state.json` into `output_dir` at every log and at the end of training, so that whoever
    launched the run (`upo frontier`, a script) follows its metrics from a file instead of parsing its output.

    transformers writes the state only inside checkpoints; this is the same JSON (`TrainerState.save_to_json`'s
    layout), written atomically by the main process.
    """

    def on_log(self, args, state, control, **kwargs):
        self._write(args, state)

    def on_train_end(self, args, state, control, **kwargs):
        self._write(args, state)

    @staticmethod
    def _write(args, state) -> None:
        if not state.is_world_process_zero:
            return
        text = json.dumps(dataclasses.asdict(state), indent=2, sort_keys=True) + "\n"
        atomic_write_text(Path(args.output_dir) / TRAINER_STATE, text)
