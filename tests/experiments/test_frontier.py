"""`upo frontier`: the Pareto front, the families of the grid, and the resume logic on a real (tiny) grid: finished runs
are never trained or evaluated again, runs whose options changed are, and a locked run is left alone."""

import dataclasses
import json

import pytest
from helpers import make_tiny_lm_dir, make_tiny_scorer_dir, write_chitchat_rows

from upo.config import UPOConfig
from upo.errors import ConfigError
from upo.experiments.frontier import (
    EVAL_SUMMARY,
    REFERENCE_EVAL,
    TRAIN_DONE,
    collect_results,
    format_report,
    load_frontier_config,
    metrics_line,
    pareto_front,
    run_dir,
    run_family,
    run_frontier,
    run_lock_file,
    train_done,
)
from upo.experiments.frontier.state import changed_defaults
from upo.files import try_lock


def test_pareto_front():
    points = [(0.0, 0.5), (1.0, 0.4), (0.5, 0.45), (0.4, 0.3), (1.0, 0.2)]
    assert pareto_front(points) == [0, 2, 1]


def test_every_method_of_the_grid_has_its_family():
    config = load_frontier_config("examples/frontier_chitchat.yaml")
    families = {run.name: run_family({"options": run.options}) for run in config.runs}
    assert families["dpo"] == "DPO" and families["upo-a1"] == "UPO" and families["modpo-w0.5"] == "MODPO"
    assert families["rpo"] == "RPO" and families["kto"] == "KTO" and families["kto-upo-a4-temp0.5"] == "KTO-UPO"
    assert families["aoppo-a1"] == "aoPPO" and families["drov-a1"] == "DRO-V" and families["csft"] == "CSFT"


def test_upo_against_simpo_cpo_orpo_and_trls_loss_types_on_one_grid():
    """The reference-free methods and TRL's DPO loss types are runs of one grid, each under its own family, checked
    as `upo train` checks them (EXO's label_smoothing must be above 0)."""
    config = load_frontier_config("examples/frontier_chitchat.yaml", target=None, runs=[
        {"name": "upo", "options": {"alpha": 1.0}},
        {"name": "simpo", "options": {"loss_type": ["simpo"], "alpha": 0.0, "beta": 2.0, "simpo_gamma": 1.0}},
        {"name": "cpo", "options": {"loss_type": ["cpo"], "alpha": 0.0, "cpo_alpha": 1.0}},
        {"name": "orpo", "options": {"loss_type": ["orpo"], "alpha": 0.0, "beta": 0.1}},
        {"name": "simpo-upo", "options": {"loss_type": ["simpo"], "alpha": 1.0}},
        {"name": "exo", "options": {"loss_type": ["exo_pair"], "alpha": 0.0, "label_smoothing": 1e-3}},
        {"name": "robust", "options": {"loss_type": ["robust"], "alpha": 0.0, "label_smoothing": 0.1}},
    ])
    families = {run.name: run_family({"options": run.options}) for run in config.runs}
    assert families == {"upo": "UPO", "simpo": "SimPO", "cpo": "CPO", "orpo": "ORPO", "simpo-upo": "SimPO-UPO",
                        "exo": "EXO", "robust": "rDPO"}
    with pytest.raises(ConfigError, match=r"loss_type 'exo_pair' needs label_smoothing above 0"):
        load_frontier_config("examples/frontier_chitchat.yaml", target=None,
                             runs=[{"name": "exo", "options": {"loss_type": ["exo_pair"], "alpha": 0.0}}])


@pytest.fixture
def grid(tmp_path):
    lm = make_tiny_lm_dir(tmp_path / "lm")
    scorer = make_tiny_scorer_dir(tmp_path / "scorer")
    config = {
        "output_dir": str(tmp_path / "frontier"),
        "model_name_or_path": str(lm),
        "dataset": str(write_chitchat_rows(tmp_path / "train.jsonl", 8, seed=1)),
        "eval_data": str(write_chitchat_rows(tmp_path / "eval.jsonl", 3, seed=2)),
        "reward_funcs": ["length:target_words=4"],
        "reward_weights": [1.0],
        "train": {"max_steps": 1, "per_device_train_batch_size": 2, "learning_rate": 1e-3, "use_cpu": True,
                  "max_length": 64, "logging_steps": 1, "disable_tqdm": True},
        "eval": {"max_new_tokens": 3, "batch_size": 3, "preference_scorer_model": str(scorer)},
        "runs": [{"name": "dpo", "options": {"alpha": 0.0}}, {"name": "upo", "options": {"alpha": 1.0}}],
        "report_to": "tensorboard",
    }
    return load_frontier_config(config)


