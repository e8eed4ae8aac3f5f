"""The evaluation's reuse of work between its parts and between models gives the numbers of the plain path (every
model loaded from disk, one forward over prompt and continuation for each number), up to floating-point summation
order: a LoRA run merged into a copy of the reference in memory, the KL's reference continued from its kept prompt
states, the held-out pairs continued from generation's prompt states, the reference's pair log-probs kept (and stored
for another process), the human replies embedded once.

Tolerance: the tiny float32 models' log-probs and KLs agree to 1e-4 relative (1e-5 absolute); replies, token counts
and the implicit accuracy (a count of signs) are equal."""

import json

import pytest
import torch
from helpers import make_tiny_lm_dir, make_tiny_scorer_dir, write_chitchat_rows
from transformers import AutoModelForCausalLM, AutoTokenizer

from upo.data.collator import PreferenceCollator
from upo.eval.data import rows_as_chat
from upo.eval.evaluate import EvalSettings, Evaluator, load_eval_rows
from upo.eval.generate import Decoding, generate
from upo.eval.models import ComparisonModels
from upo.eval.pair_logps import HeldOutPairs, PairLogps
from upo.eval.prompt_states import ReferencePrompts
from upo.eval.scorers.similarity import HumanReplySimilarity
from upo.logps import forward_logps
from upo.models.trained import load_model

REL, ABS = 1e-4, 1e-5


def make_lora_run(folder, base, seed: int = 3):
    """A LoRA run folder trained from `base` as `upo train` leaves one (adapter and tokenizer), its B matrices random
    (a run that moved away from the reference)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"],
                                      init_lora_weights=False))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(base)}))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    reference = make_tiny_lm_dir(root / "reference", seed=0)
    return {"reference": reference, "policy": make_tiny_lm_dir(root / "policy", seed=1),
            "lora": make_lora_run(root / "lora", reference), "scorer": make_tiny_scorer_dir(root / "scorer"),
            "eval": write_chitchat_rows(root / "eval.jsonl", 7, seed=2),
            "eval_identical": with_identical_pair(write_chitchat_rows(root / "eval_identical.jsonl", 7, seed=2), 3)}


def with_identical_pair(path, row: int):
    """The file with row `row`'s rejected response made its chosen one (a pair that states no preference)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[row]["rejected"] = rows[row]["chosen"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_lora_run_merged_into_the_references_copy_is_the_run_loaded_from_disk(folders):
    reference, tokenizer = load_model(str(folders["reference"]), device="cpu")
    merged, merged_tokenizer = ComparisonModels(reference, tokenizer, str(folders["reference"]),
                                                device="cpu").load(str(folders["lora"]))
    loaded, _ = load_model(str(folders["lora"]), device="cpu")
    assert type(merged) is type(loaded) and merged is not reference
    assert merged_tokenizer is tokenizer  # the same files: the tokenizer read once
    a, b = merged.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(reference.state_dict()["model.layers.0.self_attn.q_proj.weight"],
                           a["model.layers.0.self_attn.q_proj.weight"])  # the reference itself is left as it was


