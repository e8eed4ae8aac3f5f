"""The method records (`upo.methods`): each method trains and is named from its record, and no other module of the
package names a method."""

import ast
import json
import math
from pathlib import Path

import pytest
from datasets import Dataset
from helpers import make_pairs
from test_trainer import train

import upo
from upo import methods
from upo.config import UPOConfig
from upo.data.pipeline import designer_rewards
from upo.errors import ConfigError
from upo.rewards.target import designer_temperature

PACKAGE = Path(upo.__file__).parent
# The only modules that may spell a method's `loss_type`: its record, the losses, and their dispatch.
MAY_NAME_METHODS = {"methods.py", "losses.py", "objective.py"}


def alpha_for(method: methods.Method) -> float:
    return 1.0 if method.designer in (methods.TERM, methods.REWARD) else 0.0


@pytest.mark.parametrize("name", list(methods.METHODS))
def test_each_method_trains_a_step_and_its_card_says_what_its_record_says(tokenizer, tmp_path, name):
    method = methods.METHODS[name]
    needed = {option: 1e-3 for option in method.needs_positive}  # EXO's label_smoothing
    trainer, logs = train(tokenizer, Dataset.from_list(make_pairs(8)), tmp_path, name, loss_type=[name],
                          alpha=alpha_for(method), reward_funcs=["length"], max_steps=1, **needed)
    assert logs and all(v == v for v in logs[0].values())  # one step logged, nothing NaN
    assert (trainer.ref_model is not None or trainer.precomputed_ref or trainer.is_peft) == trainer.uses_reference
    assert trainer.uses_reference == methods.uses_reference([name], trainer.use_designer_term, trainer.args.aux_loss)
    trainer.save_model()
    card = (tmp_path / name / "README.md").read_text()
    line = methods.designer_card_text(trainer.args, trainer.use_designer_term)
    assert line in card
    expected = {methods.TERM: f"UPO designer term `{methods.DEFAULT_AUX_LOSS}` on",
                methods.REWARD: "preference label (+1 / -1) + 1.0 x the designer",
                methods.MARGIN: "designer reward margin, weighted 0.5", methods.NONE: "control tag `[good]`"}
    assert expected[method.designer] in line  # an A-LOL card once said "No designer term"
    assert (trainer.value_head is not None) == (method.value_head or trainer.use_designer_term)


def test_families_of_runs():
    family = methods.family_of
    assert family(["sigmoid"], 1.0) == methods.UPO_FAMILY and family(["sigmoid"], 0.0) == methods.DPO_FAMILY
    assert family(["sigmoid"], 1.0, has_rewards=False) == "DPO"
    assert family(["sigmoid", "sft"], 0.0) == "RPO" and family(["sigmoid", "sft"], 1.0) == "UPO"
    assert family(["kto"], 1.0) == "KTO-UPO" and family(["kto"], 0.0) == "KTO"
    assert family(["modpo"], 0.0) == "MODPO" and family(["sft", "modpo"], 0.0) == "MODPO"
    assert [family([n], 1.0) for n in ("aoppo", "drov", "alol")] == ["aoPPO", "DRO-V", "A-LOL"]
    assert family(["csft"], 0.0) == "CSFT" and family(["ipo"], 0.0) == "IPO"
    assert family(["sigmoid", "hinge"], 0.0) == "DPO+SLiC"


def test_families_of_trls_loss_types_and_the_reference_free_methods():
    family = methods.family_of
    trl_types = ("robust", "exo_pair", "nca_pair", "bco_pair", "sppo_hard", "aot", "aot_unpaired", "apo_zero",
                 "apo_down", "discopop", "sigmoid_norm")
    assert [family([n], 0.0) for n in trl_types] == ["rDPO", "EXO", "NCA", "BCO", "SPPO", "AOT", "AOT-unpaired",
                                                     "APO-zero", "APO-down", "DiscoPOP", "LN-DPO"]
    assert [family([n], 0.0) for n in ("simpo", "cpo", "orpo")] == ["SimPO", "CPO", "ORPO"]
    assert [family([n], 1.0) for n in ("simpo", "cpo", "orpo")] == ["SimPO-UPO", "CPO-UPO", "ORPO-UPO"]
    assert family(["simpo", "sft"], 0.0) == "CPO-SimPO"


def test_reference_free_runs_build_no_reference_unless_their_designer_term_reads_one():
    assert not methods.uses_reference(["simpo"], True, "awr") and not methods.uses_reference(["cpo", "sft"], False)
    assert methods.uses_reference(["simpo"], True, "topr")  # its push-down is measured against the reference
    assert methods.uses_reference(["orpo"], True, "infonca")  # the signed forms compare log-ratios
    assert not methods.uses_reference(["orpo"], False, "infonca")
    assert methods.uses_reference(["sigmoid", "simpo"], False)
    assert not methods.honours_weights(["sigmoid", "aot"]) and methods.honours_weights(["sigmoid", "cpo"])