def _stub_finished(config, run, summary):
    """What a finished run leaves behind: the training marker (written as train_run writes it) and its evaluation."""
    from upo.experiments.frontier import run_train_options, settings_key, train_key
    from upo.files import atomic_write_json

    folder = run_dir(config, run.name)
    atomic_write_json(folder / TRAIN_DONE, {"options_key": train_key(run_train_options(config, run))})
    atomic_write_json(folder / EVAL_SUMMARY, {"settings_key": settings_key(config), "summary": summary, "replies": [],
                                        "preference": [], "designer": [], "kl": []})


def test_resume_trains_and_evaluates_only_what_is_missing(grid):
    dpo, upo = grid.runs
    stub = {"designer_score": 0.1, "designer_score_std": 1.0, "preference_score": 0.2, "win_rate": 0.55, "kl": 1.0,
            "length_words": 3.0, "implicit_accuracy": 0.5}
    _stub_finished(grid, dpo, {**stub, "name": "dpo"})
    logs = []
    results = run_frontier(grid, progress=True, log=logs.append)
    # The stubbed run was neither trained nor evaluated again; the other one really was.
    assert not (run_dir(grid, "dpo") / "train.log").exists()
    assert (run_dir(grid, "upo") / "train.log").exists() and train_done(grid, upo)
    # Its progress came from the trainer_state.json the child process wrote, not from its printed output.
    state = json.loads((run_dir(grid, "upo") / "trainer_state.json").read_text())
    assert state["global_step"] == 1 and state["log_history"][0]["step"] == 1
    assert any(line.startswith("    [upo] step 1/1: epoch 0.25, loss ") for line in logs), logs
    assert any(line.startswith("    [upo] step 1/1: done in ") for line in logs), logs
    # The tracker and a run name reached the run: its training and its evaluation log under that name.
    options = __import__("yaml").safe_load((run_dir(grid, "upo") / "run.yaml").read_text())
    assert options["report_to"] == "tensorboard" and options["run_name"] == "frontier-upo"
    assert list((run_dir(grid, "upo") / "runs" / "frontier-upo").glob("events.out.tfevents.*"))
    done = json.loads((run_dir(grid, "upo") / TRAIN_DONE).read_text())
    assert done["global_step"] == 1 and done["final_logs"][0]["loss"] == state["log_history"][0]["loss"]
    assert (run_dir(grid, "upo") / "adapter_config.json").exists() or (run_dir(grid, "upo") / "config.json").exists()
    assert [r["name"] for r in results["runs"]] == ["dpo", "upo"]
    assert results["runs"][0]["summary"]["designer_score"] == 0.1
    out = run_dir(grid, "dpo").parent.parent
    assert (run_dir(grid, "upo") / EVAL_SUMMARY).exists() and (out / REFERENCE_EVAL).exists()
    assert (out / "frontier.png").stat().st_size > 0 and "| dpo |" in (out / "frontier.md").read_text()
    page = (out / "frontier.html").read_text()  # the plot inline, and every prompt with each run's reply
    assert "data:image/png;base64," in page and page.count("<tr data-index=") == 3
    # Its tables as tables (no Markdown), no absolute path, upo's win rate with its interval over the prompts.
    assert "|---|" not in page and "<td>| " not in page and str(out.parent) not in page
    upo_win = results["runs"][1]["summary"]["win_rate_ci90"]
    assert f"({upo_win[0]:.1%}..{upo_win[1]:.1%})" in page
    # The log gives the trained run's time (training, then the evaluation by phase) and the grid's totals.
    took = [line for line in logs if "] upo took: training " in line]
    assert len(took) == 1 and "evaluation " in took[0] and "generation " in took[0] and "scoring " in took[0], logs
    assert any("] reference took: evaluation " in line and "load " in line for line in logs), logs
    total = [line for line in logs if "] grid time, 1 run(s): training " in line]  # the stub recorded no time
    assert len(total) == 1 and "of the runs' time" in total[0] and "the reference's evaluation (once)" in total[0], logs

    # A second call finds everything done: nothing is trained or evaluated.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.suffix in (".log", ".json")
              and not p.name.startswith("frontier")}
    logs.clear()
    run_frontier(grid, progress=False, log=logs.append)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert sum("evaluated earlier" in line for line in logs) == 2  # no stored numbers: the table rescores them

    # A run trained when a method option it left unset had another default is kept, and the frontier says so.
    saved = run_dir(grid, "upo") / "upo_config.json"
    original = saved.read_text()
    saved.write_text(json.dumps({**json.loads(original), "aw_temperature": 7.0}))
    logs.clear()
    run_frontier(grid, progress=False, log=logs.append)
    now = UPOConfig.aw_temperature
    warned = [line for line in logs if f"trained with aw_temperature=7.0, whose default is now {now}" in line]
    assert len(warned) == 1 and "run upo:" in warned[0] and "set aw_temperature in its options" in warned[0], logs
    assert not any(": training (" in line for line in logs), logs  # nothing was trained again
    assert {p: p.stat().st_mtime_ns for p in stamps if p != saved} == {p: t for p, t in stamps.items() if p != saved}
    saved.write_text(original)

    # Changing a run's options makes it stale: it is trained again, the other is kept. The model it trained before is
    # never overwritten: its folder is set aside, whole.
    changed = load_frontier_config({**grid.source, "runs": [{"name": "dpo", "options": {"alpha": 0.0}},
                                                            {"name": "upo", "options": {"alpha": 2.0}}]})
    assert not train_done(changed, changed.runs[1]) and train_done(changed, dpo)
    upo_dir = run_dir(grid, "upo")
    before = {p.relative_to(upo_dir): p.read_bytes() for p in upo_dir.rglob("*") if p.is_file()}
    logs.clear()
    run_frontier(changed, progress=True, log=logs.append)
    kept = [p for p in run_dir(grid, "upo").parent.iterdir() if p.name.startswith("upo.options-")]
    assert len(kept) == 1 and any(f"kept in {kept[0]}" in line for line in logs), logs
    assert {p.relative_to(kept[0]): p.read_bytes() for p in kept[0].rglob("*") if p.is_file()} == before
    assert train_done(changed, changed.runs[1])

    # Where the logs go is not how the model trained: another tracker or run name keeps a finished run, and so does
    # a run finished before the frontier passed them on (its stored options lack them).
    assert train_done(load_frontier_config({**grid.source, "report_to": "none"}), dpo)
    assert train_done(grid, dataclasses.replace(dpo, options={"alpha": 0.0, "run_name": "mine"}))
    marker = run_dir(grid, "upo") / TRAIN_DONE
    done = json.loads(marker.read_text())
    older = {name: value for name, value in done["options"].items() if name not in ("report_to", "run_name")}
    marker.write_text(json.dumps({**done, "options_key": "written-by-an-older-upo", "options": older}))
    assert train_done(changed, changed.runs[1])


