"""Preference scorers: what plays the user when `upo eval` asks which of two replies is better.

A `--preference_scorer` spec is `KIND` or `KIND:ARGUMENT`. Each kind is one file of this package, named for it
(`reward_model.py` for `reward_model:PATH_OR_ID`), holding a `PreferenceScorer` whose `kind` is that name, whose
`usage` says how a spec names it, and whose `from_options` builds it from the spec's argument and the scorer's options
(`upo.eval.settings.ScorerArguments`). Adding a scorer is adding its file, and its options to `ScorerArguments`:
`build_preference_scorer`, the help and errors of `--preference_scorer` and the frontier's `eval:` keys follow.

A pointwise scorer scores each reply alone (`score_replies`): the preference score is their mean, a model wins a
prompt when its reply scores higher than the reference model's (ties: one half). A pairwise scorer (`pairwise =
True`, the judge) compares the two replies (`compare`): 1 when the model's reply wins, 0 when it loses, one half for
a tie; its preference score is that mean, which is its win rate.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import ClassVar

from upo.errors import ConfigError


class PreferenceScorer:
    """A preference scorer: `score_replies` (pointwise) or, with `pairwise = True`, `compare`."""

    kind: ClassVar[str]  # the spec's prefix, and the name of the scorer's file
    usage: ClassVar[str]  # how a spec names it, for the help: `reward_model:PATH_OR_ID`
    needs_argument: ClassVar[bool] = True  # `KIND:ARGUMENT` always (else `KIND` alone is a spec too)
    spec: str = ""
    pairwise: bool = False

    @classmethod
    def from_options(cls, argument: str | None, options, *, device: str | None, dtype,
                     trust_remote_code: bool) -> PreferenceScorer:
        """The scorer of the spec `kind:argument`, with its options from `options` (a `ScorerArguments`) and where
        `upo eval` runs its models (`device`, `dtype`, `trust_remote_code`), for the scorers that load one."""
        raise NotImplementedError

    @classmethod
    def check_options(cls, argument: str | None, options) -> None:
        """What can be checked of the spec before anything is evaluated (a frontier checks it before its first run
        trains). By default the scorer is built, which loads nothing; a scorer that loads a model checks that it can
        be found instead."""
        cls.from_options(argument, options, device="cpu", dtype=None, trust_remote_code=False)

    @classmethod
    def check_rows(cls, rows: list[dict]) -> None:
        """Refuse (ConfigError) evaluation rows this scorer cannot score; by default it scores any."""

    def describe(self) -> str:
        return self.spec

    def score_replies(self, prompts: list, replies: list[str], rows: list[dict]) -> list[float]:
        """One score per reply (higher: preferred); NaN where the scorer has no opinion."""
        raise NotImplementedError

    def compare(self, prompts: list, replies: list[str], reference_replies: list[str], rows: list[dict]) -> list[float]:
        """Per prompt, how often `replies[k]` beats `reference_replies[k]`: 1, 0, or one half for a tie."""
        raise NotImplementedError


@functools.cache
def scorer_kinds() -> dict[str, type[PreferenceScorer]]:
    """Every kind of scorer by its name: the files of this package (see the module docstring)."""
    kinds = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        found = [value for value in vars(module).values() if isinstance(value, type)
                 and issubclass(value, PreferenceScorer) and getattr(value, "kind", None) == module_info.name]
        if len(found) != 1:
            raise TypeError(f"{module.__file__} must define one PreferenceScorer with kind = {module_info.name!r}.")
        kinds[module_info.name] = found[0]
    return kinds


def scorer_usage() -> str:
    """The specs `--preference_scorer` takes, for its help: `function:pkg.module.fn, ... or similarity[:FOLDER]`."""
    usages = [scorer.usage for scorer in scorer_kinds().values()]
    return ", ".join(usages[:-1]) + " or " + usages[-1]


def choose_a_scorer() -> str:
    """The end of every error about a spec: the specs there are."""
    return f"Choose {scorer_usage()}."


def _scorer_kind(spec: str) -> tuple[type[PreferenceScorer], str | None]:
    kind, _, argument = spec.partition(":")
    scorer = scorer_kinds().get(kind)
    if scorer is None:
        raise ConfigError(f"--preference_scorer {spec!r}: unknown kind {kind!r}. {choose_a_scorer()}")
    if scorer.needs_argument and not argument:
        raise ConfigError(f"--preference_scorer {spec!r}: {kind!r} needs an argument. {choose_a_scorer()}")
    return scorer, argument or None


def build_preference_scorer(options, *, device: str | None = None, dtype=None,
                            trust_remote_code: bool = False) -> PreferenceScorer:
    """The scorer `options.preference_scorer` names, with its options from `options` (a `ScorerArguments`): every
    option's one default is there. `device`, `dtype`, `trust_remote_code`: where `upo eval` runs its models."""
    scorer, argument = _scorer_kind(options.preference_scorer)
    return scorer.from_options(argument, options, device=device, dtype=dtype, trust_remote_code=trust_remote_code)


def check_preference_scorer(options, rows: list[dict] | None = None) -> None:
    """The scorer `options` names checked without loading a model (its spec, its function's import, its model's
    folder, its judge's options) and, given the evaluation `rows`, that it can score them."""
    scorer, argument = _scorer_kind(options.preference_scorer)
    scorer.check_options(argument, options)
    if rows is not None:
        scorer.check_rows(rows)
