"""One TensorBoard event file per run.

transformers' `TensorBoardCallback` closes its writer when training ends; the next `on_log` (an evaluation after
`train()`: the command line's final `evaluate()`, or a user's) opens a new writer, and so a second event file in the
same folder, which TensorBoard shows as a second run. Here the writer is flushed when training ends and stays open
until the trainer is gone, so the evaluation's metrics land in the run's one event file.
"""

from __future__ import annotations

import weakref

from transformers.integrations import TensorBoardCallback


class OneEventFileTensorBoard(TensorBoardCallback):
    """`TensorBoardCallback` whose writer outlives the end of training (closed with the callback)."""

    def on_train_begin(self, args, state, control, **kwargs):
        had_writer = self.tb_writer is not None
        super().on_train_begin(args, state, control, **kwargs)
        if self.tb_writer is not None and not had_writer:
            weakref.finalize(self, self.tb_writer.close)

    def on_log(self, args, state, control, logs=None, **kwargs):
        had_writer = self.tb_writer is not None
        super().on_log(args, state, control, logs=logs, **kwargs)
        if self.tb_writer is not None and not had_writer:  # an evaluate() with no training before it
            weakref.finalize(self, self.tb_writer.close)

    def on_train_end(self, args, state, control, **kwargs):
        if self.tb_writer is not None:
            self.tb_writer.flush()


def keep_one_event_file(trainer) -> None:
    """Replaces transformers' TensorBoard callback of `trainer` (there when `report_to` names tensorboard) with
    `OneEventFileTensorBoard`, keeping its writer and folder."""
    callbacks = trainer.callback_handler.callbacks
    for index, callback in enumerate(callbacks):
        if type(callback) is TensorBoardCallback:
            kept = OneEventFileTensorBoard(callback.tb_writer)
            kept.logging_dir = callback.logging_dir
            callbacks[index] = kept
