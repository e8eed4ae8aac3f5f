"""The target is the user's: `target:` in the frontier config (none by default), checked when the config loads, and
judged by one rule (upo/experiments/frontier/target.py) for one seed and for several; and a finished grid reported
again with `upo frontier --report_only`, fronts and verdict included, from fabricated evaluations."""

import json

import pytest
import yaml
from helpers import write_chitchat_rows

from upo.cli import main
from upo.config import UPOConfig
from upo.errors import ConfigError
from upo.experiments.frontier import load_frontier_config, run_dir, run_train_options, settings_key, train_key
from upo.experiments.frontier.results import family_fronts, seed_summaries
from upo.experiments.frontier.target import NO, NOT_SHOWN, YES, Target, judge_target
from upo.files import atomic_write_json

CONFIG = {"output_dir": "out", "dataset": "train.jsonl", "eval_data": "eval.jsonl", "reward_funcs": ["length"],
          "runs": [{"name": "dpo", "options": {"alpha": 0.0}}, {"name": "upo", "options": {}},
                   {"name": "modpo", "options": {"loss_type": ["modpo"], "alpha": 0.0}},
                   {"name": "drov", "options": {"loss_type": ["drov"], "alpha": 1.0}}]}


def test_no_target_by_default_and_a_declared_one_is_read_whole():
    assert load_frontier_config(CONFIG).target is None
    target = {"family": "UPO", "run": "upo", "preference_margin": 0.01, "min_gain": 0.5,
              "gain_at_least": ["DRO-V", "MODPO"], "not_dominated_by": ["MODPO", "DRO-V"], "min_seeds": 3}
    assert load_frontier_config({**CONFIG, "target": target}).target == Target(
        family="UPO", run="upo", preference_margin=0.01, min_gain=0.5, gain_at_least=("DRO-V", "MODPO"),
        not_dominated_by=("MODPO", "DRO-V"), min_seeds=3)


@pytest.mark.parametrize("target, message", [
    ({"family": "UPO", "preference_margin": 0.01, "margin": 1}, r"target: unknown key\(s\) \['margin'\]; the keys are"),
    ({"preference_margin": 0.01}, r"target: missing 'family'"),
    ({"family": "UPO"}, r"target: missing 'preference_margin'"),
    ({"family": "UPO", "preference_margin": 0}, r"preference_margin must be a positive number, got 0"),
    ({"family": "UPO", "preference_margin": 0.01, "not_dominated_by": ["DROV"]},
     r"not_dominated_by: 'DROV' is not a family of this grid's runs; its families: DPO, UPO, MODPO, DRO-V"),
    ({"family": "UPO", "preference_margin": 0.01, "run": "drov"},
     r"target, run: 'drov' is not a run of family UPO; its runs: upo"),
    ({"family": "UPO", "preference_margin": 0.01, "min_seeds": 0}, r"min_seeds must be an integer >= 1, got 0"),
    ({"family": "UPO", "preference_margin": 0.01, "gain_at_least": "DRO-V,MODPO"}, r"is not a family"),
    ("UPO", r"target must be a mapping"),
], ids=["unknown-key", "no-family", "no-margin", "zero-margin", "unknown-family", "run-of-another-family",
        "min-seeds", "families-as-text", "not-a-mapping"])
def test_a_bad_target_is_refused_when_the_config_loads(target, message):
    with pytest.raises(ConfigError, match=message):
        load_frontier_config({**CONFIG, "target": target})


def test_the_projects_research_grids_declare_the_projects_target():
    from pathlib import Path

    examples = sorted(Path(__file__).resolve().parents[2].glob("examples/frontier_chitchat*.yaml"))
    assert len(examples) == 6
    for path in examples:
        target = load_frontier_config(path).target
        assert target.family == "UPO" and target.gain_at_least == ("DRO-V", "MODPO"), path
        assert {"DPO", "MODPO", "DRO-V"} <= set(target.not_dominated_by) and target.min_seeds == 3, path


# ------------------------------------------------------------------------------------------- the one rule

# Per prompt (4 prompts): UPO's preference minus DPO's is a[s] + P[j]; its designer score 0.55 above DPO's on average.
P = [0.001, -0.001, 0.003, 0.001]
SEED_EFFECT = {0: -0.004, 1: 0.0, 2: 0.004, None: 0.0}


