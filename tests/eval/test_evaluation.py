"""`upo eval`: the metrics on fixed generations, the exact KL along a reply, and a whole evaluation with
tiny models (policy, reference and embedding model)."""

import json
import math

import pytest
import torch
from helpers import make_tiny_lm_dir, make_tiny_scorer_dir, write_chitchat_rows
from transformers import AutoModelForCausalLM, AutoTokenizer

from upo.eval.evaluate import EvalSettings, Evaluator, load_eval_rows
from upo.eval.generate import Decoding, generate
from upo.eval.metrics import (
    implicit_reward_accuracy,
    paired_intervals,
    score_objectives,
    summarize,
    win_indicators,
    win_rate,
)
from upo.eval.scorers.similarity import HumanReplySimilarity
from upo.eval.tables import side_by_side
from upo.rewards.standardization import fit_designer_standardization


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"reference": make_tiny_lm_dir(root / "reference", seed=0),
            "policy": make_tiny_lm_dir(root / "policy", seed=1), "scorer": make_tiny_scorer_dir(root / "scorer")}


def test_win_rate_counts_ties_and_identical_replies_as_half():
    assert win_rate([0.9, 0.1, 0.5, 0.7], [0.5, 0.2, 0.5, 0.1], ["a", "b", "c", "d"], ["x", "y", "z", "d"]) == \
        pytest.approx((1 + 0 + 0.5 + 0.5) / 4)


def test_no_score_on_either_side_is_a_tie_in_the_win_rate_and_its_interval():
    """A function scorer's None ("no opinion", scored NaN) on the model's side or the reference's counts one half, as
    a judge's tie does, never a loss (it was a loss). The win rate and the paired interval of its gap both average the
    same per-prompt wins."""
    nan = math.nan
    model, reference = [nan, 0.9, 0.1, None, 0.4], [0.5, nan, 0.2, nan, 0.3]
    assert win_indicators(model, reference) == [0.5, 0.5, 0.0, 0.5, 1.0]
    summary = summarize("m", ["a"] * 5, {}, [nan] * 5, model, reference, ["b"] * 5, [0.0] * 5, [1] * 5, None)
    assert summary["win_rate"] == 2.5 / 5
    # A scorer with no opinion on any of the model's replies: a model no better and no worse than the reference.
    silent = win_indicators([nan] * 4, [0.1, 0.2, 0.3, 0.4])
    assert silent == [0.5] * 4 and win_rate([nan] * 4, [0.1, 0.2, 0.3, 0.4]) == 0.5
    assert paired_intervals([0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0], 1.0, silent, [0.5] * 4) == {
        "gain_std_ci90": [0.0, 0.0], "win_rate_gap_ci90": [0.0, 0.0]}


def test_summary_of_fixed_generations():
    replies = ["one two three", "four five", ""]
    objectives = {"length": [0.5, 1.0, None]}
    summary = summarize("m", replies, objectives, designer=[1.0, -1.0, 0.5], preference=[0.8, 0.2, 0.5],
                        reference_preference=[0.5, 0.5, 0.5], reference_replies=["a", "b", "c"], kls=[0.0, 2.0, 4.0],
                        token_counts=[3, 2, 0], accuracy=0.75)
    assert summary["objective/length"] == pytest.approx(0.75)  # None does not count
    assert summary["designer_score"] == pytest.approx(0.5 / 3)
    mean = 1 / 6
    assert summary["designer_score_std"] == pytest.approx(math.sqrt(((1 - mean) ** 2 + (-1 - mean) ** 2
                                                                     + (0.5 - mean) ** 2) / 3))
    assert summary["preference_score"] == pytest.approx(0.5)
    assert summary["win_rate"] == pytest.approx(0.5)  # one win, one loss, one tie
    assert summary["kl"] == pytest.approx(2.0)
    assert summary["length_words"] == pytest.approx(5 / 3)
    table = side_by_side([summary, {**summary, "name": "n"}])
    assert "| length (mean) | 0.750 | 0.750 |" in table
    assert "| win rate vs reference (90% interval over prompts) | 50.0% | 50.0% |" in table


