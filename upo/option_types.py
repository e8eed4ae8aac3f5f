"""Option values from a YAML file (or any mapping) checked against the type each option declares, as a flag is.

A flag's text goes through argparse, which converts it to the option's type and checks its choices. A value from a
YAML file does not: `HfArgumentParser` takes it as the option's default, and argparse neither converts a default
that is not text nor checks it against the choices. So, left alone, `reward_funcs: {readability: 1.0}` trained with
the mapping's keys and dropped its weights without a word, `loss_type: {sigmoid: 1}` trained, `max_steps: true`
became one step, and `optim: adamw_foo` was refused by transformers as "adamw_foo is not a valid OptimizerNames",
without the option's name. `check_option_values` refuses, naming the option, the value and what it takes:

* a mapping where the option takes no mapping (the usual slip: weights written beside the names);
* a list where the option takes one number or one true/false;
* true/false where it takes a number, a number where it takes true/false;
* a value outside the option's choices (transformers' enums: `optim`, `lr_scheduler_type`, the strategies, ...);
* a list entry of the wrong kind (a list in `reward_weights`, a mapping in `loss_type`).

It returns the values with what is only a spelling converted: a number where text is expected (`run_name: 7`), a
numeric text in a list of numbers (`reward_weights: ["0.5"]`). Text for a scalar option is left to argparse, which
converts it exactly as a flag's (and names the option when it cannot).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any

from upo.errors import ConfigError

# What an option's declared type takes, by kind of YAML value.
_SCALARS = {bool: "bool", int: "int", float: "float", str: "str"}


@dataclasses.dataclass(frozen=True)
class OptionType:
    """The kinds of value one option takes (from its annotation), the kinds of its list entries, and its choices (as
    its flag takes them: of the value, or of each entry of a list)."""

    kinds: frozenset  # among "bool", "int", "float", "str", "list", "dict", "none", "any"
    entry_kinds: frozenset = frozenset()
    choices: tuple = ()


def _kinds(annotation) -> tuple[set, set]:
    """(kinds, entry kinds) of one annotation, unions and Optional unfolded."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _kinds(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        kinds, entry_kinds = set(), set()
        for part in typing.get_args(annotation):
            k, ek = _kinds(part)
            kinds |= k
            entry_kinds |= ek
        return kinds, entry_kinds
    if annotation is type(None):
        return {"none"}, set()
    if origin is typing.Literal:
        return {_SCALARS.get(type(v), "any") for v in typing.get_args(annotation)}, set()
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"str"}, set()
    if origin in (list, tuple, set) or annotation in (list, tuple, set):
        arguments = typing.get_args(annotation)
        return {"list"}, _kinds(arguments[0])[0] if arguments else {"any"}
    if origin is dict or annotation is dict:
        return {"dict"}, set()
    if annotation in _SCALARS:
        return {_SCALARS[annotation]}, set()
    return {"any"}, set()  # Any, a class (a config object, a path): not checked here


def option_types(parser) -> dict[str, OptionType]:
    """Option name -> `OptionType`, for every option of `parser` (an `HfArgumentParser`): its kinds from the
    dataclass field's annotation, its choices from the flag (which HfArgumentParser derives from enums, Literals and
    the field's metadata)."""
    choices = {action.dest: tuple(action.choices) for action in parser._actions if action.choices}
    out = {}
    for dataclass_type in parser.dataclass_types:
        hints = typing.get_type_hints(dataclass_type)
        for f in dataclasses.fields(dataclass_type):
            kinds, entry_kinds = _kinds(hints[f.name])
            out[f.name] = OptionType(frozenset(kinds), frozenset(entry_kinds), choices.get(f.name, ()))
    return out


def _described(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _expected(kinds: frozenset, choices: tuple) -> str:
    if choices:
        return "one of " + ", ".join(repr(c) for c in choices)
    names = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "text", "list": "a list",
             "dict": "a mapping", "none": "null"}
    wanted = [names[k] for k in ("bool", "int", "float", "str", "list", "dict") if k in kinds]
    if "int" in kinds and "float" in kinds:
        wanted.remove("an integer")
    return " or ".join(wanted) or "another kind of value"


