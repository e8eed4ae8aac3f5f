"""YAML files of options, read before anything else: `upo train --config run.yaml`, `upo frontier --config`.

* `read_yaml_mapping`: a YAML file of `key: value`, with one-line errors.
* `export_recipe_environment`: a recipe's `env:` mapping (TRL's recipes set environment variables this way, e.g.
  `HF_HOME`, `HF_HUB_OFFLINE`, `WANDB_PROJECT`) exported into `os.environ`. The Hugging Face libraries read most of
  their variables once, when they are imported (`huggingface_hub.constants`, `datasets.config`): exported after that,
  `HF_HOME` silently changed nothing. So `upo train` exports them first (`export_environment_of`), before it imports
  transformers; this module imports none of those libraries.
"""

from __future__ import annotations

import os
import sys

import yaml

from upo.errors import ConfigError

# Variables the Hugging Face libraries read once, when imported.
READ_AT_IMPORT = ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_DATASETS_CACHE", "TRANSFORMERS_CACHE",
                  "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_ENDPOINT", "HF_TOKEN",
                  "HF_TOKEN_PATH", "HF_XET_CACHE", "HF_ASSETS_CACHE")
_IMPORTED_FIRST = ("huggingface_hub", "transformers", "datasets")


def read_yaml_mapping(path, what: str = "config file") -> dict:
    """A YAML file of `key: value`, read with one-line errors: missing or unreadable file, invalid YAML, a key given
    twice (PyYAML would silently keep the last), or a file that is not a mapping."""

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
            twice = sorted({str(k) for k in keys if keys.count(k) > 1})
            if twice:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key(s) {twice} appear more than once in one mapping (YAML readers silently keep "
                    "the last)", node.start_mark)
            return super().construct_mapping(node, deep=deep)

    try:
        with open(path) as f:
            values = yaml.load(f, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except OSError as error:
        raise ConfigError(f"Cannot read the {what} {path}: {error.strerror}.") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of option: value, got {type(values).__name__}.")
    return values


def export_recipe_environment(path, environment) -> None:
    """Export the `env:` mapping of the recipe at `path` (VARIABLE: value). Refused when it sets a variable the
    Hugging Face libraries read at import and one of them is imported already with another value: it would change
    nothing, silently."""
    if not environment:
        return
    if not isinstance(environment, dict):
        raise ConfigError(f"{path}: env must be a mapping of VARIABLE: value, got {type(environment).__name__}.")
    values = {str(key): "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
              for key, value in environment.items()}
    imported = [name for name in _IMPORTED_FIRST if name in sys.modules]
    late = [key for key in values if key in READ_AT_IMPORT and os.environ.get(key) != values[key]]
    if imported and late:
        raise ConfigError(f"{path}: env sets {', '.join(late)}, which {imported[0]} read when it was imported, before "
                          "this recipe was read: it would change nothing. Set them in the shell (export "
                          f"{late[0]}=...) before starting Python, or run the recipe with `upo train --config`.")
    os.environ.update(values)


def export_environment_of(argv: list[str]) -> None:
    """The `env:` of the recipe that `--config PATH` in `argv` names, exported (see the module docstring); nothing
    when there is none. Errors in the file are left to the full reading of the options."""
    if "--config" not in argv or argv.index("--config") + 1 >= len(argv):
        return
    path = argv[argv.index("--config") + 1]
    try:
        values = read_yaml_mapping(path)
    except ConfigError:
        return  # reported with the options
    export_recipe_environment(path, values.get("env"))