def test_designer_score_uses_training_statistics(tmp_path):
    train = write_chitchat_rows(tmp_path / "train.jsonl", 12)
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    scale = fit_designer_standardization(rows, ["length:target_words=4"], [2.0], standardize=True)
    from upo.rewards import Length

    f = Length(4)
    raw = f(None, [r["chosen"] for r in rows]) + f(None, [r["rejected"] for r in rows])
    mean = sum(raw) / len(raw)
    std = math.sqrt(sum((x - mean) ** 2 for x in raw) / len(raw))
    assert scale.mean[0] == pytest.approx(mean) and scale.std[0] == pytest.approx(std)
    assert scale.designer_score({"length": [raw[0], None]}) == pytest.approx([2.0 * (raw[0] - mean) / std, 0.0])
    # One degenerate reply cannot outweigh the others: each z is clipped at 3 std.
    assert scale.designer_score({"length": [mean - 100 * std, mean + 100 * std]}) == pytest.approx([-6.0, 6.0])
    # Training's r_aux is the same standardisation, unclipped, and undefined where no objective applies.
    r_aux = scale.reward(torch.tensor([[raw[0]], [mean + 100 * std], [math.nan]], dtype=torch.float64))
    assert r_aux[:2].tolist() == pytest.approx([2.0 * (raw[0] - mean) / std, 200.0]) and math.isnan(r_aux[2])
    prompts = [r["prompt"] for r in rows[:3]]
    scores = score_objectives(prompts, ["a b c d", "a", ""], ["length:target_words=4"], rows[:3])
    assert scores["length"] == pytest.approx([1.0, math.exp(-0.75), math.exp(-1.0)])


def _manual_kl(policy, reference, tokenizer, prompt, reply_ids):
    """KL summed over the reply, computed on one unpadded sequence: the definition, without batching tricks."""
    prompt_ids = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True,
                                               return_dict=True)["input_ids"]
    ids = torch.tensor([list(prompt_ids) + reply_ids])
    n = len(reply_ids)
    with torch.no_grad():
        p = policy(ids).logits[0, -n - 1 : -1].log_softmax(-1)
        q = reference(ids).logits[0, -n - 1 : -1].log_softmax(-1)
    return float((p.exp() * (p - q)).sum())


