"""Built-in objective `readability`: Flesch reading ease of the response."""

from __future__ import annotations

import textstat

from upo.rewards.completions import completion_text


def readability(prompts: list, completions: list, **kwargs) -> list[float | None]:
    """Flesch reading ease of each completion (textstat ``flesch_reading_ease``); higher = simpler text.

    206.835 - 1.015 * words/sentences - 84.6 * syllables/words: about 0-100 for ordinary English (90+ easy
    for an 11-year-old, under 30 for academic prose), unbounded in principle (very dense text goes below 0,
    one-word sentences above 100). ``None`` for a completion without any word, where the formula is undefined
    (textstat would return 0.0, which would read as "very hard").
    """
    texts = [completion_text(c) for c in completions]
    return [textstat.flesch_reading_ease(t) if textstat.lexicon_count(t) else None for t in texts]
