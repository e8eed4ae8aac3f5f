"""The designer-reward contract: what a reward function scores, what it is called, and how specs resolve.

A reward function follows TRL GRPO's signature, so GRPO reward functions work unchanged:
``f(prompts, completions, **kwargs) -> list[float | None]``, one value per completion, ``None`` for
"not applicable to this row". kwargs carry every other dataset column. The function's ``__name__`` is
its metric name (``rewards/{name}/mean``).

A spec is what a user writes to pick one:

* a callable, used as is;
* a built-in name (``upo/rewards/builtin/``: ``readability``, ``non_offensive``, ``length``, ``sentiment``,
  ``keywords``, ...);
* a built-in with parameters, as on the CLI: ``length:target_words=30``,
  ``keywords:required=please|thank you,banned=damn|hell`` (ints and floats are parsed, ``|`` separates
  list items, ``,`` separates parameters);
* an import path: ``my_pkg.my_module.my_reward`` or ``my_pkg.my_module:my_reward``. Only these
  explicit paths are imported; nothing is unpickled or evaluated.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from upo.errors import ConfigError
from upo.rewards.builtin import builtin_names, load_builtin

RewardFunc = Callable[..., list]

BUILTIN_REWARD_NAMES = builtin_names()


def reward_func_name(func: RewardFunc) -> str:
    """The metric name of a reward function: its ``__name__``."""
    name = getattr(func, "__name__", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"reward function {func!r} has no __name__; set one, it names the objective's metrics")
    return name


def builtin_reward_funcs() -> dict[str, RewardFunc | type]:
    """Built-in objectives by name: a function, or a class whose instances are reward functions."""
    return {name: load_builtin(name) for name in BUILTIN_REWARD_NAMES}


def resolve_reward_funcs(specs: Any) -> list[RewardFunc]:
    """Resolve specs (see the module docstring) to reward functions with distinct names.

    Raises:
        ConfigError: a spec names no built-in and no importable callable, has bad parameters, or two
            functions share a name.
    """
    funcs = [resolve_reward_func(spec) for spec in as_spec_list(specs)]
    check_unique_names([reward_func_name(f) for f in funcs])
    return funcs


def as_spec_list(specs: Any) -> list:
    """One spec alone is accepted where a list is expected (iterating a string would give characters)."""
    return [specs] if isinstance(specs, str) or callable(specs) else list(specs)


def check_unique_names(names: list[str]) -> None:
    """Raise ConfigError when two objectives share a name: their metrics and cache files would collide."""
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(
            f"several reward functions are named {', '.join(map(repr, duplicates))}; give each a distinct "
            f"__name__ (built-in instances allow it: f = Length(target_words=30); f.__name__ = 'length_30')")


def resolve_reward_func(spec: Any) -> RewardFunc:
    """Resolve one spec (see the module docstring) to a reward function."""
    if callable(spec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"reward function spec {spec!r} is neither a callable nor a name.{_SPEC_HELP}")
    spec = spec.strip()
    name, _, params = spec.partition(":")
    if name in BUILTIN_REWARD_NAMES:
        return _build_builtin(spec, name, load_builtin(name), _parse_params(spec, params))
    return _import_reward_func(spec)


_SPEC_HELP = (f" Use a built-in ({', '.join(BUILTIN_REWARD_NAMES)}; parameters as in length:target_words=30) "
              "or an import path to your function: my_pkg.my_module.my_reward (or my_pkg.my_module:my_reward).")


def _parse_params(spec: str, text: str) -> dict[str, Any]:
    params = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"reward function spec {spec!r}: parameter {item!r} is not key=value.{_SPEC_HELP}")
        values = [_parse_value(v.strip()) for v in value.split("|")]
        params[key.strip()] = values if "|" in value else values[0]
    return params


def _parse_value(text: str) -> int | float | str:
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def _build_builtin(spec: str, name: str, builtin: RewardFunc | type, params: dict[str, Any]) -> RewardFunc:
    if not isinstance(builtin, type):
        if params:
            raise ConfigError(f"reward function spec {spec!r}: the built-in {name!r} takes no parameters")
        return builtin
    try:
        return builtin(**params)
    except TypeError as e:  # an unknown parameter name
        raise ConfigError(f"reward function spec {spec!r}: {e}. See help(upo.rewards.builtin.{name}).") from e


def _import_reward_func(spec: str) -> RewardFunc:
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"unknown reward function {spec!r}.{_SPEC_HELP}")
    # A console script (`upo train`) does not put the working directory on sys.path, but users keep their
    # reward module next to their config; appended, so installed packages keep precedence.
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        func = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"reward function {spec!r} could not be imported ({e}).{_SPEC_HELP}") from e
    except SyntaxError as e:  # the user's module itself is broken: point at the line
        raise ConfigError(
            f"reward function {spec!r} could not be imported ({e.msg} in {e.filename}, line {e.lineno}): "
            "fix that line of the module."
        ) from e
    except (Exception, SystemExit) as e:  # the module's own code failed, or ended the program, while importing
        what = f"called sys.exit({e.code!r})" if isinstance(e, SystemExit) else f"raised {type(e).__name__}: {e}"
        raise ConfigError(f"reward function {spec!r}: importing {module_name!r} {what}. Importing a reward module "
                          "must only define its functions: move the rest under `if __name__ == '__main__':`.") from e
    if isinstance(func, type) or not callable(func):
        raise ConfigError(f"reward function {spec!r} is {func!r}, not a function or a callable instance.{_SPEC_HELP}")
    return func
