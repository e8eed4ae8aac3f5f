"""Built-in objective `keywords`: required phrases present, banned phrases absent."""

from __future__ import annotations

import re

from upo.errors import ConfigError
from upo.rewards.completions import completion_text


class Keywords:
    """Reward function: fraction of ``required`` patterns found minus fraction of ``banned`` patterns found.

    Patterns are regular expressions searched case-insensitively anywhere in the completion (use ``\\b``
    for whole words). Score = (#required found / #required) - (#banned found / #banned), a term being 0
    when its list is empty, so it lies in [-1, 1]: in [0, 1] with only required patterns, in [-1, 0] with
    only banned ones. Higher = better. On the CLI, ``|`` separates patterns
    (``keywords:required=please|thank you,banned=damn``), so a pattern using ``|`` or ``,`` must be given
    from Python. At least one pattern is needed.
    """

    def __init__(
        self, required: str | list[str] | tuple[str, ...] = (), banned: str | list[str] | tuple[str, ...] = ()
    ):
        self.required = _as_patterns(required)
        self.banned = _as_patterns(banned)
        if not self.required and not self.banned:
            raise ConfigError("keywords needs at least one pattern: Keywords(required=[...], banned=[...]) or, "
                              "on the CLI, keywords:required=please|thank you,banned=damn|hell")
        self._required = _compile("required", self.required)
        self._banned = _compile("banned", self.banned)
        self.__name__ = "keywords"

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float]:
        return [_fraction_found(self._required, t) - _fraction_found(self._banned, t)
                for t in map(completion_text, completions)]

    def __repr__(self) -> str:  # part of the score cache key: it must show every parameter
        return f"Keywords(required={self.required!r}, banned={self.banned!r})"


def _as_patterns(patterns: str | list | tuple) -> tuple[str, ...]:
    # str(): the CLI parser turns a pattern such as 2024 into an int.
    return (patterns,) if isinstance(patterns, str) else tuple(map(str, patterns))


def _compile(field: str, patterns: tuple[str, ...]) -> list[re.Pattern]:
    try:
        return [re.compile(p, re.IGNORECASE) for p in patterns]
    except re.error as e:
        raise ConfigError(f"keywords: {field} pattern {e.pattern!r} is not a valid regular expression ({e})") from e


def _fraction_found(patterns: list[re.Pattern], text: str) -> float:
    return sum(bool(p.search(text)) for p in patterns) / len(patterns) if patterns else 0.0
