"""How the commands read their options, every option checked before anything loads. The options themselves are
declared once each, with default, help and range, in their dataclasses; the parsers are generated from them.

* `upo train`: from flags and a YAML file (`--config run.yaml`, flags override it): `read_train_options(argv)`.
  `parse_train_options(values, argv)` parses a mapping of option values exactly as the command parses a YAML, for
  whoever builds `upo train` runs (the frontier checks each run's options with it before the first run trains). Its
  dataclasses: `UPOConfig` (upo.config) and `ScriptArguments`, `ModelArguments`, `UnimplementedTRLArguments`
  (upo.arguments).
* `upo eval`: from flags, `read_eval_options(argv)`; its dataclasses are in upo.eval.settings.
* `read_yaml_mapping` (upo.yaml_files): a YAML file of options, with one-line errors (`upo train --config`,
  `upo frontier`).
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from transformers import HfArgumentParser

from upo.arguments import ModelArguments, ScriptArguments, UnimplementedTRLArguments, refuse_unimplemented
from upo.config import UPOConfig
from upo.config_checks import check_ranges
from upo.errors import ConfigError
from upo.eval.settings import EVAL_DATACLASSES, EvalArguments, EvalSettings, ScorerArguments
from upo.legacy_options import refuse_legacy_options
from upo.option_types import check_option_values
from upo.yaml_files import export_recipe_environment, read_yaml_mapping

TRAIN_DATACLASSES = (ScriptArguments, ModelArguments, UnimplementedTRLArguments)


def train_parser() -> HfArgumentParser:
    """`upo train`'s parser: every option of the dataclasses, and `--config`."""
    parser = HfArgumentParser((*TRAIN_DATACLASSES, UPOConfig), prog="upo train")
    parser.add_argument("--config", default=None, help="A YAML file of options; flags given as well override it.")
    return parser


def read_train_options(argv: list[str]):
    """(ScriptArguments, ModelArguments, UPOConfig) from flags and `--config run.yaml` (flags override the YAML), with
    every TRL option upo does not implement refused by name (upo.arguments). The YAML's `env:` mapping (TRL's recipes
    set environment variables this way) is exported."""
    parser = train_parser()
    config_path = None
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise ConfigError("--config needs a YAML file path.")
        config_path, argv = argv[i + 1], argv[:i] + argv[i + 2 :]
    values = {}
    if config_path is not None:
        values = read_yaml_mapping(config_path)
        export_recipe_environment(config_path, values.pop("env", None))
    return parse_train_options(values, argv, where=config_path, parser=parser)


def parse_train_options(values: dict, argv: list[str] = (), where: str | None = None, parser=None):
    """`upo train`'s (ScriptArguments, ModelArguments, UPOConfig) from option values (a YAML's) and flags, exactly
    as the command parses them: unknown names refused, text converted to each option's type, every option checked,
    every TRL option upo does not implement refused by name (upo.arguments)."""
    parser = parser or train_parser()
    refuse_legacy_options(values, where)  # "`evaluation_strategy` is now `eval_strategy`"
    refuse_legacy_options([flag[2:].split("=")[0].replace("-", "_") for flag in argv if flag.startswith("--")])
    known = {f.name for dc in (*TRAIN_DATACLASSES, UPOConfig) for f in fields(dc)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where + ': ' if where else ''}unknown options {unknown}. See `upo train --help` for the "
                          "options.")
    # argparse converts and checks a flag's text, never a default: a YAML's values are checked as flags are
    values = check_option_values(values, parser, where)
    parser.set_defaults(**values)
    parser.exit_on_error = False  # a value of the wrong type becomes our one-line error, not a usage page
    try:
        # the dataclasses, [a namespace of arguments added to the parser, like --config,] the remaining strings
        *parsed, unknown = parser.parse_args_into_dataclasses(args=list(argv), return_remaining_strings=True)
    except argparse.ArgumentError as error:
        raise ConfigError(f"{where + ': ' if where else ''}{error}.") from None
    if unknown:
        raise ConfigError(f"unknown options {unknown}. See `upo train --help` for the options.")
    parsed = parsed[:len(TRAIN_DATACLASSES) + 1]
    refuse_unimplemented(*parsed[:-1])
    script_args, model_args, _, config = parsed
    check_ranges(model_args)  # UPOConfig checks its own in __post_init__
    return script_args, model_args, config


def read_eval_options(argv: list[str], description: str | None = None
                      ) -> tuple[EvalArguments, ScorerArguments, EvalSettings]:
    """`upo eval`'s options from its flags, by a parser generated from its dataclasses (upo.eval.settings); every
    setting checked against its range. A flag it does not know is argparse's usage error, as for any flag."""
    parser = HfArgumentParser(EVAL_DATACLASSES, prog="upo eval", description=description)
    *parsed, unknown = parser.parse_args_into_dataclasses(args=list(argv), return_remaining_strings=True)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return tuple(parsed)
