"""Score both responses of every pair with each designer objective: once, before training, validated, cached.

UPO learns the designer objectives offline from the responses already in the preference data, so each
objective ``r_k`` is computed here once per (chosen, rejected) response and never during training.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from upo.errors import ConfigError, DataError, Interrupted, RewardFunctionError, interruption
from upo.files import default_cache_dir
from upo.rewards.cache import (
    cache_file,
    data_fingerprint,
    function_identity,
    read_scores,
    write_scores,
)
from upo.rewards.guard import UserFunctionRaised, UserFunctionTimeout, call_user_function
from upo.rewards.registry import RewardFunc, as_spec_list, check_unique_names, resolve_reward_func, reward_func_name

logger = logging.getLogger(__name__)

Scores = tuple[list[float | None], list[float | None]]


def precomputed_columns(name: str) -> tuple[str, str]:
    """The dataset columns that may hold objective ``name``'s scores already: (chosen column, rejected column)."""
    return f"reward_{name}_chosen", f"reward_{name}_rejected"


def score_designer_rewards(
    prompts: list,
    chosen: list,
    rejected: list,
    reward_funcs: list,
    extra_columns: dict[str, list] | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 256,
    show_progress: bool = True,
    use_cache: bool = True,
    timeout: float | None = None,
) -> dict[str, Scores]:
    """Designer-reward scores of every chosen and rejected response, per objective name.

    Args:
        prompts, chosen, rejected: the N pairs; strings, or message lists for conversational data.
        reward_funcs: specs as ``resolve_reward_funcs`` takes them (callables, built-in names, import
            paths). A spec that is a string ``name`` whose scores the data already holds in the columns
            ``precomputed_columns(name)`` takes them from there, and needs no function.
        extra_columns: the dataset's other columns, N values each, passed to the functions as kwargs.
        cache_dir: folder of the score files; default ``default_cache_dir() / "rewards"``.
        batch_size: pairs per call; a call scores the batch's chosen responses, then its rejected ones
            (``completions`` holds 2 * batch_size values, ``prompts`` and kwargs are repeated to match).
        show_progress: a tqdm bar per objective.
        use_cache: read and write the score files (see ``upo.rewards.cache``); a function scored from the
            cache is not called at all.
        timeout: seconds one call of a reward function may take (``reward_timeout``); None: no limit. Every
            call runs under ``upo.rewards.guard``: an exception, ``sys.exit`` or a timeout inside it becomes
            a RewardFunctionError naming the function and the rows, Ctrl-C an ``Interrupted`` naming them.

    Returns:
        ``{name: (chosen_scores, rejected_scores)}`` in the order of ``reward_funcs``, each a list of N
        floats or None (None: the objective does not apply to that response).

    Raises:
        RewardFunctionError: a function raised, exited, timed out, returned the wrong number of values, or a
            value that is not a finite number or None (bools included); the message names the function, row
            and response.
        DataError: the columns differ in length, or a precomputed column is missing its pair or holds a bad
            value (the message names the column and row).
        ConfigError: a spec does not resolve, two objectives share a name, or batch_size < 1.
    """
    prompts, chosen, rejected = list(prompts), list(chosen), list(rejected)
    extra = {name: list(values) for name, values in (extra_columns or {}).items()}
    _check_columns(prompts, chosen, rejected, extra)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")

    objectives: list[tuple[str, RewardFunc | tuple[str, str]]] = []
    for spec in as_spec_list(reward_funcs):
        columns = precomputed_columns(spec) if isinstance(spec, str) else ()
        if any(c in extra for c in columns):
            objectives.append((spec, columns))
        else:
            func = resolve_reward_func(spec)
            objectives.append((reward_func_name(func), func))
    check_unique_names([name for name, _ in objectives])

    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "rewards"
    needs_key = use_cache and any(callable(source) for _, source in objectives)
    data_key = data_fingerprint(prompts, chosen, rejected, extra) if needs_key else None
    scores = {}
    for name, source in objectives:
        if isinstance(source, tuple):
            scores[name] = _read_precomputed(name, source, extra)
            continue
        identity = function_identity(source, name) if use_cache else None
        path = cache_file(folder, data_key, identity) if identity else None
        cached = read_scores(path, len(chosen)) if path else None
        if cached is not None:
            logger.info("designer reward %r: scores read from %s", name, path)
            scores[name] = cached
            continue
        scores[name] = _score(name, source, prompts, chosen, rejected, extra, batch_size, show_progress, timeout)
        if path:
            write_scores(path, identity, *scores[name])
    for name, (chosen_scores, rejected_scores) in scores.items():
        if chosen_scores and all(v is None for v in chosen_scores + rejected_scores):
            # None means "does not apply"; applying to no response at all turns the objective silently off.
            raise RewardFunctionError(
                f"reward function {name!r} returned None for all {2 * len(chosen_scores)} responses: it applies to "
                f"none of them, so its designer term would be silently off. Check the columns it reads (the data "
                f"has {sorted(extra) or 'no columns besides prompt, chosen and rejected'}), or remove it from "
                "reward_funcs.")
    return scores


