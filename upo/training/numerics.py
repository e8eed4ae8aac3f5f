"""Non-finite losses and gradients: stop with the step and the component named, or skip the batch and count it.

A NaN or infinity that reaches the optimizer poisons every weight, and the next checkpoint with it. The
guard checks each micro-batch's loss *before* its backward pass and, at each optimizer step, the
gradients *before* the update, so the weights and the last checkpoint stay good:

* by default it raises `NonFiniteError`, naming the optimizer step, the micro-batch, the loss components
  (`preference`, `designer`, `value`) that are not finite, or the first parameter whose gradient is not;
* with `skip_nonfinite_batches=True`, a micro-batch with a non-finite loss gets no backward pass (the other
  micro-batches of its optimizer step still count), and an optimizer step with non-finite gradients is
  dropped whole (the optimizer does not move); both are counted in the logs as
  `nonfinite/skipped_batches`.

Under several processes every rank takes the same decision: the loss check is all-reduced, and gradients
are checked after their all-reduce.
"""

from __future__ import annotations

import math

import torch

from upo.errors import UPOError

# `self._last_loss_components` keys, as `compute_loss` fills them, and the names the method gives them.
COMPONENT_NAMES = {"pref": "preference", "aux": "designer", "value": "value"}


class NonFiniteError(UPOError, FloatingPointError):
    """A loss or gradient became NaN or infinite; the message names the step, the component and the fixes."""


class NonFiniteGuard:
    """Wraps `Trainer.training_step` (see the module docstring); `skipped_batches` counts what was skipped."""

    def __init__(self, skip: bool):
        self.skip = skip
        self.skipped_batches = 0
        self._micro_batches = 0  # since the last optimizer step
        self._skipped_in_step = 0

    def training_step(self, trainer, step, model, inputs, num_items_in_batch):
        """Runs `step` (the parent's training_step) with the loss checked before backward."""
        accelerator = trainer.accelerator
        original_backward = accelerator.backward
        state = {"skipped": False}

        def guarded_backward(loss, **kwargs):
            local = not bool(torch.isfinite(loss.detach()).all())
            if _any_rank(trainer, local):
                self._on_nonfinite_loss(trainer, loss, local)  # raises unless skipping
                state["skipped"] = True
                if trainer.args.world_size > 1:
                    # DDP all-reduces during backward: every rank must run one, so run one that adds nothing.
                    zero = sum(p.reshape(-1)[:1].sum() * 0.0 for p in model.parameters() if p.requires_grad)
                    original_backward(zero, **kwargs)
                return
            original_backward(loss, **kwargs)

        accelerator.backward = guarded_backward  # an instance attribute, removed below: the class method returns
        metrics = trainer._metrics["train"]
        recorded = {key: len(values) for key, values in metrics.items()}
        try:
            loss = step(model, inputs, num_items_in_batch)
        finally:
            del accelerator.backward
        if state["skipped"]:  # a skipped batch's metrics (NaN among them) stay out of the logged averages
            for key in list(metrics):
                if key not in recorded:
                    del metrics[key]
                else:
                    del metrics[key][recorded[key]:]
        self._micro_batches += 1
        self._skipped_in_step += state["skipped"]
        if accelerator.sync_gradients:
            self._check_gradients(trainer, model, all_skipped=self._skipped_in_step == self._micro_batches)
            self._micro_batches = self._skipped_in_step = 0
        if self.skipped_batches:
            trainer._metrics["train"]["nonfinite/skipped_batches"] = [float(self.skipped_batches)]
        return loss

    def _on_nonfinite_loss(self, trainer, loss, local: bool):
        if self.skip:
            self.skipped_batches += 1
            return
        components = getattr(trainer, "_last_loss_components", None) or {}
        bad = {k: _value(v) for k, v in components.items() if not math.isfinite(_value(v))}
        names = [COMPONENT_NAMES.get(k, k) for k in bad]
        if not local:
            what = "on another process (this one's losses are finite); its own message names the term"
        elif bad:
            terms = ", ".join(f"{name} (loss/{k} = {v})" for name, (k, v) in zip(names, bad.items()))
            what = f"the {terms} term" + ("s" if len(bad) > 1 else "")
        else:
            what = f"the total (loss = {_value(loss)}; its components are finite or unknown)"
        raise NonFiniteError(
            f"Non-finite loss at step {trainer.state.global_step + 1}{self._where(trainer)}: {what}."
            + "".join(" " + _HELP[name] for name in names if name in _HELP) + _kept(trainer)
        )

    def _check_gradients(self, trainer, model, all_skipped: bool):
        grads = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
        if not grads:
            return
        if all_skipped:  # every micro-batch of this step was skipped: no update at all, not a zero-gradient one
            for p in model.parameters():
                p.grad = None
            return
        maxima = torch._foreach_norm([g.detach() for _, g in grads], float("inf"))
        finite = torch.isfinite(torch.stack([m.float() for m in maxima]))
        if bool(finite.all()):
            return
        name = grads[int((~finite).nonzero()[0])][0]
        if self.skip:
            self.skipped_batches += self._micro_batches - self._skipped_in_step
            for p in model.parameters():
                p.grad = None
            return
        component = "value" if "upo_value_head" in name else "policy (preference and designer terms)"
        components = getattr(trainer, "_last_loss_components", None) or {}
        finite_losses = ", ".join(f"loss/{k} = {_value(v):.4g}" for k, v in components.items())
        raise NonFiniteError(
            f"Non-finite gradient at step {trainer.state.global_step + 1}{self._where(trainer, batch=False)}: "
            f"first in parameter {name!r}, of the {component}; the last micro-batch's losses were finite "
            f"({finite_losses or 'unknown'}). Lower learning_rate or max_grad_norm, or look for extreme values "
            f"in the batch.{_kept(trainer)}"
        )

    def _where(self, trainer, batch: bool = True) -> str:
        parts = []
        if batch and trainer.args.gradient_accumulation_steps > 1:
            parts.append(f"micro-batch {self._micro_batches + 1} of {trainer.args.gradient_accumulation_steps}")
        if trainer.args.world_size > 1:
            parts.append(f"rank {trainer.args.process_index}")
        return f" ({', '.join(parts)})" if parts else ""