# The usual slip of each list option given as a mapping, and its fix.
MAPPING_FIXES = {
    "reward_funcs": "give the names as a list and their weights in reward_weights, in the same order: "
                    "reward_funcs: [readability, length] and reward_weights: [1.0, 0.5]",
    "loss_type": "give the names as a list and their weights in loss_weights, in the same order: "
                 "loss_type: [sigmoid, sft] and loss_weights: [1.0, 0.5]",
}


def _entry_problem(name: str, value, option: OptionType) -> tuple[str | None, Any]:
    """(problem, converted entry) of one entry of a list option."""
    kinds = option.entry_kinds
    if not kinds or "any" in kinds:
        return None, value
    if isinstance(value, dict) and "dict" not in kinds:
        return f"{name} holds the mapping {_described(value)}, where each entry is {_expected(kinds, ())}", value
    if isinstance(value, list) and "list" not in kinds:
        return f"{name} holds the list {_described(value)}, where each entry is {_expected(kinds, ())}", value
    numeric = kinds & {"int", "float"}
    if numeric and "str" not in kinds:
        if isinstance(value, str):
            try:
                value = int(value) if "float" not in kinds else float(value)
            except ValueError:
                return f"{name} holds {value!r}, not a number: give one number per entry", value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name} holds {_described(value)}, not a number: give one number per entry", value
    elif "str" in kinds and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if option.choices and value not in option.choices:
        return f"{name} holds {value!r}, which is not {_expected(kinds, option.choices)}", value
    return None, value


def _value_problem(name: str, value, option: OptionType) -> tuple[str | None, Any]:
    """(problem, converted value) of one option's value (see the module docstring)."""
    kinds = option.kinds
    if "any" in kinds or value is None:
        return None, value
    if isinstance(value, dict):
        if "dict" in kinds:
            return None, value
        fix = MAPPING_FIXES.get(name) or f"give {_expected(kinds, option.choices)}"
        return f"{name} is the mapping {_described(value)}: {fix}", value
    if isinstance(value, (list, tuple)):
        if "list" in kinds:
            converted = []
            for entry in value:
                problem, entry = _entry_problem(name, entry, option)
                if problem:
                    return problem, value
                converted.append(entry)
            return None, converted
        if kinds <= {"bool", "int", "float", "none"}:  # one number or one true/false: a list is a slip
            return f"{name} is the list {_described(value)}: give {_expected(kinds, option.choices)}", value
        return None, value  # text options that transformers also takes as a list (fsdp: [full_shard, ...])
    if isinstance(value, bool):
        if "bool" in kinds or "str" in kinds:
            return None, value
        return f"{name} is {str(value).lower()}: give {_expected(kinds, option.choices)}", value
    if isinstance(value, (int, float)):
        if kinds & {"int", "float"}:
            return None, value
        if "bool" in kinds and "str" not in kinds:
            return f"{name} is {value!r}: give true or false", value
        if "str" in kinds and not option.choices:
            return None, str(value)  # `run_name: 7`
        if "list" in kinds:
            return _value_problem(name, [value], option)
    if isinstance(value, str) and option.choices and "list" not in kinds and value not in option.choices:
        return f"{name} is {value!r}, which is not {_expected(kinds, option.choices)}", value
    return None, value


def check_option_values(values: dict, parser, where: str | None = None) -> dict:
    """`values` (option name -> a YAML's value) checked against the options of `parser`, an `HfArgumentParser` (see
    the module docstring): every problem named at once in a `ConfigError`; returns the values with spellings
    converted. Names that are no option are left to the caller (refused as unknown options)."""
    known = option_types(parser)
    problems, converted = [], {}
    for name, value in values.items():
        option = known.get(name)
        if option is None:
            converted[name] = value
            continue
        problem, converted[name] = _value_problem(name, value, option)
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigError((f"{where}: " if where else "") + "; ".join(problems) + ".")
    return converted
