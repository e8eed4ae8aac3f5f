"""TRL's `DPOConfig` (or a plain `transformers.TrainingArguments`) handed to `UPOTrainer`, as the `UPOConfig` it means.

A TRL user changes the trainer and keeps their config: `UPOTrainer(model, args=DPOConfig(...))`. Every field of
`UPOConfig` that the config has is copied as it stands after its own `__post_init__`, so the run behaves as TRL's
would (TRL's bf16 and activation checkpointing where it turned them on, its `loss_type`, ...); UPO's own options keep
their defaults (without `reward_funcs`, training is the chosen preference loss alone). A TRL option upo does not
implement (`upo.arguments.UNIMPLEMENTED`) set away from TRL's default, or a field of a subclass that UPOConfig does
not have, is refused in one line that names it; so is any other kind of config (KTOConfig, CPOConfig, SFTConfig, ...).
trl is not imported: the config is recognised by its class name and module.
"""

from __future__ import annotations

from dataclasses import fields

from transformers import TrainingArguments

from upo.arguments import UNIMPLEMENTED
from upo.config import UPOConfig
from upo.errors import ConfigError


def is_trl_dpo_config(args) -> bool:
    return any(cls.__name__ == "DPOConfig" and cls.__module__.split(".")[0] == "trl" for cls in type(args).__mro__)


def as_upo_config(args):
    """`args` as a `UPOConfig`: itself when it is one (or None), converted from TRL's `DPOConfig` or a plain
    `TrainingArguments`, else refused with the fix."""
    if args is None or isinstance(args, UPOConfig):
        return args
    kind = f"{type(args).__module__.split('.')[0]}'s {type(args).__name__}"
    if not (is_trl_dpo_config(args) or type(args) is TrainingArguments):
        raise ConfigError(
            f"args is {kind}: UPOTrainer takes a UPOConfig, TRL's DPOConfig or transformers' TrainingArguments. Build "
            "a UPOConfig with the same options (KTO is UPOConfig(loss_type=['kto']), SimPO, CPO and ORPO are "
            "loss_type ['simpo'], ['cpo'], ['orpo']).")
    options = {f.name for f in fields(UPOConfig) if f.init}
    values, refused = {}, []
    for f in fields(args):
        if not f.init:
            continue
        value = getattr(args, f.name)
        if f.name in options:
            values[f.name] = value
        elif f.name in UNIMPLEMENTED:
            default, why = UNIMPLEMENTED[f.name]
            if value != default and not (default is None and value == []):
                refused.append(f"{f.name}={value!r} ({why})")
        else:
            refused.append(f"{f.name}={value!r} (not an option of UPOConfig)")
    if refused:
        several = len(refused) > 1
        raise ConfigError(f"args is {kind} with {'options' if several else 'an option'} that upo does not implement: "
                          f"{'; '.join(refused)}. Set {'them' if several else 'it'} to TRL's default, or build a "
                          "UPOConfig.")
    return UPOConfig(**values)
