"""Designer rewards: the objectives UPO optimises besides user preferences, scored once before training.

Any GRPO-style reward function ``f(prompts, completions, **kwargs) -> list[float | None]`` works; the
built-ins each live in one small file of ``upo/rewards/builtin/`` and are importable from here by their
name (``from upo.rewards import readability, Length``). ``score_designer_rewards`` resolves specs, scores
every chosen and rejected response, validates the scores and caches them on disk.
"""

from upo.files import default_cache_dir
from upo.rewards.builtin import load_builtin
from upo.rewards.completions import completion_text
from upo.rewards.registry import (
    BUILTIN_REWARD_NAMES,
    builtin_reward_funcs,
    resolve_reward_func,
    resolve_reward_funcs,
    reward_func_name,
)
from upo.rewards.scoring import precomputed_columns, score_designer_rewards

# The built-ins by the name of their function or class: `readability`, `Length`, ...
_BUILTINS = {obj.__name__: name for name in BUILTIN_REWARD_NAMES for obj in [load_builtin(name)]}

__all__ = [
    *_BUILTINS,
    "BUILTIN_REWARD_NAMES",
    "builtin_reward_funcs",
    "completion_text",
    "default_cache_dir",
    "precomputed_columns",
    "resolve_reward_func",
    "resolve_reward_funcs",
    "reward_func_name",
    "score_designer_rewards",
]


def __getattr__(name):
    if name in _BUILTINS:
        return load_builtin(_BUILTINS[name])
    raise AttributeError(f"module 'upo.rewards' has no attribute {name!r}")
