"""The built-in designer objectives, one file each: the file's name is the objective's name.

A built-in named `x` is `x` in `upo/rewards/builtin/x.py`: a function with TRL GRPO's reward signature, or a class
(named `x` in CamelCase, `Length` for `length`) whose instances are reward functions and whose keyword arguments
are the parameters a spec gives (`length:target_words=30`). Adding a built-in is adding its file;
`upo.rewards.registry` finds it by name.
"""

from __future__ import annotations

import importlib
import pkgutil


def builtin_names() -> tuple[str, ...]:
    """The built-ins' names, from the files of this package (nothing is imported)."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")))


def load_builtin(name: str):
    """The function or class of the built-in `name` (see the module docstring)."""
    module = importlib.import_module(f"{__name__}.{name}")
    camel = "".join(part.capitalize() for part in name.split("_"))
    return getattr(module, name, None) or getattr(module, camel)
