"""A frontier config is checked whole before anything trains: a missing or invalid file, runs that are not
mappings, unknown keys at any level, keys given twice, options the frontier sets itself, and every run's training
options (parsed as `upo train` parses them) give one line naming the file, the run and the key."""

import pytest

from upo.cli import main
from upo.errors import ConfigError
from upo.experiments.frontier import load_frontier_config
from upo.experiments.frontier.checks import EVAL_KEYS, TOP_KEYS, check_run_options

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


def test_every_key_the_frontier_reads_is_a_known_key():
    """The unknown-key check must never refuse a key the frontier's code reads: scan that code for the keys."""
    import re
    from pathlib import Path

    import upo.experiments.frontier as frontier

    code = "\n".join(p.read_text() for p in Path(frontier.__file__).parent.glob("*.py") if p.name != "checks.py")
    top = set(re.findall(r'config(?:\.get\(|\[)"(\w+)"', code)) - {"eval", "train"} | {"eval", "train"}
    evaluation = set(re.findall(r'(?:\be|config\["eval"\])\.get\("(\w+)"', code))
    assert top - set(TOP_KEYS) == set() and evaluation - set(EVAL_KEYS) == set()
    assert len(top) >= 10 and len(evaluation) >= 8  # the scan finds the keys at all


def test_a_good_config_loads_and_its_runs_parse(tmp_path):
    config = load_frontier_config(write(tmp_path, GOOD))
    check_run_options(config)
    assert [run["name"] for run in config["runs"]] == ["dpo", "upo"]


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
    config = load_frontier_config(write(tmp_path, GOOD.replace(*change)))
    with pytest.raises(ConfigError, match=message):
        check_run_options(config)


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
