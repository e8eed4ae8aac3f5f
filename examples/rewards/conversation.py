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
