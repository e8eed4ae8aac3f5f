"""Each optimizer step's gradients between the backward passes and the update: unscaled once, checked, then clipped.

transformers' Trainer clips through `accelerator.clip_grad_norm_`, which divides the gradients by fp16's loss scale
itself, right before clipping. upo reads the gradients earlier, in its non-finite check (`upo.training.numerics`),
and read scaled there, the scaler's routine overflows would look like faults. So at each optimizer step:

1. `unscale_once`: the gradients are divided by the loss scale (fp16 with accelerate's `GradScaler`; nothing in fp32
   and bf16). The scaler records whether they overflowed, and its `step` then skips the update and lowers the scale;
2. the non-finite check reads the unscaled gradients (`NonFiniteGuard.after_backward`);
3. `clip_gradients`: the value head's gradient is clipped on its own, then the policy's (docs/METHOD.md), both by
   their norm over every process, and neither divided by the scale a second time (a GradScaler refuses a second
   unscale, which accelerate's `clip_grad_norm_` would attempt under FSDP and fp16).

Sharded gradients (FSDP2's DTensors) are normed over their mesh, as accelerate does
(`Accelerator._clip_grad_norm_dtensor_aware`); FSDP1 is refused (`upo.training.distributed`). Under DeepSpeed none
of this runs: the engine unscales, checks, clips (every gradient by one norm) and steps inside the backward pass.
"""

from __future__ import annotations

import math

import torch
from torch.distributed.tensor import DTensor


def unscale_once(accelerator) -> None:
    """Divide every gradient by fp16's loss scale, once per optimizer step (a no-op without a scaler)."""
    if accelerator.scaler is not None:
        accelerator.unscale_gradients()


def clip_gradients(model: torch.nn.Module, head_parameters: list, max_norm: float) -> torch.Tensor:
    """Clip the value head's gradient and the policy's (every other parameter) to `max_norm`, each by its own norm;
    `max_norm=inf` only measures. Returns the policy's norm before clipping (a 0-dim tensor), the logged grad_norm."""
    head = {id(p) for p in head_parameters}
    if head_parameters:
        clip_grad_norm(head_parameters, max_norm)
    return clip_grad_norm([p for p in model.parameters() if id(p) not in head], max_norm)


def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """`torch.nn.utils.clip_grad_norm_` over gradients that may be sharded on one or several meshes (each group's
    norm is gathered on its mesh, then the norms are combined). Returns the total 2-norm before clipping."""
    groups: dict = {}
    for p in parameters:
        if p.grad is not None:
            groups.setdefault(p.grad.device_mesh if isinstance(p.grad, DTensor) else None, []).append(p)
    if not groups:
        return torch.zeros(())
    norms = [torch.nn.utils.get_total_norm([p.grad for p in group]) for group in groups.values()]
    norms = [n.full_tensor() if isinstance(n, DTensor) else n for n in norms]
    device = norms[0].device
    total = torch.linalg.vector_norm(torch.stack([n.to(device) for n in norms]))
    if math.isfinite(max_norm):
        for mesh, group in groups.items():
            norm = total if mesh is None else DTensor.from_local(total.to(group[0].grad.device), mesh)
            torch.nn.utils.clip_grads_with_norm_(group, max_norm, norm)
    return total


class EngineHeadGradient:
    """Under DeepSpeed, the policy's gradient norm, which the engine does not give.

    The engine clips by one norm over every gradient, the value head's included, reports that norm, and shows no
    gradient. The value head's gradient, as the engine applies it, is collected here by hooks on its parameters
    during the backward passes: divided by the loss scale (fp16), summed over the step's micro-batches (the engine
    divides each loss by their number), averaged over the processes as the engine averages. The policy's norm is
    then sqrt(engine norm^2 - head norm^2); every process calls `policy_norm` once per optimizer step.
    """

    def __init__(self, head_parameters: list, engine):
        self.engine = engine
        self.sums: dict[int, torch.Tensor] = {}
        for k, p in enumerate(head_parameters):
            p.register_hook(lambda grad, k=k: self._add(k, grad))

    def _add(self, key: int, grad: torch.Tensor) -> None:
        scale = getattr(self.engine.optimizer, "loss_scale", None) or 1.0
        grad = grad.detach().float() / scale
        self.sums[key] = grad if key not in self.sums else self.sums[key] + grad

    def policy_norm(self) -> torch.Tensor | None:
        total = self.engine.get_global_grad_norm()
        if total is None or not self.sums:
            return total
        head = torch.cat([self.sums[k].reshape(-1) for k in sorted(self.sums)])
        self.sums = {}
        if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            torch.distributed.all_reduce(head)
            head = head / torch.distributed.get_world_size()
        total = torch.as_tensor(total, dtype=torch.float64)
        return torch.sqrt(torch.clamp(total ** 2 - head.double().pow(2).sum(), min=0)).float()
