"""`upo eval` on bad input: a missing or broken data file, out-of-range settings, a damaged model folder or run
config, and reward functions that fail on the generated replies give one line naming the input, not a traceback."""

import sys

import pytest
from helpers import make_tiny_lm_dir, write_chitchat_rows

from upo.cli import main
from upo.errors import ConfigError, DataError, ModelResolutionError, RewardFunctionError
from upo.eval.evaluate import EvalSettings, load_eval_rows
from upo.eval.metrics import score_objectives
from upo.eval.scorers import build_preference_scorer
from upo.eval.settings import ScorerArguments
from upo.models import load_model
from upo.run_folder import read_run_config


@pytest.fixture
def files(tmp_path):
    make_tiny_lm_dir(tmp_path / "model")
    return {"train": write_chitchat_rows(tmp_path / "train.jsonl", 6, seed=1),
            "eval": write_chitchat_rows(tmp_path / "eval.jsonl", 3, seed=2)}


def run_eval(tmp_path, files, *flags):
    return main(["eval", "--model", str(tmp_path / "model"), "--reference", str(tmp_path / "model"),
                 "--train_data", str(files["train"]), "--reward_funcs", "length", "--preference_scorer",
                 "function:helpers.words_in_reply", *flags])


def test_missing_eval_data(tmp_path, files, capsys):
    assert run_eval(tmp_path, files, "--eval_data", str(tmp_path / "missing.jsonl")) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"upo eval: error: {tmp_path / 'missing.jsonl'}: no such local file or folder.")
    assert len(err.splitlines()) == 1


def test_the_data_is_read_before_the_reference_loads(tmp_path, files, capsys):
    # The reference here is not a model at all: the missing data file is what is reported, before any model loads.
    assert main(["eval", "--model", str(tmp_path / "model"), "--reference", str(tmp_path / "not-a-model"),
                 "--eval_data", str(tmp_path / "missing.jsonl"), "--reward_funcs", "length"]) == 1
    assert "missing.jsonl: no such local file or folder." in capsys.readouterr().err


def test_eval_data_with_a_bad_json_line(tmp_path, files, capsys):
    path = tmp_path / "broken.jsonl"
    path.write_text(files["eval"].read_text().splitlines()[0] + "\n{'prompt': 'single quotes'}\n")
    assert run_eval(tmp_path, files, "--eval_data", str(path)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"upo eval: error: {path}, line 2: not valid JSON (Expecting property name enclosed in "
                          "double quotes: column 2)") and len(err.splitlines()) == 1


@pytest.mark.parametrize("flags, message", [
    (["--max_new_tokens", "0"], "max_new_tokens must be an integer >= 1, got 0"),
    (["--batch_size", "-4"], "batch_size must be an integer >= 1, got -4"),
    (["--max_prompts", "0"], "max_prompts must be an integer >= 1, or None, got 0"),
    (["--do_sample", "--temperature", "0"], "temperature must be a finite number > 0, got 0.0"),
    (["--reward_weights", "nan"], "reward_weights must hold a finite number each, got nan"),
], ids=["new-tokens", "batch", "prompts", "temperature", "nan-weight"])
def test_out_of_range_settings_are_refused_before_anything_loads(tmp_path, files, capsys, flags, message):
    assert run_eval(tmp_path, files, "--eval_data", str(files["eval"]), *flags) == 1
    assert capsys.readouterr().err == f"upo eval: error: evaluation: {message}.\n"


def test_an_empty_eval_file(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text("\n")
    with pytest.raises(DataError, match=r"eval.jsonl: no rows"):
        load_eval_rows(path)


def test_damaged_model_folder_and_run_config(tmp_path):
    folder = make_tiny_lm_dir(tmp_path / "model")
    (folder / "upo_config.json").write_text("{truncated")
    with pytest.raises(DataError, match=r"upo_config.json: not valid JSON .*the run folder is damaged"):
        read_run_config(folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelResolutionError, match=r"Cannot load the model .*model'?: Error while deserializing"):
        load_model(str(folder))


def test_reward_functions_failing_on_generated_replies_are_named():
    module = type(sys)("eval_rewards")
    module.exits = lambda prompts, completions, **kwargs: sys.exit(3)
    module.exits.__name__ = "exits"
    module.short = lambda prompts, completions, **kwargs: [1.0]
    module.short.__name__ = "short"
    sys.modules["eval_rewards"] = module
    try:
        with pytest.raises(RewardFunctionError, match=r"reward function 'exits' raised on the 2 generated replies: "
                           r"called sys.exit\(3\)"):
            score_objectives(["p", "q"], ["a", "b"], ["eval_rewards.exits"], [{}, {}])
        with pytest.raises(RewardFunctionError, match=r"'short' returned list \[1.0\] for 2 replies: expected one"):
            score_objectives(["p", "q"], ["a", "b"], ["eval_rewards.short"], [{}, {}])
        # the same guard around a preference scorer that is the user's function
        scorer = build_preference_scorer(ScorerArguments("function:eval_rewards.exits"))
        with pytest.raises(RewardFunctionError, match=r"reward function 'exits' raised on the 2 replies \(preference "
                           r"scorer function:eval_rewards.exits\): called sys.exit\(3\)"):
            scorer.score_replies(["p", "q"], ["a", "b"], [{}, {}])
    finally:
        del sys.modules["eval_rewards"]


def test_eval_settings_are_checked_in_python_too():
    with pytest.raises(ConfigError, match=r"evaluation: seed must be an integer in \[0, 4.29497e\+09\], got -1"):
        EvalSettings("e", "t", ["length"], seed=-1)