def _check_columns(prompts: list, chosen: list, rejected: list, extra: dict[str, list]) -> None:
    for column, values in {"chosen": chosen, "rejected": rejected, **extra}.items():
        if len(values) != len(prompts):
            raise DataError(f"column {column!r} has {len(values)} rows but there are {len(prompts)} prompts")
    for reserved in ("prompts", "completions"):
        if reserved in extra:  # it would collide with the reward function's own argument
            raise DataError(f"a dataset column is named {reserved!r}, which reward functions take as an "
                            "argument; rename the column")


def value_list(values: Any) -> list | None:
    """What a reward function (or a function scorer) returned, as a list of its values, one per completion: a list or
    tuple, or a one-dimensional numpy array or torch tensor (as GRPO's reward functions may return); None for
    anything else (a scalar, a generator, a column vector, a mapping)."""
    if isinstance(values, (list, tuple)):
        return list(values)
    if isinstance(values, np.ndarray) or type(values).__module__.startswith("torch"):
        shape = getattr(values, "shape", None)
        if shape is not None and len(shape) == 1:
            return values.tolist()
    return None


def _kind(values: Any) -> str:
    shape = getattr(values, "shape", None)
    return f"{type(values).__name__} of shape {tuple(shape)}" if shape is not None else type(values).__name__


def as_score(value: Any) -> float | None:
    """A validated score; ValueError says why the value is not one."""
    if value is None:
        return None
    # bool is an int subclass, but a reward returning True/False is almost always a bug (a forgotten float()).
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError("not a number (a bool is rejected too: convert it with float())")
    try:
        number = float(value)
    except OverflowError:  # an int beyond a float's range (about 1.8e308)
        raise ValueError("too large for a float") from None
    if not math.isfinite(number):
        raise ValueError("not finite")
    return number


_SCORE_HELP = "a score must be a finite number, or None where the objective does not apply"


def _read_precomputed(name: str, columns: tuple[str, str], extra: dict[str, list]) -> Scores:
    missing = [c for c in columns if c not in extra]
    if missing:
        raise DataError(f"designer reward {name!r}: the data has precomputed scores in one column but not in "
                        f"{missing[0]!r}; give both {columns[0]!r} and {columns[1]!r}, or neither to score it")
    scores = ([], [])
    for column, column_scores in zip(columns, scores):
        for row, value in enumerate(extra[column]):
            try:
                column_scores.append(as_score(value))
            except ValueError as e:
                raise DataError(f"column {column!r} holds {value!r} at row {row}: {e}; {_SCORE_HELP}") from None
    return scores