def _run(name, family, seed, designer, preference):
    n = len(designer)
    return {"name": name if seed is None else f"{name}-s{seed}", "group": name, "seed": seed, "family": family,
            "options": {} if seed is None else {"seed": seed}, "designer": designer, "preference": preference,
            "wins": [0.5] * n, "summary": {"designer_score": sum(designer) / n, "preference_score": sum(preference) / n,
                                           "win_rate": 0.5, "kl": 1.0, "length_words": 10.0}}


def _grid(seeds):
    runs = []
    for seed in seeds:
        shift = 0.0 if seed is None else 0.02 * (seed - 1)
        runs += [_run("dpo", "DPO", seed, [0.0] * 4, [0.16] * 4),
                 _run("upo", "UPO", seed, [0.55 + d + shift for d in (0.1, -0.1, 0.0, 0.0)],
                      [0.16 + SEED_EFFECT[seed] + p for p in P]),
                 _run("drov", "DRO-V", seed, [0.8] * 4, [0.14 + p for p in P]),
                 _run("modpo", "MODPO", seed, [0.3] * 4, [0.17 + p for p in P])]
    return runs


def _judge(target, seeds):
    runs, reference = _grid(seeds), {"designer_score_std": 1.0, "designer_score": 0.0, "preference_score": 0.15}
    groups = seed_summaries(runs, reference)
    fronts, _ = family_fronts(runs, reference)
    return judge_target(target, {f["family"]: f for f in fronts}, groups), {g["name"]: g for g in groups}


def _outcomes(verdict):
    return {c["name"]: c["outcome"] for c in verdict["conditions"]}


def test_one_rule_for_one_seed_and_for_three():
    target = Target(family="UPO", run="upo", preference_margin=0.005, min_gain=0.5, gain_at_least=("DRO-V",),
                    not_dominated_by=("DRO-V", "MODPO"))
    # One seed: the preference gap (0.001, -0.001, 0.003, 0.001) has mean 0.001 and se sqrt((8e-6 / 3) / 4); with
    # t(0.95, 3) = 2.353363 its interval is -0.00092..+0.00292, inside +-0.005: equal preference shown.
    verdict, groups = _judge(target, [None])
    assert groups["upo"]["preference_gap_ci90"] == pytest.approx([0.001 - 0.0019215, 0.001 + 0.0019215], abs=1e-6)
    assert _outcomes(verdict) == {"seeds": YES, "at DPO's preference": YES, "designer gain": YES,
                                  "gain at least DRO-V's": YES, "not dominated by DRO-V": YES,
                                  "not dominated by MODPO": YES}
    assert verdict["verdict"] == "met" and verdict["met"] is True
    # Three seeds: the seeds move the gap by -0.004, 0, +0.004. Seeds' part 4 x 32e-6 / 2 / 12 with 2 df, prompts'
    # part 3 x 8e-6 / 3 / 12 with 3 df: the interval is 0.001 +- sqrt(2.919986^2 x 5.333e-6 + 2.353363^2 x 6.667e-7)
    # = 0.001 +- 0.00701, which reaches past +0.005: equal preference not shown, and so neither is the target.
    verdict, groups = _judge(target, [0, 1, 2])
    assert groups["upo"]["preference_gap_ci90"] == pytest.approx([0.001 - 0.0070119, 0.001 + 0.0070119], abs=1e-6)
    assert _outcomes(verdict)["at DPO's preference"] == NOT_SHOWN
    assert verdict["verdict"] == NOT_SHOWN and verdict["met"] is None
    # The same rule with a margin of 0.01: shown, and the target met.
    wider = Target(**{**target.__dict__, "preference_margin": 0.01})
    assert _judge(wider, [0, 1, 2])[0]["verdict"] == "met"
    # Declared over three seeds, one seed cannot show it.
    three = Target(**{**target.__dict__, "min_seeds": 3})
    assert _outcomes(_judge(three, [None])[0])["seeds"] == NOT_SHOWN