def test_kl_and_pair_logps_continued_from_prompt_states_match_whole_forwards(folders):
    reference = AutoModelForCausalLM.from_pretrained(folders["reference"]).eval()
    policy = AutoModelForCausalLM.from_pretrained(folders["policy"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(folders["reference"])
    pad = tokenizer.pad_token_id  # the tiny tokenizer has one
    assert pad is not None
    rows = rows_as_chat(load_eval_rows(folders["eval"]))
    prompts = [r["prompt"] for r in rows]
    pairs = HeldOutPairs.tokenize(tokenizer, rows, 64)
    kept = ReferencePrompts(reference, pad)
    decoding = Decoding(max_new_tokens=6)
    generate(reference, tokenizer, prompts, decoding, seed=0, batch_size=3, progress=False,
             on_prompts=lambda indices, states: kept.keep(states))
    assert len(kept.kept) == 3  # 7 prompts in batches of 3: every batch's states kept

    collector = PairLogps(policy, pairs, pad)
    continued = generate(policy, tokenizer, prompts, decoding, seed=0, batch_size=3, reference=kept, progress=False,
                         on_prompts=collector.add_batch)
    plain = generate(policy, tokenizer, prompts, decoding, seed=0, batch_size=3, reference=reference, progress=False)
    assert continued.replies == plain.replies and continued.token_counts == plain.token_counts
    assert [k for [k] in continued.kls] == pytest.approx([k for [k] in plain.kls], rel=REL, abs=ABS)
    assert all(k > 0 for [k] in plain.kls)

    chosen, rejected = collector.finish()
    assert collector.batches and not collector.whole  # every pair continued from its prompt's states
    batch = PreferenceCollator(pad)(pairs.token_rows(list(range(len(pairs)))))
    with torch.no_grad():
        whole_chosen, whole_rejected = forward_logps(policy, batch).logps.float().chunk(2)
    assert chosen.tolist() == pytest.approx(whole_chosen.tolist(), rel=REL, abs=ABS)
    assert rejected.tolist() == pytest.approx(whole_rejected.tolist(), rel=REL, abs=ABS)
    # The reference by the same plan, on its kept states: its own log-probs, as a whole forward gives them.
    ref_chosen, _ = collector.like(reference, kept.states)
    with torch.no_grad():
        whole_ref_chosen = forward_logps(reference, batch).logps.float().chunk(2)[0]
    assert ref_chosen.tolist() == pytest.approx(whole_ref_chosen.tolist(), rel=REL, abs=ABS)


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if key in ("seconds", "phases"):
            continue
        if isinstance(value, float) and key != "implicit_accuracy":
            assert value == pytest.approx(b[key], rel=REL, abs=ABS), key
        else:
            assert value == b[key], key


def test_the_evaluation_gives_the_plain_paths_numbers(folders):
    settings = EvalSettings(str(folders["eval"]), None, ["length:target_words=5"], max_new_tokens=6, batch_size=3,
                            max_length=64)
    similarity = HumanReplySimilarity(folders["scorer"])
    plain = Evaluator(settings, str(folders["reference"]), scorer=similarity, progress=False, plain=True)
    fast = Evaluator(settings, str(folders["reference"]), scorer=similarity, progress=False)
    names = {"lora": str(folders["lora"]), "policy": str(folders["policy"])}
    expected = {"reference": plain.evaluate_reference(), **{n: plain.evaluate(n, p) for n, p in names.items()}}
    got = {"reference": fast.evaluate_reference(), **{n: fast.evaluate(n, p) for n, p in names.items()}}
    for name in expected:
        _close(got[name]["summary"], expected[name]["summary"])
        assert got[name]["replies"] == expected[name]["replies"]
        assert got[name]["kl"] == pytest.approx(expected[name]["kl"], rel=REL, abs=ABS)
        assert got[name]["preference"] == pytest.approx(expected[name]["preference"], rel=REL, abs=ABS)
    assert expected["lora"]["summary"]["kl"] > 0 and expected["policy"]["summary"]["kl"] > 0
    assert fast.reference_prompts.kept and got["reference"]["pair_logps"]["chosen"]
    assert set(got["lora"]["summary"]["phases"]) >= {"load", "generation", "KL", "implicit accuracy", "scoring"}

    # Another process (a frontier's next `upo frontier`) reads the reference's stored evaluation: the reference is
    # not generated again, its pair log-probs are not computed again, and the numbers are the same.
    stored = json.loads(json.dumps(got["reference"]))
    later = Evaluator(settings, str(folders["reference"]), scorer=similarity, progress=False)
    later.use_reference_record(stored)
    again = later.evaluate("lora", names["lora"])
    assert len(later._reference_pair_logps) == 1  # the stored ones: the same plan, so the same key
    assert len(later.reference_prompts.kept) == 3  # the reference's prompt pass, once per batch, kept for later runs
    _close(again["summary"], expected["lora"]["summary"])


def test_an_identical_pair_is_left_out_of_the_accuracy_on_both_paths(folders):
    """A row whose chosen equals its rejected states no preference: its prompt is generated on, its pair is left out
    of the implicit-reward accuracy and counted (`EvalData.identical_pairs`), by the plain path and the default one
    alike; the pairs after it keep their own rows (the default path continues each from its own prompt's states)."""
    settings = EvalSettings(str(folders["eval_identical"]), None, ["length:target_words=5"], max_new_tokens=6,
                            batch_size=3, max_length=64)
    similarity = HumanReplySimilarity(folders["scorer"])
    plain = Evaluator(settings, str(folders["reference"]), scorer=similarity, progress=False, plain=True)
    fast = Evaluator(settings, str(folders["reference"]), scorer=similarity, progress=False)
    for evaluator in (plain, fast):
        assert evaluator.data.identical_pairs == 1 and len(evaluator.prompts) == 7
        assert "1 more with chosen identical to rejected" in evaluator.data.describe()
    pairs = fast.held_out_pairs(fast.tokenizer)
    assert pairs.rows == [0, 1, 2, 4, 5, 6]
    expected = {"reference": plain.evaluate_reference(), "policy": plain.evaluate("policy", str(folders["policy"]))}
    got = {"reference": fast.evaluate_reference(), "policy": fast.evaluate("policy", str(folders["policy"]))}
    for name in expected:
        _close(got[name]["summary"], expected[name]["summary"])
        assert got[name]["replies"] == expected[name]["replies"]
    assert len(got["reference"]["pair_logps"]["chosen"]) == 6
    accuracy = got["policy"]["summary"]["implicit_accuracy"]
    assert accuracy is not None and round(accuracy * 6 * 2) == accuracy * 6 * 2  # a count of halves over 6 pairs
