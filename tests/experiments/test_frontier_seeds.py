"""`upo frontier` with `seeds`: each run once per seed, the means over seeds with intervals over seeds and prompts,
and the plot of each family's front with each seed's point."""

from pathlib import Path

import pytest

from upo.errors import ConfigError
from upo.experiments.frontier import FrontierRun, load_frontier_config, run_train_options, train_key
from upo.experiments.frontier.report import format_seed_table, plot_fronts
from upo.experiments.frontier.results import family_fronts, seed_summaries

CONFIG = {"output_dir": "out", "dataset": "train.jsonl", "eval_data": "eval.jsonl", "reward_funcs": ["length"],
          "train": {"seed": 0, "max_steps": 4},
          "runs": [{"name": "dpo", "options": {"alpha": 0.0}}, {"name": "upo", "options": {"alpha": 1.0}}]}


def test_each_run_is_trained_once_per_seed_seed_by_seed():
    runs = load_frontier_config({**CONFIG, "seeds": [0, 1, 2]}).runs
    assert [r.name for r in runs] == ["dpo-s0", "upo-s0", "dpo-s1", "upo-s1", "dpo-s2", "upo-s2"]
    assert runs[3] == FrontierRun(name="upo-s1", options={"alpha": 1.0, "seed": 1}, group="upo", seed=1)
    # A run of a seeds grid is the run a config would name `upo-s1` with `seed: 1`: the same folder and resume key.
    config = load_frontier_config({**CONFIG, "seeds": [0, 1, 2]})
    by_hand = load_frontier_config({**CONFIG, "runs": [{"name": "upo-s1", "options": {"alpha": 1.0, "seed": 1}}]})
    assert train_key(run_train_options(config, runs[3])) == train_key(run_train_options(by_hand, by_hand.runs[0]))
    assert [r.group for r in load_frontier_config(CONFIG).runs] == ["dpo", "upo"]  # no seeds: as before


def test_only_names_a_run_with_all_its_seeds_or_one_seed_and_refuses_a_name_that_matches_nothing():
    from upo.experiments.frontier.config import select_runs

    config = load_frontier_config({**CONFIG, "seeds": [0, 1, 2]})
    assert [r.name for r in select_runs(config, ["upo"])] == ["upo-s0", "upo-s1", "upo-s2"]
    assert [r.name for r in select_runs(config, ["dpo-s2", "upo"])] == ["upo-s0", "upo-s1", "dpo-s2", "upo-s2"]
    assert len(select_runs(config, None)) == 6
    with pytest.raises(ConfigError, match=r"--only upo-t0.5: no such run.*Its runs: dpo, upo \(each also by seed"):
        select_runs(config, ["upo", "upo-t0.5"])


@pytest.mark.parametrize("seeds, message", [
    ([0, 0], "distinct integers"), ("0,1", "distinct integers"), ([], "distinct integers"), ([0, True], "distinct"),
])
def test_bad_seeds_are_refused(seeds, message):
    with pytest.raises(ConfigError, match=message):
        load_frontier_config({**CONFIG, "seeds": seeds})


def test_a_run_with_its_own_seed_is_refused_in_a_seeds_grid():
    runs = [{"name": "dpo", "options": {"alpha": 0.0, "seed": 3}}]
    with pytest.raises(ConfigError, match="cannot set its own seed"):
        load_frontier_config({**CONFIG, "runs": runs, "seeds": [0, 1]})


def _run(name, family, seed, designer, wins, preference):
    n = len(designer)
    return {"name": f"{name}-s{seed}", "group": name, "seed": seed, "family": family, "options": {"seed": seed},
            "designer": designer, "wins": wins, "preference": preference,
            "summary": {"designer_score": sum(designer) / n, "preference_score": sum(preference) / n,
                        "win_rate": sum(wins) / n, "kl": 1.0, "length_words": 10.0}}