_HELP = {
    "preference": "Look for extreme ref_chosen_logps / ref_rejected_logps or weight values in the data, check beta "
                  "(IPO divides by it), or lower learning_rate.",
    "designer": "The advantage weights overflow: lower aw_max_weight (keep it finite) or raise aw_temperature.",
    "value": "The value head diverged: lower value_learning_rate.",
}


def _kept(trainer) -> str:
    from upo.training.checkpointing import last_complete_checkpoint

    last = last_complete_checkpoint(trainer.args.output_dir)
    kept = (f" The weights were not updated with it; the last good checkpoint is {last} (resume with "
            "resume_from_checkpoint=True)." if last else " The weights were not updated with it; no checkpoint was "
            "saved yet.")
    return kept + " Set skip_nonfinite_batches=True to skip such batches instead (counted as nonfinite/skipped_batches)."


def _value(x) -> float:
    return float(x.detach().float().mean()) if isinstance(x, torch.Tensor) else float(x)


def _any_rank(trainer, flag: bool) -> bool:
    """True when `flag` is true on any process (every process must call this at the same point)."""
    if trainer.args.world_size <= 1:
        return flag
    device = trainer.accelerator.device
    return bool(trainer.accelerator.reduce(torch.tensor([float(flag)], device=device), reduction="sum").item() > 0)


# --- Numbers the user brings in the data: checked before training, not found as a NaN at step 300 ---

REFERENCE_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")


def check_numeric_columns(dataset, source: str) -> None:
    """Raise `DataError` for a `weight` or `ref_*_logps` value that is not a usable number.

    `weight` must be a finite number >= 0 (a negative weight would reverse a preference); the reference
    log-probs come in pairs of columns and are finite sums of log-probabilities, so <= 0. Pairs are named
    by their position in the prepared data (after dropped pairs) and the start of their prompt.
    """
    from upo.errors import DataError

    columns = set(dataset.column_names)
    present = [c for c in REFERENCE_COLUMNS if c in columns]
    if len(present) == 1:
        missing = next(c for c in REFERENCE_COLUMNS if c not in columns)
        raise DataError(f"{source}: column {present[0]!r} without {missing!r}. Precomputed reference log-probs "
                        "need both columns; add the missing one, or drop both to let upo compute them.")
    rules = {"weight": (lambda v: v >= 0, "a finite number >= 0 (1.0 is neutral; a negative weight reverses the pair)")}
    rules.update({c: (lambda v: v <= 1e-3, "a finite sum of log-probabilities, so <= 0") for c in present})
    for column, (ok, expected) in rules.items():
        if column not in columns:
            continue
        for row, value in enumerate(dataset[column]):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and ok(value)):
                prompt = dataset[row]["prompt"]
                preview = repr(prompt if isinstance(prompt, str) else prompt[-1].get("content", ""))[:50]
                raise DataError(f"{source}, pair {row} (prompt {preview}), column {column!r}: {value!r} is not "
                                f"{expected}. Fix the value or remove the row.")
