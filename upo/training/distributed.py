"""Checks that a launch with several processes really trains as one job, on the engine the user asked for.

We never launch processes or talk between them ourselves: `torchrun` and `accelerate launch` start them,
accelerate and `transformers.Trainer` wire them. Two of their fallbacks are silent, and both waste a run:

* on a machine without GPUs, a launch of N processes without `use_cpu=True` gives N *independent*
  single-process runs (transformers only logs a line), each on all the data;
* an accelerate config asking for FSDP or DeepSpeed on a machine where accelerate cannot enable them
  (CPU) runs plain data parallel instead, with no sharding.

`check_launch` turns the first into an error with the fix and the second into a warning.
"""

from __future__ import annotations

import os
import warnings

from upo.errors import ConfigError


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
        if os.environ.get(requested, "false").lower() == "true" and engine != name:
            warnings.warn(
                f"The accelerate config asks for {name}, but accelerate runs {engine or 'no distributed engine'}: it "
                f"enables {name} only on GPUs (and similar accelerators), never with use_cpu. Training goes on as "
                "plain data parallel, without sharding.",
                stacklevel=2,
            )