def _grid():
    return [
        _run("dpo", "DPO", 0, [0.0, 0.0], [0.5, 0.5], [0.2, 0.2]),
        _run("dpo", "DPO", 1, [1.0, 1.0], [0.5, 0.5], [0.2, 0.2]),
        _run("upo", "UPO", 0, [1.0, 2.0], [0.5, 0.5], [0.2, 0.2]),
        _run("upo", "UPO", 1, [2.0, 3.0], [1.0, 0.0], [0.2, 0.2]),
        _run("drov", "DRO-V", 0, [0.0, 1.0], [0.5, 0.5], [0.1, 0.1]),
    ]


def test_seed_summaries_are_means_over_seeds_paired_with_dpo_of_the_same_seed():
    groups = {g["name"]: g for g in seed_summaries(_grid(), {"designer_score_std": 2.0})}
    upo = groups["upo"]
    assert upo["seeds"] == [0, 1] and upo["designer_score"] == pytest.approx(2.0)  # (1.5 + 2.5) / 2
    assert upo["designer_score_sd"] == pytest.approx(0.7071, abs=1e-4)
    # Paired with DPO of its own seed, prompt by prompt: (1, 2) - (0, 0) and (2, 3) - (1, 1), over 1 std = 2.0
    assert upo["gain_std"] == pytest.approx((0.5 + 1.0 + 0.5 + 1.0) / 4)
    # Its table (0.5, 1), (0.5, 1): no seed part, the prompts' part (MS_prompts 0.25) / 4 with 1 df, t = 6.313752.
    half = 6.313752 * (0.25 / 4) ** 0.5
    assert upo["gain_std_ci90"] == pytest.approx([0.75 - half, 0.75 + half], abs=1e-5)
    assert upo["win_rate_gap"] == pytest.approx(0.0) and upo["win_rate_gap_ci90"][0] <= 0 <= upo["win_rate_gap_ci90"][1]
    assert groups["drov"]["paired_seeds"] == [0] and "gain_std" not in groups["dpo"]
    table = format_seed_table(list(groups.values()))
    assert "| upo | UPO | 0,1 | +2.000 ± 0.707 |" in table and "| drov | DRO-V | 0 | +0.500 |" in table


def test_the_plot_draws_each_familys_front_with_each_seed(tmp_path):
    reference = {"designer_score_std": 2.0, "designer_score": 0.0, "preference_score": 0.15}
    runs = _grid()
    fronts, nadir = family_fronts(runs, reference)
    path = tmp_path / "frontier.png"
    plot_fronts({"fronts": fronts, "groups": seed_summaries(runs, reference), "reference": reference,
                 "reference_designer_std": 2.0, "seeds": [0, 1]}, path)
    assert path.stat().st_size > 0


def test_the_shipped_seeds_grid_has_every_family_it_compares():
    from upo.experiments.frontier import run_family

    config = load_frontier_config("examples/frontier_chitchat_seeds.yaml")
    families = {run.group: run_family({"options": run.options}) for run in config.runs}
    assert families == {"dpo": "DPO", "modpo-w0.5": "MODPO", "upo-seq-a1": "UPO", "upo-tok-a1": "UPO",
                        "upo-seq-a1-t0.5": "UPO", "drov-a1": "DRO-V", "alol-a1": "A-LOL"}
    assert len(config.runs) == 21


def test_the_value_fit_is_read_from_the_run_folder(tmp_path):
    import json

    from upo.experiments.frontier.results import value_fit

    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": [
        {"value/explained_variance": 0.1, "step": 8}, {"value/explained_variance": 0.2, "step": 16},
        {"eval_value/explained_variance": -0.3, "step": 16}]}))
    assert value_fit(tmp_path) == {"held_out": -0.3, "train": 0.2}
    older = tmp_path / "older"  # trained before run folders held trainer_state.json: what it printed
    older.mkdir()
    (older / "train.log").write_text("{'loss': 1.0, 'value/explained_variance': 0.05}\n"
                                     "{'eval_loss': 2.0, 'eval_value/explained_variance': -0.1779, 'epoch': 1.0}\n")
    assert value_fit(older) == {"held_out": -0.1779, "train": 0.05}


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("frontier_*.yaml")), ids=lambda p: p.name)
def test_every_shipped_frontier_config_parses_as_its_runs_would_train(path):
    config = load_frontier_config(path)  # every run's options, as `upo train` parses them; raises on the first bad one
    assert config.runs