def test_locked_run_is_skipped_and_report_lists_only_finished_runs(grid):
    with try_lock(run_lock_file(run_dir(grid, "upo"))) as locked:
        assert locked
        logs = []
        results = run_frontier(load_frontier_config({**grid.source, "runs": grid.source["runs"][1:]}), progress=False,
                               log=logs.append)
    assert any("another process has it" in line for line in logs)
    assert results["runs"] == [] and not run_dir(grid, "upo").joinpath(TRAIN_DONE).exists()
    assert format_report(collect_results(grid)).startswith("| run |")  # the reference row alone


def test_demo_is_dpo_and_upo_with_the_same_data_budget_and_seed(tmp_path):
    from upo.experiments.demo import demo_config
    from upo.experiments.frontier import run_train_options, write_train_file

    train = write_chitchat_rows(tmp_path / "train.jsonl", 20)
    config = load_frontier_config(demo_config(str(tmp_path / "demo"), steps=3, eval_prompts=5, alpha=2.0,
                                              aw_temperature=0.5, train_data=str(train)))
    dpo, upo = (run_train_options(config, run) for run in config.runs)
    differ = ("alpha", "aw_temperature", "output_dir", "run_name")
    assert {k: v for k, v in dpo.items() if k not in differ} == {k: v for k, v in upo.items() if k not in differ}
    assert (dpo["alpha"], upo["alpha"]) == (0.0, 2.0)
    # One epoch over exactly the pairs the budget reaches (3 steps of 4).
    assert write_train_file(config).read_text().splitlines() == train.read_text().splitlines()[:12]
    # Without a temperature, UPO trains at UPOConfig's: the demo follows the method's default.
    default = demo_config(str(tmp_path / "demo"), train_data=str(train))
    assert default["runs"][1]["options"] == {"alpha": 1.0}


