"""Designer objectives written as a user would write them (GRPO's reward-function signature), for the second frontier
task, examples/frontier_chitchat_engaging.yaml: chit-chat replies that keep the conversation going.

Used by import path from the repository root: `--reward_funcs examples.rewards.conversation.asks_question sentiment`.
The shipped pairs' labels do not encode it: `upo score` finds chosen ahead of rejected in 13.7% of the pairs and
behind in 12.5% (the rest tie), see docs/RESULTS.md.
"""

from upo.rewards import completion_text


def asks_question(prompts, completions, **kwargs):
    """1.0 when the reply asks the other person something (it holds a question mark), else 0.0."""
    return [1.0 if "?" in completion_text(c) else 0.0 for c in completions]


def word_variety(prompts, completions, **kwargs):
    """The share of distinct words among a reply's words (case-folded, punctuation stripped): 1.0 when no word
    repeats. None for a reply of fewer than three words, where the share says little."""
    scores = []
    for completion in completions:
        words = [w.strip(".,!?;:'\"()").lower() for w in completion_text(completion).split()]
        words = [w for w in words if w]
        scores.append(len(set(words)) / len(words) if len(words) >= 3 else None)
    return scores