def test_a_run_shown_off_dpos_preference_or_below_the_gain_fails_the_target():
    far = Target(family="DRO-V", run="drov", preference_margin=0.01)  # -0.019 +- 0.0019: shown beyond -0.01
    verdict = _judge(far, [None])[0]
    assert _outcomes(verdict)["at DPO's preference"] == NO and verdict["verdict"] == "not met"
    high = Target(family="UPO", run="upo", preference_margin=0.01, min_gain=0.6)
    verdict = _judge(high, [None])[0]
    assert _outcomes(verdict)["designer gain"] == NO and verdict["verdict"] == "not met"
    assert _judge(None, [None])[0] is None  # no target: no verdict


def _front(family, points, gain_kind=None, gain=None, shown=True):
    out = {"family": family, "seeds": [0, 1, 2], "dpo": "dpo",
           "points": [{"name": f"{family}-{k}", "strength": "", "designer_score": x, "preference_score": y,
                       "on_front": True} for k, (x, y) in enumerate(points)],
           "front": [f"{family}-{k}" for k in range(len(points))], "gain": None}
    if gain_kind:
        out["gain"] = {"kind": gain_kind, "gain_std": gain, "interval": None, "shown": shown,
                       "dpo_point": [0.0, 0.16]}
    return out


def test_a_front_is_judged_by_its_gain_at_dpos_preference_and_its_points():
    fronts = {"UPO": _front("UPO", [(0.3, 0.17), (0.9, 0.15)], "interpolated", 0.6),
              "MODPO": _front("MODPO", [(0.7, 0.165)], "lower_bound", 0.7),
              "DRO-V": _front("DRO-V", [(1.2, 0.13)], "never_reaches"),
              "A-LOL": _front("A-LOL", [(0.2, 0.18), (1.0, 0.16)], "interpolated", 1.0)}
    target = Target(family="UPO", preference_margin=0.01, gain_at_least=("MODPO", "DRO-V", "A-LOL"),
                    not_dominated_by=("MODPO", "DRO-V", "A-LOL"))
    outcomes = _outcomes(judge_target(target, fronts, []))
    assert outcomes["at DPO's preference"] == YES
    # MODPO's is at least 0.7, above UPO's 0.6: not met; DRO-V's front never reaches DPO's preference; A-LOL's is 1.0.
    assert (outcomes["gain at least MODPO's"], outcomes["gain at least DRO-V's"],
            outcomes["gain at least A-LOL's"]) == (NO, YES, NO)
    # MODPO's point (0.7, 0.165) dominates (0.3, 0.17)? No (less preference); (0.9, 0.15)? No (less designer): one free
    # point is enough. A-LOL's line from (0.2, 0.18) to (1.0, 0.16) reaches 0.6 at 0.17 and 1.0 at 0.16: both dominated.
    assert (outcomes["not dominated by MODPO"], outcomes["not dominated by DRO-V"],
            outcomes["not dominated by A-LOL"]) == (YES, YES, NO)
    # A bound or a miss the noise does not show decides nothing; a bound of ours at least theirs does.
    fronts["DRO-V"]["gain"]["shown"] = False
    fronts["UPO"]["gain"].update(kind="lower_bound", gain_std=1.1)
    outcomes = _outcomes(judge_target(target, fronts, []))
    assert (outcomes["gain at least MODPO's"], outcomes["gain at least DRO-V's"],
            outcomes["gain at least A-LOL's"]) == (NOT_SHOWN, NOT_SHOWN, YES)


# ------------------------------------------------------------------------------------------- --report_only