def test_progress_shows_a_logged_metrics_entry_as_one_short_line():
    logged = {"loss": 29.75, "grad_norm": 9.747, "rewards/accuracies": 0.3125, "rewards/margins": -0.05838,
              "loss/pref": 0.7249, "loss/aux": 7.14, "loss/value": 0.4612, "perf/tokens_per_second": 58.95,
              "epoch": 0.125, "step": 4}
    assert metrics_line(logged) == "epoch 0.12, loss 29.75, pref 0.7249, aux 7.14, value 0.4612, margin -0.058, " \
                                   "acc 31%, 59 tok/s"
    assert metrics_line({"train_runtime": 61.2, "train_loss": 0.61, "epoch": 1.0, "step": 8}) == \
        "done in 61 s, mean loss 0.61"


def test_demo_compares_upo_with_dpo_with_intervals_and_says_whether_the_gain_is_measurable():
    from upo.experiments.demo import compare_line

    dpo = {"designer_score": 0.50, "win_rate": 0.500, "kl": 1.00}
    upo = {"designer_score": 1.00, "win_rate": 0.525, "kl": 0.75}
    candidate = {"name": "UPO", "gain_std": 0.25, "gain_std_ci90": [0.1, 0.9], "win_rate_gap_ci90": [-0.05, 0.1]}
    results = {"reference_designer_std": 2.0, "groups": [{"name": "DPO"}, candidate]}
    line = compare_line(dpo, upo, results)
    assert line.startswith("UPO vs DPO: designer score +0.25 std (90% interval +0.10..+0.90), 1 std = 2.000 "
                           "(the reference's spread over the prompts); win rate +2.5 points (-5.0..+10.0); KL -0.25.")
    assert line.endswith("The designer gain is measurable: its interval excludes 0.")
    candidate["gain_std_ci90"] = [-0.1, 0.6]
    assert "differ within the noise" in compare_line(dpo, upo, results)


def test_each_run_is_launched_with_the_users_accelerate_config(grid, tmp_path):
    from upo.errors import ConfigError
    from upo.experiments.frontier import train_command

    options = tmp_path / "run.yaml"
    assert train_command(grid, options)[1:] == ["-m", "upo.cli", "train", "--config", str(options)]
    launched = load_frontier_config({**grid.source, "accelerate_config": "examples/accelerate/fsdp2.yaml",
                                     "accelerate_args": "--num_processes 8 --main_process_port 0"})
    assert train_command(launched, options)[1:] == [
        "-m", "accelerate.commands.launch", "--config_file", "examples/accelerate/fsdp2.yaml", "--num_processes", "8",
        "--main_process_port", "0", "-m", "upo.cli", "train", "--config", str(options)]
    with pytest.raises(ConfigError, match=r"accelerate_config 'nowhere.yaml' is not a file"):
        load_frontier_config({**grid.source, "accelerate_config": "nowhere.yaml"})


