"""Which distributed engine a launch asks for, and whether it is installed: read from the environment that
`accelerate launch` sets from its config, before anything is loaded.

`UPOConfig` checks the engine when it is built (`check_engine_installed`), before transformers sets up the
processes; the wiring of the engines into a run (sharding on CPU, the reference model) is `upo.training.distributed`.
"""

from __future__ import annotations

import importlib.util
import os

from upo.errors import ConfigError


def deepspeed_requested() -> bool:
    """Whether the launcher's accelerate config asks for DeepSpeed."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def check_engine_installed() -> None:
    """A launch asking for DeepSpeed where the package is missing: one line with the fix, not an ImportError from
    inside accelerate (on GPUs it comes while transformers sets up the processes, on CPU when the Trainer starts)."""
    if not deepspeed_requested() or importlib.util.find_spec("deepspeed"):
        return
    stage = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "")
    raise ConfigError(
        f"The accelerate config asks for DeepSpeed{f' ZeRO-{stage}' if stage else ''}, but the deepspeed package is "
        "not installed: pip install deepspeed (on CPU it compiles one op on first use, a few minutes), or shard "
        "with FSDP2, which needs nothing more: accelerate launch --config_file examples/accelerate/fsdp2.yaml."
    )