def _write_grid(tmp_path, target):
    config = {"output_dir": str(tmp_path / "grid"), "dataset": str(write_chitchat_rows(tmp_path / "train.jsonl", 8)),
              "eval_data": str(write_chitchat_rows(tmp_path / "eval.jsonl", 4, seed=2)),
              "reward_funcs": ["length:target_words=4"], "seeds": [0, 1, 2],
              "runs": [{"name": "dpo", "options": {"alpha": 0.0}},
                       {"name": "upo-t1", "options": {"aw_temperature": 1.0}}, {"name": "upo", "options": {}},
                       {"name": "drov", "options": {"loss_type": ["drov"], "alpha": 1.0}}]}
    if target:
        config["target"] = target
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(config))
    loaded = load_frontier_config(path)
    key = settings_key(loaded)
    dpo_preference = [0.16, 0.17, 0.15, 0.16]
    shapes = {"dpo": (0.0, 0.0), "upo-t1": (0.3, 0.01), "upo": (0.9, -0.01), "drov": (1.2, -0.03)}
    for run in loaded.runs:
        designer_shift, preference_shift = shapes[run.group]
        wiggle = 0.001 * (run.seed + 1)
        designer = [designer_shift + 0.01 * run.seed + d for d in (0.1, -0.1, 0.0, 0.0)]
        preference = [p + preference_shift + w for p, w in zip(dpo_preference, (wiggle, -wiggle, 0.0, 0.0))]
        summary = {"designer_score": sum(designer) / 4, "designer_score_std": 0.1,
                   "preference_score": sum(preference) / 4, "win_rate": 0.5, "kl": 1.0, "length_words": 5.0,
                   "implicit_accuracy": 0.5}
        folder = run_dir(loaded, run.name)
        atomic_write_json(folder / "train_done.json", {"options_key": train_key(run_train_options(loaded, run))})
        atomic_write_json(folder / "eval_summary.json", {
            "settings_key": key, "summary": summary, "replies": [], "designer": designer, "preference": preference,
            "wins": [0.5] * 4, "kl": [1.0] * 4})
    reference = {"designer_score": 0.0, "designer_score_std": 1.0, "preference_score": 0.155, "win_rate": 0.5,
                 "kl": 0.0, "length_words": 5.0, "implicit_accuracy": None}
    atomic_write_json(tmp_path / "grid" / "reference_eval.json", {"settings_key": key, "summary": reference,
                                                                  "replies": [], "preference": [0.155] * 4})
    return path


def test_report_only_on_a_finished_grid_reports_the_fronts_and_the_declared_target(tmp_path, capsys):
    target = {"family": "UPO", "preference_margin": 0.01, "gain_at_least": ["DRO-V"], "not_dominated_by": ["DRO-V"],
              "min_seeds": 3}
    assert main(["frontier", "--config", str(_write_grid(tmp_path, target)), "--report_only"]) == 0
    printed = capsys.readouterr().out
    markdown = (tmp_path / "grid" / "frontier.md").read_text()
    assert printed.strip() == markdown.strip()
    # UPO's front joins (+0.31, 0.1700) and (+0.91, 0.1500); DPO (+0.01, 0.1600) is halfway: +0.61 - 0.01 = +0.60.
    row = next(line for line in markdown.splitlines() if line.startswith("| UPO |"))
    default = UPOConfig.aw_temperature  # the strength of the run that leaves it unset
    assert f"upo-t1 [aw_temperature=1.0] +0.310, 0.1700 -> upo [aw_temperature={default} (default)] +0.910, 0.1500" \
        in row
    assert "+0.60 (" in row and "between upo-t1 and upo" in row
    drov = next(line for line in markdown.splitlines() if line.startswith("| DRO-V |"))
    assert "none: every point has less preference than DPO's 0.1600 (" in drov
    assert "Verdict: met." in markdown and "* gain at least DRO-V's: yes" in markdown
    result = json.loads((tmp_path / "grid" / "frontier.json").read_text())
    upo = next(f for f in result["fronts"] if f["family"] == "UPO")
    assert upo["gain"]["gain_std"] == pytest.approx(0.6) and result["target"]["verdict"] == "met"
    # Area above the nadir (designer 0.0: the reference; preference 0.13: DRO-V): 0.31 x 0.04 + 0.6 x 0.02.
    assert result["area_reference"] == pytest.approx([0.0, 0.13])
    assert upo["area"] == pytest.approx(0.31 * 0.04 + 0.6 * 0.02)
    page = (tmp_path / "grid" / "frontier.html").read_text()
    assert "|---" not in page and page.count('<table class="summary">') == 3 and "Verdict: met." in page
    assert (tmp_path / "grid" / "frontier.png").stat().st_size > 0
    assert (tmp_path / "grid" / "frontier_runs.png").stat().st_size > 0


def test_a_grid_without_a_target_prints_no_verdict(tmp_path, capsys):
    assert main(["frontier", "--config", str(_write_grid(tmp_path, None)), "--report_only"]) == 0
    markdown = (tmp_path / "grid" / "frontier.md").read_text()
    assert "Fronts:" in markdown and "Target" not in markdown and "Verdict" not in markdown
    assert json.loads((tmp_path / "grid" / "frontier.json").read_text())["target"] is None
