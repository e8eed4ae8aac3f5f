"""A user's reward module, imported by tests through its dotted path (`reward_fixtures.exclamations`)."""

NOT_CALLABLE = 3


def exclamations(prompts, completions, **kwargs):
    """Number of "!" in each completion."""
    return [float(c.count("!")) for c in completions]


class ExclamationReward:
    """A class, not an instance: resolving it by path must fail clearly."""

    def __call__(self, prompts, completions, **kwargs):
        return exclamations(prompts, completions)
