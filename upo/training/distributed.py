"""Checks that a launch with several processes really trains as one job, on the engine the user asked for.

We never launch processes or talk between them ourselves: `torchrun` and `accelerate launch` start them,
accelerate and `transformers.Trainer` wire them. Two of their fallbacks are silent, and both waste a run:

* on a machine without GPUs, a launch of N processes without `use_cpu=True` gives N *independent*
  single-process runs (transformers only logs a line), each on all the data;
* an accelerate config asking for DeepSpeed, or for FSDP1, on a machine where accelerate cannot enable them
  (CPU) runs plain data parallel instead, with no sharding. (FSDP2 runs on CPU: `upo.training.fsdp`.)

`check_launch` turns the first into an error with the fix and the second into a warning.
"""

from __future__ import annotations

import os
import warnings

from upo.errors import ConfigError
from upo.training.fsdp import requested_fsdp_version


def check_launch(args) -> None:
    """Raise (or warn) when the launcher and the training setup disagree; see the module docstring."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and args.world_size == 1:
        raise ConfigError(
            f"Launched as {launched} processes (WORLD_SIZE={launched}), but each would train alone on all the data: "
            "accelerate found no GPU to run them together on. On a machine without GPUs, set use_cpu=True "
            "(--use_cpu true) so that the processes train as one job over gloo."
        )
    state = getattr(args, "distributed_state", None)
    engine = str(getattr(state, "distributed_type", "")).rsplit(".", 1)[-1]
    for requested, name in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DEEPSPEED")):
        if os.environ.get(requested, "false").lower() != "true" or engine == name:
            continue
        if name == "FSDP" and engine in ("MULTI_CPU", "NO") and requested_fsdp_version(args) == 2:
            continue  # upo enables FSDP2 on CPU itself (upo.training.fsdp); one process has nothing to shard
        what = "FSDP1 (fsdp_version: 1)" if name == "FSDP" else name
        fix = " Use fsdp_version: 2 (examples/accelerate/fsdp2.yaml), which runs on CPU too." if name == "FSDP" else ""
        warnings.warn(
            f"The accelerate config asks for {what}, but accelerate runs {engine or 'no distributed engine'}: it "
            f"enables {name} only on GPUs (and similar accelerators), never with use_cpu. Training goes on as "
            f"plain data parallel, without sharding.{fix}",
            stacklevel=2,
        )