def test_loss_type_options_are_checked_by_their_records():
    with pytest.raises(ConfigError, match=r"loss_type 'exo_pair' needs label_smoothing above 0, got 0.0"):
        UPOConfig(output_dir="x", loss_type=["exo_pair"], use_cpu=True)
    UPOConfig(output_dir="x", loss_type=["exo_pair"], label_smoothing=1e-3, use_cpu=True)
    with pytest.raises(ConfigError, match=r"loss_type 'aot_pair' is now 'aot_unpaired' \(renamed in TRL\)"):
        UPOConfig(output_dir="x", loss_type=["aot_pair"], use_cpu=True)
    with pytest.raises(ConfigError, match=r"discopop_tau must be"):
        UPOConfig(output_dir="x", loss_type=["discopop"], discopop_tau=0.0, use_cpu=True)


def test_a_reference_free_run_refuses_a_reference_model(tokenizer, tmp_path):
    from helpers import tiny_config, tiny_model

    from upo import UPOTrainer

    with pytest.raises(ConfigError, match=r"loss_type \['simpo'\] reads no reference model: drop ref_model"):
        UPOTrainer(tiny_model(), tiny_model(), tiny_config(tmp_path / "r", loss_type=["simpo"]),
                   train_dataset=Dataset.from_list(make_pairs(4)), processing_class=tokenizer)


def test_loss_type_help_names_every_method():
    help_text = {f.name: f for f in UPOConfig.__dataclass_fields__.values()}["loss_type"].metadata["help"]
    for name in methods.METHODS:
        assert f"'{name}'" in help_text


def test_generation_prefix_is_the_good_tag_for_tagged_rows_only():
    assert methods.generation_prefix({"loss_type": ["csft"], "csft_tags": ["<g>", "<b>"]}) == "<g>"
    assert methods.generation_prefix({"loss_type": "csft", "csft_tags": ["<g>", "<b>"]}) == "<g>"
    assert methods.generation_prefix({"loss_type": ["sigmoid"], "csft_tags": ["<g>", "<b>"]}) is None
    assert methods.generation_prefix({"loss_type": ["renamed-since"]}) is None
    assert methods.generation_prefix({}) is None


def test_no_other_module_names_a_method():
    """A string literal equal to a method's `loss_type` outside the records, losses and objective means knowledge of
    that method stated a second time (messages that mention a name inside a sentence are fine)."""
    names = set(methods.METHODS)
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in MAY_NAME_METHODS and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}")
    assert not found, "method names outside upo/methods.py, losses.py, objective.py:\n" + "\n".join(found)


@pytest.mark.parametrize("aux_loss", list(methods.DESIGNER_TERMS))
def test_each_designer_term_trains_and_names_its_runs(tokenizer, tmp_path, aux_loss):
    term = methods.DESIGNER_TERMS[aux_loss]
    trainer, logs = train(tokenizer, Dataset.from_list(make_pairs(8)), tmp_path, aux_loss, reward_funcs=["length"],
                          aux_loss=aux_loss, max_steps=1, logging_steps=1)
    assert math.isfinite(logs[0]["loss/aux"]) and ("aux/pair_accuracy" in logs[0]) == term.pairwise
    assert (trainer.value_head is None) == term.pairwise  # V(x) cancels within a pair
    family = methods.family_of(["sigmoid"], 1.0, aux_loss=aux_loss)
    assert family == ("UPO" if aux_loss == methods.DEFAULT_AUX_LOSS else f"UPO-{term.label}")


def test_a_pair_form_of_the_designer_term_on_unpaired_rows_is_refused():
    with pytest.raises(ConfigError, match=r"aux_loss 'infonca' with loss_type \['kto'\]: it compares the two "):
        UPOConfig(output_dir="x", loss_type=["kto"], aux_loss="infonca", use_cpu=True)
    UPOConfig(output_dir="x", loss_type=["kto"], aux_loss="topr", use_cpu=True)
    with pytest.raises(ConfigError, match=r"Unknown aux_loss 'infonce'; choose among \['awr', 'infonca'"):
        UPOConfig(output_dir="x", aux_loss="infonce", use_cpu=True)


def test_designer_target_sets_the_temperature_from_the_training_rewards(tokenizer, tmp_path, capsys):
    pairs = Dataset.from_list(make_pairs(16))
    trainer, _ = train(tokenizer, pairs, tmp_path, "target", reward_funcs=["length:target_words=5"],
                       designer_target=0.3, aux_loss="infonca", max_steps=1)
    expected = designer_temperature(designer_rewards(trainer.train_dataset), 0.3)
    assert trainer.args.aw_temperature == pytest.approx(expected.temperature, rel=1e-12)
    assert f"designer_target 0.3 std: aw_temperature {expected.temperature:.4g}" in capsys.readouterr().out
    trainer.save_model()
    stored = json.loads((tmp_path / "target" / "upo_config.json").read_text())
    assert stored["aw_temperature"] == pytest.approx(expected.temperature, rel=1e-12)
    assert stored["designer_temperature"]["target"] == 0.3 and stored["designer_target"] == 0.3
    with pytest.raises(ConfigError, match=r"designer_target 50.0 is beyond any reweighting of the training replies"):
        train(tokenizer, pairs, tmp_path, "far", reward_funcs=["length:target_words=5"], designer_target=50.0)
