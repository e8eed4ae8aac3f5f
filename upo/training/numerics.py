"""Non-finite losses and gradients: stop with the step and the component named, or skip the batch and count it.

A NaN or infinity that reaches the optimizer poisons every weight, and the next checkpoint with it. The
guard checks each micro-batch's loss *before* its backward pass and, at each optimizer step, the
gradients *before* the update, so the weights and the last checkpoint stay good:

* by default it raises `NonFiniteError`, naming the optimizer step, the micro-batch, the loss components
  (`preference`, `designer`, `value`) that are not finite, or the first parameter whose gradient is not;
* with `skip_nonfinite_batches=True`, a micro-batch with a non-finite loss adds nothing to the gradients (the
  other micro-batches of its optimizer step still count), and an optimizer step with non-finite gradients is
  dropped whole (the optimizer does not move); both are counted in the logs as
  `nonfinite/skipped_batches`.

Under several processes every rank takes the same decision: the loss check is all-reduced, and gradients
are checked after their all-reduce.

Under fp16's loss scaler (`torch.amp.GradScaler`, which accelerate sets up for fp16 on a GPU) the gradients are
checked once unscaled (`upo.training.gradients`), and a non-finite one is first the scaler's business: its scale was
too high, so it skips the optimizer step and halves the scale, as every fp16 trainer does. Those steps are counted as
`amp/skipped_steps`, beside the scale (`amp/loss_scale`). Once the scale is down to `MIN_LOSS_SCALE` (1, DeepSpeed's
default `min_loss_scale`), the gradient overflows without any scaling: that is a fault, stopped or skipped as above.

Under DeepSpeed the engine updates the weights inside the backward pass, before this guard could read a gradient:
there the loss is checked as above, and a gradient only by the engine, whose ZeRO optimizers skip a step with a
non-finite gradient norm; the guard then stops the run or counts the batch as above, from the engine's word
(`was_step_applied`). DeepSpeed without ZeRO in fp32 checks nothing: that step is applied (docs/RELIABILITY.md).
"""

from __future__ import annotations

import math

import torch
from torch.distributed.tensor import DTensor

from upo.errors import DataError, UPOError
from upo.training.checkpointing import last_complete_checkpoint

# The loss components `compute_loss` reports (`loss/pref` -> "pref"), and the names the method gives them.
COMPONENT_NAMES = {"pref": "preference", "aux": "designer", "value": "value"}
# A gradient that is not finite at this loss scale or below overflows unscaled: not the loss scaler's overflow.
MIN_LOSS_SCALE = 1.0


class NonFiniteError(UPOError, FloatingPointError):
    """A loss or gradient became NaN or infinite; the message names the step, the component and the fixes."""