def _score(name: str, func: RewardFunc, prompts: list, chosen: list, rejected: list, extra: dict[str, list],
           batch_size: int, show_progress: bool, timeout: float | None) -> Scores:
    chosen_scores, rejected_scores = [], []
    with tqdm(total=len(chosen), desc=f"Scoring {name}", unit="pair", disable=not show_progress) as bar:
        for start in range(0, len(chosen), batch_size):
            end = min(start + batch_size, len(chosen))
            batch_chosen, batch_rejected = _score_batch(name, func, prompts, chosen, rejected, extra, start, end,
                                                        timeout)
            chosen_scores += batch_chosen
            rejected_scores += batch_rejected
            bar.update(end - start)
    return chosen_scores, rejected_scores


def _score_batch(name: str, func: RewardFunc, prompts: list, chosen: list, rejected: list, extra: dict[str, list],
                 start: int, end: int, timeout: float | None = None) -> Scores:
    """Score rows [start, end) in one call: completions = their chosen responses, then their rejected ones."""
    size = end - start
    batch_prompts = prompts[start:end] * 2
    completions = chosen[start:end] + rejected[start:end]
    kwargs = {column: values[start:end] * 2 for column, values in extra.items()}

    def where(i: int) -> str:  # the dataset row and response of the batch's i-th completion
        return f"row {start + i % size} (the {'chosen' if i < size else 'rejected'} response)"

    rows = f"rows {start}-{end - 1}"
    try:
        values = call_reward_function(name, func, {**kwargs, "prompts": batch_prompts, "completions": completions},
                                      rows, timeout, raising=False)
    except UserFunctionRaised as batch_error:
        # Re-run one completion at a time to name the exact row: costs calls only on this failure path.
        for i in range(2 * size):
            try:
                one = {**{k: [v[i]] for k, v in kwargs.items()}, "prompts": [batch_prompts[i]],
                       "completions": [completions[i]]}
                call_reward_function(name, func, one, where(i), timeout, raising=False)
            except UserFunctionRaised as row_error:
                raise RewardFunctionError(f"reward function {name!r} raised on {where(i)}: "
                                          f"{row_error.reason}") from row_error.original
        raise RewardFunctionError(f"reward function {name!r} raised on the batch of {rows} (each row alone scores "
                                  f"fine): {batch_error.reason}") from batch_error.original

    returned = values
    values = value_list(values)
    if values is None:
        raise RewardFunctionError(f"reward function {name!r} returned a {_kind(returned)} for rows "
                                  f"{start}-{end - 1}: expected a list of {2 * size} values, one per completion")
    if len(values) != 2 * size:
        raise RewardFunctionError(f"reward function {name!r} returned {len(values)} values for rows {start}-{end - 1}: "
                                  f"expected {2 * size}, one per completion ({size} chosen then {size} rejected)")
    scores = []
    for i, value in enumerate(values):
        try:
            scores.append(as_score(value))
        except ValueError as e:
            raise RewardFunctionError(f"reward function {name!r} returned {value!r} for {where(i)}: {e}; "
                                      f"{_SCORE_HELP}") from None
    return scores[:size], scores[size:]


def call_reward_function(name: str, func: RewardFunc, kwargs: dict, where: str, timeout: float | None = None,
                         raising: bool = True):
    """One guarded call (upo.rewards.guard); a failure, timeout or interruption names the function and `where`."""
    try:
        return call_user_function(func, kwargs, timeout)
    except UserFunctionTimeout:
        raise RewardFunctionError(
            f"reward function {name!r} did not return within reward_timeout={timeout:g} s on {where}; upo stopped "
            "waiting for it. Make it faster, or raise reward_timeout.") from None
    except Interrupted as error:
        raise interruption(f"while reward function {name!r} scored {where}", error) from error
    except UserFunctionRaised as error:
        if not raising:
            raise
        raise RewardFunctionError(f"reward function {name!r} raised on {where}: {error.reason}") from error.original
