"""`upo eval`'s options are its settings dataclasses (upo.eval.settings): the parser is generated from them, so every
field is a flag with its default and help, and every numeric one has a range."""

import dataclasses

import pytest
from test_config_checks import numeric_fields

from upo.cli import main
from upo.config_checks import declared_ranges
from upo.eval.settings import EVAL_DATACLASSES, EvalSettings
from upo.options import read_eval_options

# Every flag `upo eval` had when its parser was written by hand, with its default then.
FORMER_DEFAULTS = {
    "model": ["m"], "name": None, "reference": None, "device": None, "dtype": None, "trust_remote_code": False,
    "eval_data": None, "dataset_name": None, "dataset_config": None, "split": None, "prompt_column": "prompt",
    "reference_column": None, "prompt_format": "auto", "max_prompts": None, "reward_weights": None,
    "train_data": None, "preference_scorer": "similarity", "scorer_batch_size": 16, "judge_model": None,
    "judge_template": None, "judge_api_key_env": "OPENAI_API_KEY", "judge_concurrency": 8, "max_new_tokens": 32,
    "batch_size": 32, "seed": 0, "do_sample": False, "temperature": 1.0, "max_length": 256, "report_to": ["none"],
    "run_name": None, "logging_dir": None, "update_model_card": False, "num_threads": "auto", "out": None,
    "reward_funcs": [],  # was None: either way "the first model's objectives"
}


def test_upo_eval_help_lists_every_option_with_its_help(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["eval", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    for dataclass in EVAL_DATACLASSES:
        for f in dataclasses.fields(dataclass):
            assert f"--{f.name} " in text, f.name
            assert " ".join(f.metadata["help"].split())[:40] in text, f.name


def test_every_former_flag_keeps_its_name_and_default():
    parsed = {}
    for options in read_eval_options(["--model", "m"]):
        parsed.update(dataclasses.asdict(options))
    assert {name: parsed[name] for name in FORMER_DEFAULTS} == FORMER_DEFAULTS
    # The flags added since: one of the evaluation, and the bounds of user functions and of the judge's requests
    added = {"standardize_rewards": True, "reward_timeout": 3600.0, "scorer_timeout": 3600.0, "judge_timeout": 60.0,
             "judge_retries": 2, "judge_deadline": None, "generation_backend": "transformers"}
    assert {name: parsed[name] for name in set(parsed) - set(FORMER_DEFAULTS)} == added
    args, _, settings = read_eval_options(["--model", "a", "b", "--do_sample", "--trust_remote_code",
                                           "--reward_funcs", "length", "--max_new_tokens", "4"])
    assert args.model == ["a", "b"] and args.trust_remote_code and settings.do_sample
    assert (settings.reward_funcs, settings.max_new_tokens) == (["length"], 4)


def test_every_numeric_setting_declares_its_range():
    for dataclass in EVAL_DATACLASSES:
        assert set(numeric_fields(dataclass)) <= set(declared_ranges(dataclass)), dataclass.__name__
    assert EvalSettings().max_new_tokens == 32  # the one default of upo eval's max_new_tokens


def test_an_unknown_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["eval", "--model", "m", "--new_tokens", "4"])
    assert exited.value.code == 2 and "unrecognized arguments: --new_tokens 4" in capsys.readouterr().err