class NonFiniteGuard:
    """The trainer's two explicit hooks (see the module docstring); `skipped_batches` counts what was skipped.

    * `check_loss(loss, components, global_step)`, in `compute_loss` before the loss is returned for its
      backward pass: False for a finite loss; raises `NonFiniteError`, or (skipping) returns True, and the
      trainer then returns `no_update_loss(model, loss)` and records no metric of the batch;
    * `after_backward(model, global_step, sync_gradients, scaler)`, after each micro-batch's backward: at an
      optimizer step, checks the (unscaled) gradients before the optimizer sees them; `scaler_skipped_steps` counts
      the steps that fp16's loss scaler skips.
    """

    def __init__(self, args):
        self.args = args
        self.skip = args.skip_nonfinite_batches
        self.skipped_batches = 0
        self.scaler_skipped_steps = 0
        self._micro_batches = 0  # since the last optimizer step
        self._skipped_in_step = 0
        self._last_components: dict[str, float] = {}

    def check_loss(self, loss: torch.Tensor, components: dict[str, torch.Tensor], global_step: int,
                   any_rank=None) -> bool:
        """True when this micro-batch must be skipped. `components`: `{"pref": loss, "aux": ..., ...}`;
        `any_rank(flag)`: True when `flag` is true on any process (every process calls it at this point)."""
        self._last_components = {k: _value(v) for k, v in components.items()}
        local = not bool(torch.isfinite(loss.detach()).all())
        if not (any_rank(local) if any_rank is not None and self.args.world_size > 1 else local):
            return False
        if not self.skip:
            self._raise_for_loss(loss, local, global_step)
        self.skipped_batches += 1
        self._skipped_in_step += 1
        return True

    @staticmethod
    def no_update_loss(model, loss: torch.Tensor) -> torch.Tensor:
        """A loss whose backward pass adds exactly zero to every trainable weight, with `loss`'s (non-finite) value.

        Under DDP every rank must run a backward (gradients are all-reduced during it), so a skipped batch runs
        one that adds nothing; its value stays non-finite so that transformers leaves it out of the logged loss
        (`logging_nan_inf_filter`)."""
        zero = sum(p.reshape(-1)[:1].sum() * 0.0 for p in model.parameters() if p.requires_grad)
        return zero + loss.detach()

    def after_backward(self, model, global_step: int, sync_gradients: bool, scaler=None, engine=None) -> None:
        """`scaler`: fp16's GradScaler (None without one), whose `unscale_` has already run at an optimizer step.
        `engine`: the DeepSpeed engine, which has already stepped (or skipped) at an optimizer step."""
        self._micro_batches += 1
        if sync_gradients:
            if engine is not None:
                self._check_engine_step(engine, global_step)
            else:
                self._check_gradients(model, global_step, self._skipped_in_step == self._micro_batches, scaler)
            self._micro_batches = self._skipped_in_step = 0

    def _check_engine_step(self, engine, global_step: int) -> None:
        """DeepSpeed updates the weights inside the backward pass and shows no gradient; what it tells is whether it
        applied the step, which its ZeRO optimizers (stages 1-3) and its fp16 / bf16 optimizers skip when the gradient
        norm is not finite. fp16: its loss scaler's skipped step (it stops the run itself at its minimum scale);
        otherwise a fault, stopped or skipped as above (the weights were not updated: the engine skipped)."""
        if engine.was_step_applied():
            return
        if engine.fp16_enabled():
            self.scaler_skipped_steps += 1
        elif self.skip:
            self.skipped_batches += self._micro_batches - self._skipped_in_step
        else:
            raise NonFiniteError(
                f"Non-finite gradient at step {global_step + 1}{self._where(batch=False)}, found by DeepSpeed, which "
                "skipped the update (its engine shows no gradient, so the parameter is not known); the last "
                f"micro-batch's losses were finite ({self._losses()}). Lower learning_rate or max_grad_norm, or look "
                f"for extreme values in the batch.{_kept(self.args.output_dir)}"
            )

    def _raise_for_loss(self, loss, local: bool, global_step: int):
        bad = {k: v for k, v in self._last_components.items() if not math.isfinite(v)}
        names = [COMPONENT_NAMES.get(k, k) for k in bad]
        if not local:
            what = "on another process (this one's losses are finite); its own message names the term"
        elif bad:
            terms = ", ".join(f"{name} (loss/{k} = {v})" for name, (k, v) in zip(names, bad.items()))
            what = f"the {terms} term" + ("s" if len(bad) > 1 else "")
        else:
            what = f"the total (loss = {_value(loss)}; its components are finite or unknown)"
        raise NonFiniteError(
            f"Non-finite loss at step {global_step + 1}{self._where()}: {what}."
            + "".join(" " + _HELP[name] for name in names if name in _HELP) + _kept(self.args.output_dir)
        )

    def _check_gradients(self, model, global_step: int, all_skipped: bool, scaler=None):
        grads = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
        if not grads:
            return
        if all_skipped:  # every micro-batch of this step was skipped: no update at all, not a zero-gradient one
            for p in model.parameters():
                p.grad = None
            return
        # Under FSDP each process holds a shard of each gradient (some shards empty): all decide as one.
        sharded = any(isinstance(g, DTensor) for _, g in grads)
        local = [(n, g.to_local() if isinstance(g, DTensor) else g) for n, g in grads]
        local = [(n, g.detach()) for n, g in local if g.numel()]
        name = None
        if local:
            maxima = torch._foreach_norm([g for _, g in local], float("inf"))
            finite = torch.isfinite(torch.stack([m.float() for m in maxima]))
            name = None if bool(finite.all()) else local[int((~finite).nonzero()[0])][0]
        if not (_any_process(name is not None, grads[0][1].device) if sharded else name is not None):
            return
        scale = scaler.get_scale() if scaler is not None and scaler.is_enabled() else None
        if scale is not None and scale > MIN_LOSS_SCALE:
            self.scaler_skipped_steps += 1  # the scaler saw it too: it skips this step and halves its scale
            return
        name = name or "(its shard on another process)"
        if self.skip:
            self.skipped_batches += self._micro_batches - self._skipped_in_step
            for p in model.parameters():
                p.grad = None
            return
        component = "value" if "upo_value_head" in name else "policy (preference and designer terms)"
        unscaled = ""
        if scale is not None:
            unscaled = (f" It is no fp16 loss-scale overflow: the scale is down to {scale:g} (the scaler skipped "
                        f"{self.scaler_skipped_steps} steps so far), so the gradient overflows unscaled; bf16 (where "
                        "the GPU has it) has fp32's range.")
        raise NonFiniteError(
            f"Non-finite gradient at step {global_step + 1}{self._where(batch=False)}: "
            f"first in parameter {name!r}, of the {component}; the last micro-batch's losses were finite "
            f"({self._losses()}).{unscaled} Lower learning_rate or max_grad_norm, or look for extreme "
            f"values in the batch.{_kept(self.args.output_dir)}"
        )

    def _losses(self) -> str:
        return ", ".join(f"loss/{k} = {v:.4g}" for k, v in self._last_components.items()) or "unknown"

    def _where(self, batch: bool = True) -> str:
        parts = []
        if batch and self.args.gradient_accumulation_steps > 1:
            parts.append(f"micro-batch {self._micro_batches + 1} of {self.args.gradient_accumulation_steps}")
        if self.args.world_size > 1:
            parts.append(f"rank {self.args.process_index}")
        return f" ({', '.join(parts)})" if parts else ""


