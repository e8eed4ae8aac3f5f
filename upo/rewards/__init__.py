"""Designer rewards: the objectives UPO optimises besides user preferences, scored once before training.

Any GRPO-style reward function ``f(prompts, completions, **kwargs) -> list[float | None]`` works; the
built-ins each live in one small file. ``score_designer_rewards`` resolves specs, scores every chosen and
rejected response, validates the scores and caches them on disk.
"""

from upo.files import default_cache_dir
from upo.rewards.completions import completion_text
from upo.rewards.keywords import Keywords
from upo.rewards.length import Length
from upo.rewards.non_offensive import non_offensive
from upo.rewards.readability import readability
from upo.rewards.registry import (
    BUILTIN_REWARD_NAMES,
    builtin_reward_funcs,
    resolve_reward_func,
    resolve_reward_funcs,
    reward_func_name,
)
from upo.rewards.scoring import precomputed_columns, score_designer_rewards
from upo.rewards.sentiment import sentiment

__all__ = [
    "BUILTIN_REWARD_NAMES",
    "Keywords",
    "Length",
    "builtin_reward_funcs",
    "completion_text",
    "default_cache_dir",
    "non_offensive",
    "precomputed_columns",
    "readability",
    "resolve_reward_func",
    "resolve_reward_funcs",
    "reward_func_name",
    "score_designer_rewards",
    "sentiment",
]
