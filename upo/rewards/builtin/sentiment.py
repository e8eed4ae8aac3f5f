"""Built-in objective `sentiment`: VADER compound sentiment of the response."""

from __future__ import annotations

import functools

from upo.rewards.completions import completion_text


@functools.cache
def _analyzer():
    # Built once, on first use: it loads its lexicon file (shipped with vaderSentiment, offline).
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment(prompts: list, completions: list, **kwargs) -> list[float]:
    """VADER compound sentiment of each completion, in [-1, 1]; higher = more positive, 0 = neutral or empty.

    VADER is a lexicon and rule based model tuned for short, informal English (it reads negations,
    intensifiers, capitals and "!").
    """
    return [_analyzer().polarity_scores(completion_text(c))["compound"] for c in completions]