@pytest.mark.slow
def test_a_run_under_accelerate_launch_uses_both_processes(grid):
    """examples/accelerate/ddp.yaml starts 2 processes: a step takes 2 x 2 of the 8 pairs, so epoch 0.5 after it."""
    config = load_frontier_config({**grid.source, "runs": grid.source["runs"][1:],
                                   "accelerate_config": "examples/accelerate/ddp.yaml"})
    run_frontier(config, progress=False, log=lambda line: None)
    state = json.loads((run_dir(config, "upo") / "trainer_state.json").read_text())
    assert state["global_step"] == 1 and state["log_history"][0]["epoch"] == 0.5
    assert (run_dir(config, "upo") / EVAL_SUMMARY).exists()


def test_changed_defaults_leave_out_the_designer_term_of_a_run_without_it(tmp_path):
    """A DPO or DRO-V run did not use UPO's temperature: its changed default is no reason to warn about that run."""
    now = UPOConfig.aw_temperature
    # a run that predates aux_loss trained with awr: a changed default if awr is no longer it
    term = {} if UPOConfig.aux_loss == "awr" else {"aux_loss": ("awr", UPOConfig.aux_loss)}
    for alpha, loss_type, expected in [(1.0, ["sigmoid"], {"aw_temperature": (7.0, now), **term}),
                                       (0.0, ["sigmoid"], {}), (1.0, ["drov"], {})]:
        (tmp_path / "upo_config.json").write_text(json.dumps(
            {"alpha": alpha, "loss_type": loss_type, "aw_temperature": 7.0, "expectile_tau": 0.7}))
        options = {"alpha": alpha, "loss_type": loss_type}
        assert changed_defaults(tmp_path, options) == expected
        assert changed_defaults(tmp_path, {**options, "aw_temperature": 7.0, "aux_loss": "awr"}) == {}


# The keys that finished runs hold (train_done.json, eval_summary.json), as this version computes them for the shipped
# grids: a change here makes every finished run of every grid train or evaluate again.
PINNED_KEYS = {
    "examples/frontier_chitchat.yaml": ("ac04607e2d2b239a", {
        "dpo": "20d0119d8cf758c8", "upo-a1": "d57554ab52ed7fc8", "modpo-w0.5": "80bc5465e257e6a8",
        "kto": "7aa92d07980bc6a6", "csft": "4311348e1a5a5e3c", "upo-a8-temp0.25": "95ae3bbc977d4ece"}),
    "examples/frontier_chitchat_seeds.yaml": ("efdf46abc88b93a1", {
        "dpo-s0": "927cc0d3581e1afd", "upo-seq-a1-s1": "ffa996258e82c00d", "alol-a1-s2": "194667242f9c8ddf"}),
}


def test_the_keys_of_the_shipped_grids_stay_those_their_finished_runs_hold():
    from upo.experiments.frontier import run_train_options, settings_key, train_key
    from upo.experiments.frontier.config import read_frontier_yaml

    for path, (evaluation, runs) in PINNED_KEYS.items():
        config = load_frontier_config(path)
        assert settings_key(config) == evaluation, path
        keys = {run.name: train_key(run_train_options(config, run)) for run in config.runs}
        assert {name: keys[name] for name in runs} == runs, path
    # Another scorer, sampling and a tracker: the scorer and the decoding change the evaluation's key, the tracker
    # does not change the training key.
    raw = read_frontier_yaml("examples/frontier_chitchat.yaml")
    raw["eval"] = {**raw["eval"], "preference_scorer": "judge:http://127.0.0.1:8000/v1", "judge_model": "m",
                   "do_sample": True, "temperature": 0.7}
    config = load_frontier_config({**raw, "report_to": "tensorboard"})
    assert settings_key(config) == "7c2b91f07de73478"
    assert train_key(run_train_options(config, config.runs[1])) == "d57554ab52ed7fc8"
    # How the scorer runs (upo.eval.settings.SCORER_RUNTIME_OPTIONS) never changes what it scores, nor the key.
    raw["eval"].update(scorer_batch_size=4, judge_api_key_env="OTHER_KEY", judge_concurrency=2)
    assert settings_key(load_frontier_config(raw)) == "7c2b91f07de73478"
