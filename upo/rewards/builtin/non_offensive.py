"""Built-in objective `non_offensive`: one minus the probability that the response is offensive."""

from __future__ import annotations

from upo.rewards.completions import completion_text


def non_offensive(prompts: list, completions: list, **kwargs) -> list[float]:
    """``1 - profanity_check.predict_prob(text)`` for each completion, in [0, 1]; higher = less offensive.

    alt-profanity-check is a linear model over word n-grams trained on offensive and toxic comments; it
    flags insults and profanity, not subtler harm. An empty completion scores about 0.96.
    """
    # Imported here: scikit-learn takes seconds to import, and `import upo` must stay fast.
    from profanity_check import predict_prob

    texts = [completion_text(c) for c in completions]
    if not texts:  # predict_prob rejects an empty list
        return []
    # One call on the whole list: calling it text by text is about 150 times slower.
    return [1.0 - float(p) for p in predict_prob(texts)]
