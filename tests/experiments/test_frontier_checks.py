"""A frontier config is checked whole before anything trains: a missing or invalid file, runs that are not
mappings, unknown keys at any level, keys given twice, options the frontier sets itself, and every run's training
options (parsed as `upo train` parses them) give one line naming the file, the run and the key."""

import pytest

from upo.cli import main
from upo.errors import ConfigError
from upo.eval.settings import ScorerArguments
from upo.experiments.frontier import load_frontier_config
from upo.experiments.frontier.config import EVAL_KEYS, TOP_KEYS

GOOD = """output_dir: {out}
dataset: train.jsonl
eval_data: eval.jsonl
reward_funcs: [readability]
train: {{max_steps: 2, learning_rate: 1.0e-4, use_cpu: true}}
eval: {{max_prompts: 4}}
runs:
  - {{name: dpo, options: {{alpha: 0.0}}}}
  - {{name: upo, options: {{alpha: 1.0}}}}
"""


def write(tmp_path, text):
    path = tmp_path / "frontier.yaml"
    path.write_text(text.format(out=tmp_path / "out"))
    return path


def test_every_known_key_is_read_into_the_config(tmp_path):
    """A key the loader accepts must reach the config it builds: every key of TOP_KEYS and EVAL_KEYS, given a value
    other than its default, shows in the `FrontierConfig`."""
    accelerate = tmp_path / "accelerate.yaml"
    accelerate.write_text("num_processes: 1\n")
    given = {"output_dir": str(tmp_path / "out"), "dataset": "train.jsonl", "eval_data": "eval.jsonl",
             "reward_funcs": ["length"], "runs": [{"name": "upo", "options": {"alpha": 1.0}}],
             "model_name_or_path": "org/model", "train_pairs": 8, "reward_weights": [2.0],
             "train": {"max_steps": 3, "max_length": 64, "standardize_rewards": False},
             "eval": {"max_prompts": 4, "max_new_tokens": 5, "batch_size": 6, "seed": 7, "do_sample": True,
                      "temperature": 0.5, "preference_scorer": "judge:http://x/v1", "preference_scorer_model": "m",
                      "judge_model": "j", "judge_template": "t.txt", "scorer_batch_size": 2,
                      "judge_api_key_env": "JUDGE_KEY", "judge_concurrency": 3, "judge_timeout": 9.0,
                      "judge_retries": 1, "judge_deadline": 600.0, "scorer_timeout": 60.0},
             "accelerate_config": str(accelerate), "accelerate_args": "--num_processes 1", "seeds": [3],
             "report_to": "tensorboard", "target": {"family": "UPO", "preference_margin": 0.01}}
    by_name = {"dataset_name": "org/pairs", "dataset_config": "default", "dataset_train_split": "train[:50]"}
    assert set(given) | set(by_name) == set(TOP_KEYS) and set(given["eval"]) == set(EVAL_KEYS)
    # dataset or dataset_name: the three keys of a dataset by name in a config of their own
    named = load_frontier_config({**{k: v for k, v in given.items() if k != "dataset"}, **by_name})
    assert (named.dataset, named.dataset_name, named.dataset_config, named.dataset_train_split) == (
        None, "org/pairs", "default", "train[:50]")
    config = load_frontier_config(given)
    assert (config.output_dir, config.dataset, config.reward_funcs, config.reward_weights) == (
        str(tmp_path / "out"), "train.jsonl", ["length"], [2.0])
    assert [(run.name, run.options, run.group, run.seed) for run in config.runs] == [
        ("upo-s3", {"alpha": 1.0, "seed": 3}, "upo", 3)]
    assert (config.model_name_or_path, config.train_pairs, config.seeds) == ("org/model", 8, [3])
    assert config.train_file == tmp_path / "out" / "train_pairs_8.jsonl" and config.train["max_steps"] == 3
    evaluation = config.evaluation
    assert (evaluation.eval_data, evaluation.train_data, evaluation.reward_funcs, evaluation.reward_weights) == (
        "eval.jsonl", str(config.train_file), ["length"], [2.0])
    assert (evaluation.max_prompts, evaluation.max_new_tokens, evaluation.batch_size, evaluation.seed,
            evaluation.do_sample, evaluation.temperature) == (4, 5, 6, 7, True, 0.5)
    assert (evaluation.max_length, evaluation.standardize_rewards) == (64, False)  # as the runs train
    assert config.scorer == ScorerArguments("judge:http://x/v1", scorer_batch_size=2, judge_model="j",
                                            judge_template="t.txt", judge_api_key_env="JUDGE_KEY", judge_concurrency=3,
                                            judge_timeout=9.0, judge_retries=1, judge_deadline=600.0,
                                            scorer_timeout=60.0)
    assert config.scorer_model == "m"
    assert (config.accelerate_config, config.accelerate_args) == (str(accelerate), ["--num_processes", "1"])
    assert config.report_to == "tensorboard"
    assert (config.target.family, config.target.preference_margin) == ("UPO", 0.01)