_HELP = {
    "preference": "Look for extreme ref_chosen_logps / ref_rejected_logps or weight values in the data, check beta "
                  "(IPO divides by it), or lower learning_rate.",
    "designer": "The advantage weights overflow: lower aw_max_weight (keep it finite) or raise aw_temperature.",
    "value": "The value head diverged: lower value_learning_rate.",
}


def _kept(output_dir: str) -> str:
    last = last_complete_checkpoint(output_dir)
    kept = (f" The weights were not updated with it; the last good checkpoint is {last} (resume with "
            "resume_from_checkpoint=True)." if last else " The weights were not updated with it; no checkpoint was "
            "saved yet.")
    return kept + (" Set skip_nonfinite_batches=True to skip such batches instead (counted as "
                   "nonfinite/skipped_batches).")


def _any_process(flag: bool, device) -> bool:
    """True when `flag` is true on any process (every process calls it at this point)."""
    flag = torch.tensor([float(flag)], device=device)
    torch.distributed.all_reduce(flag)
    return bool(flag.item() > 0)


def _value(x) -> float:
    return float(x.detach().float().mean()) if isinstance(x, torch.Tensor) else float(x)


# --- Numbers the user brings in the data: checked before training, not found as a NaN at step 300 ---

REFERENCE_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")


def check_numeric_columns(dataset, source: str) -> None:
    """Raise `DataError` for a `weight` or `ref_*_logps` value that is not a usable number.

    `weight` must be a finite number >= 0 (a negative weight would reverse a preference); the reference
    log-probs come in pairs of columns and are finite sums of log-probabilities, so <= 0. Pairs are named
    by their position in the prepared data (after dropped pairs) and the start of their prompt.
    """
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
    if "weight" in columns and len(dataset) and not any(dataset["weight"]):
        raise DataError(f"{source}, column 'weight': every pair's weight is 0, so the loss is 0 and nothing would be "
                        "learned. Give the pairs to learn from a weight above 0 (1.0 is neutral), or drop the column.")
