"""Preference scorer `function:pkg.module.fn`: a function with TRL GRPO's reward-function signature (as designer
rewards have) plays the user; the rows' columns are its keyword arguments."""

from __future__ import annotations

import math

from upo.errors import UPOError
from upo.eval.scorers import PreferenceScorer
from upo.rewards.registry import resolve_reward_func, reward_func_name
from upo.rewards.scoring import as_score, call_reward_function, value_list


def reply_completions(prompts: list, replies: list[str]) -> list:
    """Replies as the reward-function contract passes completions: one assistant message for a conversational
    prompt, the text for a text prompt."""
    return [[{"role": "assistant", "content": r}] if isinstance(p, list) else r for p, r in zip(prompts, replies)]


class FunctionScorer(PreferenceScorer):
    """A function with TRL GRPO's reward-function signature, `f(prompts, completions, **kwargs)`, as the user.

    `completions` are the replies (one assistant message each for conversational prompts), `kwargs` the rows'
    other columns (`reference_answer`, `chosen`, ...). None means no opinion (NaN: a tie in the win rate)."""

    kind = "function"
    usage = "function:pkg.module.fn"

    @classmethod
    def from_options(cls, argument, options, *, device, dtype, trust_remote_code):
        return cls(argument, timeout=options.scorer_timeout)

    def __init__(self, spec: str, timeout: float | None = None):
        self.spec = f"function:{spec}"
        self.func = resolve_reward_func(spec)
        self.name = reward_func_name(self.func)
        self.timeout = timeout

    def describe(self) -> str:
        return f"function {self.spec.partition(':')[2]}"

    def score_replies(self, prompts, replies, rows):
        columns = sorted({k for row in rows for k in row} - {"prompt", "prompts", "completions"})
        kwargs = {k: [row.get(k) for row in rows] for k in columns}
        # under the guard: an exception, sys.exit or Ctrl-C in the user's function is named, never a silent exit
        returned = call_reward_function(self.name, self.func, {**kwargs, "prompts": prompts,
                                        "completions": reply_completions(prompts, replies)},
                                        f"the {len(replies)} replies (preference scorer {self.spec})", self.timeout)
        values = value_list(returned)  # a list, or a 1-D numpy array or tensor, as a reward function may return
        if values is None or len(values) != len(replies):
            raise UPOError(f"preference scorer {self.spec}: returned {type(returned).__name__} "
                           f"{'of ' + str(len(values)) + ' values ' if values is not None else ''}"
                           f"for {len(replies)} replies; it must return one number (or None) per completion.")
        if replies and all(value is None for value in values):
            raise UPOError(f"preference scorer {self.spec}: returned None for all {len(replies)} replies: it has no "
                           "opinion on any, so every comparison would be a tie and the win rate 50% whatever the "
                           f"models say. Check the columns it reads (the rows have {columns or 'only a prompt'}), or "
                           "choose another scorer.")
        scores = []
        for k, value in enumerate(values):
            if value is None:
                scores.append(math.nan)
            else:
                try:
                    scores.append(as_score(value))
                except ValueError as error:  # not a number, a bool, not finite, too large for a float
                    raise UPOError(f"preference scorer {self.spec}: returned {value!r:.60} for row {k} ({error}); a "
                                   "score must be a finite number, or None for no opinion.") from None
        return scores