def test_the_defaults_are_upo_evals_and_upo_trains():
    from upo.eval.settings import EvalSettings, ScorerArguments

    config = load_frontier_config({"output_dir": "out", "dataset": "train.jsonl", "eval_data": "eval.jsonl",
                                   "reward_funcs": ["length"], "runs": [{"name": "dpo"}]})
    assert config.evaluation == EvalSettings("eval.jsonl", "train.jsonl", ["length"])
    assert config.scorer == ScorerArguments() and config.runs[0].options == {} and config.train == {}


def test_a_good_config_loads_and_its_runs_parse(tmp_path):
    config = load_frontier_config(write(tmp_path, GOOD))  # every run's options parsed as `upo train` parses them
    assert [run.name for run in config.runs] == ["dpo", "upo"]


@pytest.mark.parametrize("text, message", [
    (GOOD.replace("eval: {{max_prompts: 4}}", "eval: {{max_prompt: 4}}"),
     r"frontier config, eval: unknown key\(s\) \['max_prompt'\]; the keys are \['max_prompts'"),
    (GOOD + "seed: [0, 1]\n", r"frontier config: unknown key\(s\) \[.seed.\]"),
    (GOOD.replace("{{name: upo, options:", "{{name: upo, option:"),
     r"frontier config, runs\[1\]: unknown key\(s\) \['option'\]"),
    (GOOD.replace("  - {{name: upo, options: {{alpha: 1.0}}}}", "  - upo"),
     r"frontier config, runs\[1\] must be a mapping of key: value, got str 'upo'"),
    (GOOD.replace("{{name: upo, options: {{alpha: 1.0}}}}", "{{name: upo, options: [alpha, 1.0]}}"),
     r"frontier config, runs\[1\] \('upo'\): options must be a mapping"),
    (GOOD.replace("eval: {{max_prompts: 4}}", "eval: {{max_prompts: 0, temperature: -1}}"),
     r"frontier config, eval: max_prompts must be an integer >= 1, or None, got 0; temperature must be a finite "
     r"number > 0, got -1"),
    (GOOD.replace("train: {{", "train: {{output_dir: elsewhere, "),
     r"frontier config, train: \['output_dir'\] are set by the frontier for every run"),
    (GOOD + "train_pairs: -4\n", r"train_pairs must be an integer >= 1, or None \(every pair\), got -4"),
    (GOOD + "reward_funcs: [length]\n", r"the key\(s\) \['reward_funcs'\] appear more than once in one mapping"),
    ("- a\n- b\n", r"frontier.yaml must hold a mapping of option: value, got list"),
    ("runs: [unclosed\n", r"frontier.yaml is not valid YAML"),
], ids=["eval-key", "top-key", "run-key", "run-not-mapping", "options-not-mapping", "eval-ranges", "frontier-set-key",
        "train-pairs", "key-twice", "not-a-mapping", "invalid-yaml"])
def test_bad_frontier_configs(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_frontier_config(write(tmp_path, text))


@pytest.mark.parametrize("change, message", [
    (("{{alpha: 1.0}}", "{{alpah: 1.0}}"), r"frontier config, run 'upo': unknown options \['alpah'\]"),
    (("{{alpha: 1.0}}", "{{alpha: -1.0}}"), r"frontier config, run 'upo': .*alpha must be a finite number >= 0"),
    (("max_steps: 2", "max_steps: two"), r"frontier config, run 'dpo': argument --max_steps.*invalid int value: 'two'"),
], ids=["unknown-option", "out-of-range", "wrong-type"])
def test_every_runs_options_are_checked_before_the_first_run_trains(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_frontier_config(write(tmp_path, GOOD.replace(*change)))


def test_upo_frontier_with_a_missing_or_bad_config_is_one_line(tmp_path, capsys):
    assert main(["frontier", "--config", str(tmp_path / "nope.yaml")]) == 1
    err = capsys.readouterr().err
    assert err == f"upo frontier: error: Cannot read the frontier config {tmp_path / 'nope.yaml'}: No such file or " \
                  "directory.\n"
    # The run with an unknown option is refused before the first run (dpo) trains: no run folder is created.
    assert main(["frontier", "--config", str(write(tmp_path, GOOD.replace("{{alpha: 1.0}}", "{{alpah: 1}}")))]) == 1
    assert "upo frontier: error: frontier config, run 'upo': unknown options ['alpah']" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # --only with a name that matches no run, or with --report_only (which reports every run), is refused.
    good = str(write(tmp_path, GOOD))
    assert main(["frontier", "--config", good, "--only", "upo-t0.5"]) == 1
    assert "--only upo-t0.5: no such run in the frontier config. Its runs: " in capsys.readouterr().err
    assert main(["frontier", "--config", good, "--report_only", "--only", "upo"]) == 1
    assert "give one or the other" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
