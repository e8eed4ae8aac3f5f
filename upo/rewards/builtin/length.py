"""Built-in objective `length`: closeness of the response to a target number of words."""

from __future__ import annotations

import math

from upo.errors import ConfigError
from upo.rewards.completions import completion_text


class Length:
    """Reward function scoring closeness to ``target_words`` words: ``exp(-|n - target| / target)``.

    ``n`` is the number of whitespace-separated words of the completion. The score lies in (0, 1], is 1
    exactly at the target, exp(-1) ~ 0.37 for an empty response or one twice the target, and decays
    symmetrically in words, relative to the target. Higher = closer to the target.

    The instance's ``__name__`` is ``"length"``; set another on the instance to use two targets at once.
    """

    def __init__(self, target_words: int = 50):
        if isinstance(target_words, bool) or not isinstance(target_words, int) or target_words < 1:
            raise ConfigError(f"length: target_words must be a positive integer, got {target_words!r}")
        self.target_words = target_words
        self.__name__ = "length"

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float]:
        target = self.target_words
        return [math.exp(-abs(len(completion_text(c).split()) - target) / target) for c in completions]

    def __repr__(self) -> str:  # part of the score cache key: it must show every parameter
        return f"Length(target_words={self.target_words})"