def test_kl_along_greedy_replies_matches_the_definition(folders):
    policy = AutoModelForCausalLM.from_pretrained(folders["policy"]).eval()
    reference = AutoModelForCausalLM.from_pretrained(folders["reference"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(folders["reference"])
    prompts = [[{"role": "user", "content": "hello there " * k}] for k in (1, 3, 5)]  # different lengths: padding
    out = generate(policy, tokenizer, prompts, Decoding(max_new_tokens=5), seed=0, batch_size=3, reference=reference,
                   progress=False)
    for prompt, [reply], [kl], [count] in zip(prompts, out.replies, out.kls, out.token_counts):
        # Greedy again, one prompt alone: the same tokens (batching does not change the reply).
        ids = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"]
        alone = policy.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False,
                                pad_token_id=0)[0, ids.shape[1]:].tolist()
        if 1 in alone:  # up to and including the end-of-turn token
            alone = alone[: alone.index(1) + 1]
        assert tokenizer.decode(alone, skip_special_tokens=True).strip() == reply
        assert count == len([t for t in alone if t != 1])
        assert kl == pytest.approx(_manual_kl(policy, reference, tokenizer, prompt, alone), rel=1e-4, abs=1e-5)
        assert kl > 0
    same = generate(reference, tokenizer, prompts, Decoding(max_new_tokens=5), seed=0, batch_size=3,
                    reference=reference, progress=False).kls
    assert [k for [k] in same] == pytest.approx([0.0, 0.0, 0.0], abs=1e-5)


def test_implicit_accuracy(folders, tmp_path):
    rows = [json.loads(line) for line in write_chitchat_rows(tmp_path / "e.jsonl", 6).read_text().splitlines()]
    reference = AutoModelForCausalLM.from_pretrained(folders["reference"]).eval()
    policy = AutoModelForCausalLM.from_pretrained(folders["policy"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(folders["reference"])
    assert implicit_reward_accuracy(reference, None, tokenizer, rows) == 0.5
    accuracy = implicit_reward_accuracy(policy, reference, tokenizer, rows)
    assert accuracy in {k / 6 for k in range(7)}
    # Swapping chosen and rejected mirrors the accuracy.
    swapped = [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in rows]
    assert implicit_reward_accuracy(policy, reference, tokenizer, swapped) == pytest.approx(1 - accuracy)


def test_evaluator_end_to_end(folders, tmp_path):
    train = write_chitchat_rows(tmp_path / "train.jsonl", 10, seed=1)
    evaluation = write_chitchat_rows(tmp_path / "eval.jsonl", 5, seed=2)
    settings = EvalSettings(str(evaluation), str(train), ["length:target_words=5"], max_new_tokens=4, batch_size=2)
    evaluator = Evaluator(settings, str(folders["reference"]), scorer=HumanReplySimilarity(folders["scorer"]),
                          progress=False)
    reference = evaluator.evaluate_reference()["summary"]
    assert reference["win_rate"] == 0.5 and reference["kl"] == 0.0 and reference["implicit_accuracy"] == 0.5
    policy = evaluator.evaluate("policy", str(folders["policy"]))
    summary = policy["summary"]
    assert summary["n_prompts"] == 5 and summary["kl"] > 0 and 0 <= summary["win_rate"] <= 1
    assert len(policy["replies"]) == 5
    humans = [r["human_reply"] for r in load_eval_rows(evaluation)]
    assert summary["preference_score"] == pytest.approx(
        sum(HumanReplySimilarity(folders["scorer"]).score(policy["replies"], humans)) / 5, abs=1e-6)
    per_prompt = evaluator.per_prompt({"reference": evaluator.evaluate_reference(), "policy": policy})
    assert set(per_prompt[0]) == {"prompt", "reference_answer", "reference", "policy"}
    assert set(per_prompt[0]["policy"]) == {"reply", "preference", "win", "designer", "kl", "objectives"}


def fake_run(folder, base, reward_funcs, stats=None):
    """A full fine-tune's run folder as `upo train` leaves it: weights, tokenizer and upo_config.json."""
    import shutil

    shutil.copytree(base, folder)
    config = {"model_name_or_path": str(base), "reward_funcs": reward_funcs, "loss_type": ["sigmoid"]}
    if stats:
        config["designer_reward_stats"] = stats
    (folder / "upo_config.json").write_text(json.dumps(config))
    return folder


def test_upo_eval_on_hh_pairs_with_a_reward_model(folders, tmp_path, capsys):
    """The command: HH-style pairs (implicit prompt), a tiny reward model as the user, the reference read from the run
    folder, the designer standardisation the run trained with."""
    from helpers import make_tiny_reward_model_dir, write_hh_rows

    from upo.cli import main
    from upo.eval.scorers.reward_model import RewardModelScorer

    stats = {"names": ["length"], "weights": [2.0], "mean": [0.5], "std": [0.25]}
    run = fake_run(tmp_path / "run", folders["policy"], ["length:target_words=3"], stats)
    hh = write_hh_rows(tmp_path / "hh.jsonl", 6)
    rm = make_tiny_reward_model_dir(tmp_path / "rm")
    out = tmp_path / "out"
    assert main(["eval", "--model", str(run), "--eval_data", str(hh), "--preference_scorer", f"reward_model:{rm}",
                 "--max_new_tokens", "4", "--batch_size", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"Reference: {folders['policy']}." in printed  # the run's base model, read from its folder
    report = json.loads((out / "eval.json").read_text())
    assert report["reference_model"] == str(folders["policy"])
    assert report["designer_scale_source"].startswith("the run's training statistics")
    assert report["designer_scale"]["weights"] == [2.0]
    assert report["preference_scorer"] == f"reward model {rm}"
    assert report["data"].startswith("6 evaluation prompts from") and "pairs, implicit prompt" in report["data"]
    assert report["data"].endswith("; 6 HH-style text prompts asked as chat messages (--prompt_format text keeps "
                                   "the text)")
    reference, model = report["summaries"]
    assert [reference["name"], model["name"]] == ["reference", "run"]
    # The tiny tokenizer has a chat template: HH prompts were asked as chat messages.
    first = report["per_prompt"][0]
    assert isinstance(first["prompt"], list) and first["prompt"][0]["role"] == "user"
    # The preference score is the reward model's mean on the model's own replies.
    scorer = RewardModelScorer(str(rm), batch_size=16)
    replies = [entry["run"]["reply"] for entry in report["per_prompt"]]
    scores = scorer.score_replies([e["prompt"] for e in report["per_prompt"]], replies, [{}] * 6)
    assert model["preference_score"] == pytest.approx(sum(scores) / 6, abs=1e-4)
    assert [e["run"]["preference"] for e in report["per_prompt"]] == pytest.approx(scores, abs=1e-4)
    # The run is its own base model here: the same replies, KL 0, every prompt a tie.
    assert model["kl"] == pytest.approx(0.0, abs=1e-5) and model["win_rate"] == 0.5
    assert model["implicit_accuracy"] == 0.5 and reference["implicit_accuracy"] == 0.5
    # Designer score: the stored statistics, weight 2, z clipped at 3.
    length = [e["run"]["objectives"]["length"] for e in report["per_prompt"]]
    expected = [2.0 * max(-3.0, min(3.0, (v - 0.5) / 0.25)) for v in length]
    assert [e["run"]["designer"] for e in report["per_prompt"]] == pytest.approx(expected, abs=1e-3)
    assert (out / "eval.md").read_text().count("| win rate vs reference (90% interval over prompts) |") == 1
    # Every gap to the reference with its 90% interval over the prompts: printed, in eval.json and in the page.
    assert model["win_rate_ci90"] == [0.5, 0.5] and model["designer_gain_ci90"] == [0.0, 0.0]
    assert "| win rate vs reference (90% interval over prompts) | 50.0% | 50.0% (50.0%..50.0%) |" in printed
    assert "| designer score minus the reference's (90% interval) | - | +0.000 (+0.000..+0.000) |" in printed
    page = (out / "eval.html").read_text()  # its structure: tests/eval/test_page.py
    assert page.count("<tr data-index=") == 6 and replies[0].replace("&", "&amp;").replace("<", "&lt;") in page
    assert "<td class=\"n\">50.0% (50.0%..50.0%)</td>" in page
    # Tables as tables, never Markdown; the run's paths relative to the page's folder, none absolute.
    assert "|---|" not in page and "| win rate" not in page
    assert str(tmp_path) not in page and "Reference: ../run" not in page and "Reference: ../" in page
    # The same replies in alpaca_eval's format, one file per model, and the command that compares them printed.
    outputs = json.loads((out / "alpaca_eval" / "run" / "model_outputs.json").read_text())
    assert [o["output"] for o in outputs] == replies and {o["generator"] for o in outputs} == {"run"}
    assert outputs[0]["instruction"] == first["prompt"][0]["content"].strip()  # one user message: its text
    assert f"alpaca_eval --model_outputs {out}/alpaca_eval/run/model_outputs.json --reference_outputs " \
           f"{out}/alpaca_eval/reference/model_outputs.json" in printed


def test_a_model_of_another_base_is_evaluated_against_the_reference_you_name(folders, tmp_path):
    """Any base model: the reference is named, KL and implicit accuracy need the same vocabulary (here they have it)."""
    from upo.cli import main

    evaluation = write_chitchat_rows(tmp_path / "eval.jsonl", 3, seed=2)
    out = tmp_path / "out"
    assert main(["eval", "--model", str(folders["policy"]), "--reference", str(folders["reference"]),
                 "--eval_data", str(evaluation), "--reward_funcs", "length:target_words=4",
                 "--preference_scorer", "function:helpers.words_in_reply", "--max_new_tokens", "3",
                 "--out", str(out)]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["designer_scale_source"] == "the evaluation pairs' chosen and rejected responses"
    model = report["summaries"][1]
    assert model["kl"] > 0 and 0 <= model["implicit_accuracy"] <= 1
    # A plain model folder records no base model: the reference must be named.
    assert main(["eval", "--model", str(folders["policy"]), "--eval_data", str(evaluation)]) == 1


def test_judge_through_the_evaluator(folders, tmp_path):
    import threading

    from test_scorers import Judge

    server = __import__("http.server").server.ThreadingHTTPServer(("127.0.0.1", 0), Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Judge.requests, Judge.answer, Judge.status = [], None, 200
    try:
        from upo.eval.scorers import build_preference_scorer
        from upo.eval.settings import ScorerArguments

        evaluation = write_chitchat_rows(tmp_path / "eval.jsonl", 4, seed=3)
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        judge = build_preference_scorer(ScorerArguments(f"judge:{url}", judge_model="m"))
        settings = EvalSettings(str(evaluation), None, [], max_new_tokens=4)
        evaluator = Evaluator(settings, str(folders["reference"]), scorer=judge, progress=False)
        assert evaluator.evaluate_reference()["summary"]["preference_score"] == 0.5
        policy = evaluator.evaluate("policy", str(folders["policy"]))
        differing = sum(a != b for a, b in zip(policy["replies"], evaluator.evaluate_reference()["replies"]))
        assert len(Judge.requests) == 2 * differing
        assert policy["summary"]["win_rate"] == policy["summary"]["preference_score"] == pytest.approx(
            sum(policy["wins"]) / 4)
        assert math.isnan(policy["summary"]["designer_score"])  # no designer objectives asked for
    finally:
        server.shutdown()
        server.server_close()


def test_paired_intervals_keep_each_prompts_two_values_together():
    import random

    from upo.eval.metrics import paired_interval, paired_intervals

    rng = random.Random(0)
    base = [rng.gauss(0, 3.0) for _ in range(200)]  # prompts differ a lot, the run is 0.1 better on each
    run = [b + 0.1 + rng.gauss(0, 0.05) for b in base]
    diffs = [r - b for r, b in zip(run, base)]
    mean = sum(diffs) / len(diffs)
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / len(diffs)) / math.sqrt(len(diffs))
    low, high = paired_interval(run, base)
    # Paired: the interval follows the differences' spread (about mean +- 1.645 se), far from 0; unpaired resampling
    # would see the prompts' spread of 3 and include 0.
    assert low > 0.09 and high < 0.11
    assert low == pytest.approx(mean - 1.645 * se, abs=0.003) and high == pytest.approx(mean + 1.645 * se, abs=0.003)
    assert paired_interval(run, base, scale=0.1) == pytest.approx([low / 0.1, high / 0.1], abs=0.02)
    assert paired_interval([1.0, 2.0, 3.0], [0.5, 1.5, 2.5]) == [0.5, 0.5]  # no spread: the interval is the point
    assert paired_interval([1.0], [0.0]) is None
    both = paired_intervals(run, base, 2.0, [1.0, 0.0] * 100, [0.5] * 200)
    assert set(both) == {"gain_std_ci90", "win_rate_gap_ci90"} and both["win_rate_gap_ci90"][0] < 0 < \
        both["win_rate_gap_ci90"][1]


def test_metrics_and_sample_replies_reach_tensorboard(tmp_path):
    """A real tracker that works offline: the event file is read back with TensorBoard's own reader."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from upo.eval.tracking import log_evaluation

    report = {"summaries": [{"name": "reference", "n_prompts": 2, "win_rate": 0.5, "kl": 0.0,
                             "implicit_accuracy": None},
                            {"name": "upo", "n_prompts": 2, "win_rate": 0.75, "kl": 1.25, "implicit_accuracy": 0.5}],
              "per_prompt": [{"prompt": [{"role": "user", "content": "hi"}], "reference_answer": "hello",
                              "reference": {"reply": "hey"}, "upo": {"reply": "hi | there"}},
                             {"prompt": "What is rain?", "reference": {"reply": "water"}, "upo": {"reply": "drops"}}]}
    assert log_evaluation(report, ["tensorboard"], "grid-upo", tmp_path) == ["tensorboard"]
    events = EventAccumulator(str(tmp_path / "grid-upo"), size_guidance={"tensors": 0, "scalars": 0}).Reload()
    scalars = {tag: events.Scalars(tag)[0].value for tag in events.Tags()["scalars"]}
    assert scalars == pytest.approx({"eval/reference/win_rate": 0.5, "eval/reference/kl": 0.0,
                                     "eval/upo/win_rate": 0.75, "eval/upo/kl": 1.25, "eval/upo/implicit_accuracy": 0.5})
    text = events.Tensors("eval/sample_replies/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| prompt | reference answer | reference | upo |" in text
    assert "| user: hi | hello | hey | hi \\| there |" in text
    assert log_evaluation(report, "none", None, tmp_path) == []
    with pytest.raises(Exception, match=r"report_to \['comet'\]"):
        log_evaluation(report, ["comet"], None, tmp_path)


def test_gaps_to_the_reference_have_paired_t_intervals_over_the_prompts():
    """By hand: wins 1, 1, 1, 0: mean 0.75, sd 0.5, se 0.25, t(3, 0.95) = 2.3534 -> 0.75 +- 0.5883, cut at 1.
    Designer gaps 1, 2, 3: mean 2, sd 1, se 0.5774, t(2, 0.95) = 2.9200 -> 2 +- 1.6859."""
    from upo.eval.metrics import gaps_to_reference

    gaps = gaps_to_reference([1.0, 1.0, 1.0, 0.0], [1.0, 2.0, 3.0, None], [0.0, 0.0, 0.0, 0.0],
                             [0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5])
    assert gaps["win_rate_ci90"] == pytest.approx([0.1617, 1.0], abs=1e-4)
    assert gaps["designer_gain"] == 2.0  # the prompt without a designer score left out
    assert gaps["designer_gain_ci90"] == pytest.approx([0.3141, 3.6859], abs=1e-4)
    assert gaps["preference_gain"] == 0.0 and gaps["preference_gain_ci90"] == [0.0, 0.0]
    assert gaps_to_reference([1.0], [1.0], [0.0]) == {}  # one prompt: no interval


def test_alpaca_eval_instructions_from_text_and_chat_prompts():
    from upo.eval.alpaca_eval import instruction, model_outputs

    assert instruction("  What is rain? ") == "What is rain?"
    assert instruction([{"role": "user", "content": "hi there"}]) == "hi there"
    assert instruction([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]) == \
        "system: be brief\nuser: hi"
    report = {"per_prompt": [{"prompt": "p", "m": {"reply": "r"}}]}
    assert model_outputs(report, "m") == [{"instruction": "p", "output": "r", "generator": "m"}]
