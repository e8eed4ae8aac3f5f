"""The paper's other methods: KTO on unpaired rows (with and without UPO's designer term), aoPPO, DRO-V, A-LOL and CSFT.

Each loss against values computed by hand, the unpaired data path, and a short learning test per method.
"""

import json
import math

import pytest
import torch
from datasets import Dataset
from helpers import make_pairs, tiny_model
from test_trainer import train

from upo import UPOConfig
from upo.data.collator import PreferenceCollator
from upo.data.control_tags import add_control_tags
from upo.data.loading import load_unpaired
from upo.data.tokenization import tokenize_pair
from upo.data.unpaired import unpair_preference_dataset, with_mismatched_completions
from upo.errors import ConfigError, DataError
from upo.eval.evaluate import conditioning_prefix
from upo.eval.generate import render_prompts
from upo.logps import forward_logps
from upo.losses import alol_loss, aoppo_loss, drov_loss, kto_loss, label_rewards
from upo.objective import compute_objective

NAN = float("nan")


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


# --- Losses against hand-computed values ---------------------------------------------------------------


def test_kto_loss_by_hand():
    loss, z = kto_loss(t(1.0, -2.0), t(0.5, 1.5), t(1, 0), beta=0.5, desirable_weight=1.0, undesirable_weight=2.0)
    assert z.item() == pytest.approx(1.0)  # mean of the mismatched log-ratios
    assert loss[0].item() == pytest.approx(1 - sigmoid(0.5 * (1.0 - 1.0)), abs=1e-12)  # 0.5
    assert loss[1].item() == pytest.approx(2 * (1 - sigmoid(0.5 * (1.0 + 2.0))), abs=1e-12)  # 0.364851...


def test_kto_reference_point_is_clamped_at_zero_and_detached():
    logratios = t(0.3, 0.3).requires_grad_()
    kl = t(-1.0, -3.0).requires_grad_()
    loss, z = kto_loss(logratios, kl, t(1, 1), beta=1.0)
    assert z.item() == 0.0
    loss.sum().backward()
    assert kl.grad is None or torch.all(kl.grad == 0)
    assert logratios.grad[0].item() == pytest.approx(-sigmoid(0.3) * (1 - sigmoid(0.3)), abs=1e-12)


def test_kto_reference_point_from_every_process_replaces_this_batchs():
    # Two processes: this one's mismatched log-ratios average 1.0, the other's 3.0; the reference point is 2.0.
    loss, z = kto_loss(t(1.0, -2.0), t(0.5, 1.5), t(1, 0), beta=0.5, kl_mean=torch.tensor(2.0, dtype=torch.float64))
    assert z.item() == 2.0
    assert loss[0].item() == pytest.approx(1 - sigmoid(0.5 * (1.0 - 2.0)), abs=1e-12)
    assert loss[1].item() == pytest.approx(1 - sigmoid(0.5 * (2.0 + 2.0)), abs=1e-12)
    seen = []
    config = args(loss_type=["kto"], alpha=0.0, beta=0.5)
    out = compute_objective(config, t(0.0, -2.0, 0.5, 1.5), t(1.0, 1.0, 1.0, 1.0), t(-1.0, 0.0, 0.0, 0.0),
                            labels=t(1, 0), mean_over_processes=lambda x: seen.append(x.item()) or x + 1.0)
    assert seen == [1.0] and out.metrics["kl"].item() == 2.0


def test_aoppo_loss_by_hand():
    logratios, lengths = t(0.4, -0.1), t(2.0, 1.0)
    rewards, values = t(1.0, -1.0), t(0.0, 0.0)
    policy, value, advantages = aoppo_loss(logratios, lengths, rewards, values, cliprange=0.2)
    a = 1 / (math.sqrt(2) + 1e-8)  # (r - V) = (1, -1): mean 0, unbiased std sqrt(2) (+ the 1e-8 guard)
    assert advantages.tolist() == pytest.approx([a, -a], abs=1e-12)
    r0, r1 = math.exp(0.4 / 2), math.exp(-0.1)  # per-token ratios 1.2214 (clipped to 1.2) and 0.9048
    expected = -(min(r0 * a, 1.2 * a) + min(r1 * -a, r1 * -a)) / 2
    assert policy.item() == pytest.approx(expected, abs=1e-12)
    assert value.item() == pytest.approx(1.0, abs=1e-12)


def test_aoppo_clipped_ratio_gets_no_gradient():
    logratios = t(0.4, -0.1).requires_grad_()
    policy, _, _ = aoppo_loss(logratios, t(2.0, 1.0), t(1.0, -1.0), t(0.0, 0.0), cliprange=0.2)
    policy.backward()
    assert logratios.grad[0].item() == 0.0  # ratio 1.22 > 1.2 with a positive advantage: clipped
    a = 1 / (math.sqrt(2) + 1e-8)
    assert logratios.grad[1].item() == pytest.approx(a * math.exp(-0.1) / 2, abs=1e-12)


def test_drov_loss_by_hand_and_its_gradients():
    logratios, values = t(2.0, -3.0).requires_grad_(), t(0.2, 0.2).requires_grad_()
    loss = drov_loss(logratios, t(1.0, -1.0), values, beta=0.1)
    residuals = (1 - 0.2 - 0.2, -1 - 0.2 + 0.3)  # r - V - beta * log-ratio: 0.6, -0.9
    assert loss.item() == pytest.approx(0.5 * (0.36 + 0.81) / 2, abs=1e-12)  # 0.2925
    loss.backward()
    assert values.grad.tolist() == pytest.approx([-r / 2 for r in residuals], abs=1e-12)
    assert logratios.grad.tolist() == pytest.approx([-0.1 * r / 2 for r in residuals], abs=1e-12)


def test_alol_loss_by_hand():
    logps, ref = t(-3.0, -5.0, -2.0), t(-3.5, -4.0, -2.0)  # log-ratios +0.5, -1.0, 0
    rewards, values = t(2.0, 1.5, -1.0), t(0.5, 0.5, 0.5)
    policy, value, advantages, ratio = alol_loss(logps, ref, rewards, values, clip=0.5)
    assert advantages.tolist() == pytest.approx([1.5, 1.0, 0.0])  # the negative advantage is dropped
    assert ratio.tolist() == pytest.approx([1.5, 0.5, 1.0])  # e^0.5 = 1.65 and e^-1 = 0.37 clipped to [0.5, 1.5]
    expected = -(1.5 * 1.5 * -3.0 + 1.0 * 0.5 * -5.0 + 0.0) / 3
    assert policy.item() == pytest.approx(expected, abs=1e-12)
    assert value.item() == pytest.approx((1.5**2 + 1.0**2 + 1.5**2) / 3, abs=1e-12)
    _, _, _, ratio = alol_loss(logps, ref, rewards, values)  # the authors' clip, 0.9: [0.1, 1.9]
    assert ratio.tolist() == pytest.approx([math.exp(0.5), math.exp(-1.0), 1.0])


def test_alol_gradient_is_advantage_times_clipped_weight():
    logps = t(-3.0, -5.0, -2.0).requires_grad_()
    values = t(0.5, 0.5, 0.5).requires_grad_()
    policy, value, _, _ = alol_loss(logps, t(-3.5, -4.0, -2.0), t(2.0, 1.5, -1.0), values, clip=0.5)
    (grad,) = torch.autograd.grad(policy, logps)
    assert grad.tolist() == pytest.approx([-1.5 * 1.5 / 3, -1.0 * 0.5 / 3, 0.0])  # no gradient through rho
    assert torch.autograd.grad(policy, values, allow_unused=True)[0] is None  # the advantage is detached
    (value_grad,) = torch.autograd.grad(value, values)
    assert value_grad.tolist() == pytest.approx([2 * -1.5 / 3, 2 * -1.0 / 3, 2 * 1.5 / 3])


def test_label_rewards():
    assert label_rewards(2, t(0.0)).tolist() == [1.0, 1.0, -1.0, -1.0]


def args(**kwargs):
    return UPOConfig(output_dir="unused", use_cpu=True, report_to="none", **kwargs)


def test_reward_methods_use_alpha_times_the_designer_reward():
    logps, ref, lengths = t(-1.0, -2.0, -3.0, -1.0), t(-1.5, -1.5, -2.0, -2.0), t(2.0, 3.0, 1.0, 2.0)
    rewards, values = t(0.5, NAN, -1.0, 2.0), t(0.1, -0.2)
    out = compute_objective(args(loss_type=["drov"], alpha=2.0, beta=0.1), logps, lengths, ref, rewards=rewards,
                            values=values)
    reward = t(1.0 + 1.0, 1.0, -1.0 - 2.0, -1.0 + 4.0)  # label + alpha * r_aux, NaN -> 0
    assert out.loss.item() == pytest.approx(drov_loss(logps - ref, reward, values.repeat(2), 0.1).item(), abs=1e-12)
    assert "loss/aux" not in out.metrics  # the designer reward is in the reward, not in a separate term


def test_kto_objective_with_the_designer_term():
    logps, ref, lengths = t(-1.0, -2.0, -3.0, -1.0), t(-1.5, -1.5, -2.0, -2.0), t(2.0, 3.0, 1.0, 2.0)
    rewards = t(1.0, -1.0, NAN, NAN)  # mismatched completions carry no designer reward
    config = args(loss_type=["kto"], alpha=0.5, value_baseline="batch_mean", beta=0.1,
                  aw_temperature=1.0, aux_loss="awr")
    out = compute_objective(config, logps, lengths, ref, rewards=rewards, labels=t(1, 0))
    kto, _ = kto_loss(t(0.5, -0.5), t(-1.0, 1.0), t(1, 0), 0.1)
    w = [math.exp(1.0), math.exp(-1.0)]  # advantages r - mean(r) = +1, -1 at temperature 1
    aux = -(w[0] * -1.0 + w[1] * -2.0) / 2  # per sequence (the default): over the two completions
    assert out.loss.item() == pytest.approx(kto.mean().item() + 0.5 * aux, abs=1e-12)


def test_csft_objective_is_nll_of_both_responses():
    logps, lengths = t(-1.0, -2.0, -3.0, -6.0), t(2.0, 3.0, 1.0, 2.0)
    out = compute_objective(args(loss_type=["csft"], alpha=0.0), logps, lengths, t(0, 0, 0, 0))
    assert out.loss.item() == pytest.approx(12.0 / 8.0, abs=1e-12)


def test_kto_with_a_pair_mean_baseline_is_refused():
    # The mismatched slot has no designer reward: the pair mean would be the completion's own reward, A = 0.
    with pytest.raises(ConfigError, match=r"value_baseline 'pair_mean' with loss_type \['kto'\].*every advantage is 0"):
        args(loss_type=["kto"], value_baseline="pair_mean")
    args(loss_type=["kto"], value_baseline="pair_mean", alpha=0.0)  # no designer term, nothing to refuse


@pytest.mark.parametrize("method", ["modpo", "csft"])
def test_the_designer_term_on_top_of_modpo_or_csft_is_refused(tokenizer, tmp_path, method):
    with pytest.raises(ConfigError, match=f"alpha=1.0 would add UPO's designer term to {method.upper()}.*set alpha: 0"):
        train(tokenizer, Dataset.from_list(make_pairs(8)), tmp_path, method, loss_type=[method],
              reward_funcs=["length"])
    train(tokenizer, Dataset.from_list(make_pairs(8)), tmp_path, method, loss_type=[method], alpha=0.0,
          reward_funcs=["length"], max_steps=1)


def test_expectile_tau_below_one_half_is_refused():
    with pytest.raises(ConfigError, match=r"expectile_tau must be a finite number in \[0.5, 1\) \(0.5 fits the mean"):
        args(expectile_tau=0.3)
    assert args(expectile_tau=0.5).expectile_tau == 0.5


def test_unknown_aux_normalization_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"Unknown aux_normalization 'per_word'; choose among \['per_token', "
                                          r"'per_sequence'\]"):
        args(aux_normalization="per_word")
    assert args().aux_normalization == "per_sequence"


def test_baselines_replace_the_preference_loss():
    with pytest.raises(ConfigError, match="use it alone"):
        args(loss_type=["kto", "sft"])
    with pytest.raises(ConfigError, match="cliprange"):
        args(loss_type=["aoppo"], cliprange=1.5)
    with pytest.raises(ConfigError, match="csft_tags"):
        args(loss_type=["csft"], csft_tags=["[good]", "[good]"])


# --- Unpaired data -------------------------------------------------------------------------------------


def test_pairs_are_unpaired_and_mismatched_with_another_prompt():
    rows = unpair_preference_dataset(Dataset.from_list(make_pairs(3)))
    assert rows["label"] == [True, False] * 3
    assert rows["completion"][:2] == [make_pairs(3)[0]["chosen"], make_pairs(3)[0]["rejected"]]
    laid_out = with_mismatched_completions(rows)
    assert laid_out.column_names == ["prompt", "chosen", "rejected", "label"]
    for i, row in enumerate(laid_out):
        source = [j for j in range(len(rows))
                  if rows["completion"][j] == row["rejected"] and rows["prompt"][j] != row["prompt"]]
        assert source, f"row {i}: the mismatched completion must come from another prompt"


def test_mismatched_completions_are_drawn_from_desirable_and_undesirable_alike():
    """KTO's reference point is the KL on mismatched pairs: drawn from chosen completions only, it is biased upwards
    (the rows alternate chosen, rejected, and taking the next row of another prompt always lands on a chosen one)."""
    pairs = [{"prompt": f"Q{i}?", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(32)]
    rows = unpair_preference_dataset(Dataset.from_list(pairs))
    laid_out = with_mismatched_completions(rows, seed=0)
    drawn_from_rejected = sum(r["rejected"].startswith("bad") for r in laid_out) / len(laid_out)
    assert 0.35 <= drawn_from_rejected <= 0.65, drawn_from_rejected
    assert all(r["rejected"].split()[1] != r["prompt"][1:-1] for r in laid_out)  # never the row's own prompt
    assert with_mismatched_completions(rows, seed=0)["rejected"] == laid_out["rejected"]  # seeded
    assert with_mismatched_completions(rows, seed=1)["rejected"] != laid_out["rejected"]


def test_unpaired_file_errors_name_file_line_and_fix(tmp_path):
    path = tmp_path / "feedback.jsonl"
    lines = [{"prompt": "Hi?", "completion": "Hello!", "label": "good"},
             {"prompt": "Bye?", "completion": "Go away.", "label": "bad"}]
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    with pytest.raises(DataError,
                       match=r"feedback.jsonl, row 0 \(line 1\), column 'label': 'good' is not true or false"):
        load_unpaired(str(path))
    lines[1]["completion"] = ""
    lines[0]["label"] = lines[1]["label"] = True
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    with pytest.raises(DataError, match=r"row 1 \(line 2\), column 'completion': empty"):
        load_unpaired(str(path))
    path.write_text(json.dumps({"prompt": "Hi?", "completion": "Hello!"}) + "\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['label'\]"):
        load_unpaired(str(path))
    path.write_text("\n".join(json.dumps({"prompt": "Hi?", "completion": c, "label": True}) for c in "ab") + "\n")
    with pytest.raises(DataError, match="at least two different prompts"):
        load_unpaired(str(path))


def test_control_tags_open_responses():
    pairs = Dataset.from_list([{"prompt": "Q?", "chosen": "Yes.", "rejected": "No."}])
    text = add_control_tags(pairs, ["[good]", "[bad]"])
    assert text[0]["chosen"] == "[good] Yes." and text[0]["rejected"] == "[bad] No."
    messages = add_control_tags(Dataset.from_list([{
        "prompt": [{"role": "user", "content": "Q?"}],
        "chosen": [{"role": "assistant", "content": "Yes."}],
        "rejected": [{"role": "assistant", "content": "No."}]}]), ["[good]", "[bad]"])
    assert messages[0]["chosen"] == [{"role": "assistant", "content": "[good] Yes."}]
    assert messages[0]["rejected"] == [{"role": "assistant", "content": "[bad] No."}]


def test_generation_starts_with_the_good_tag_for_a_csft_model(tokenizer, tmp_path):
    (tmp_path / "upo_config.json").write_text(json.dumps({"loss_type": ["csft"], "csft_tags": ["[good]", "[bad]"]}))
    assert conditioning_prefix(tmp_path) == "[good]"
    ids = render_prompts(tokenizer, ["Q?"], "[good]")[0]
    assert tokenizer.decode(ids) == "Q?[good]"
    trained = tokenize_pair(tokenizer, "Q?", "[good] Yes.", "[bad] No.")
    tag = tokenizer("[good]", add_special_tokens=False)["input_ids"]
    assert trained["chosen_ids"][: len(tag)] == tag  # what generation is conditioned on is what training saw
    (tmp_path / "upo_config.json").write_text(json.dumps({"loss_type": ["sigmoid"], "csft_tags": ["[good]", "[bad]"]}))
    assert conditioning_prefix(tmp_path) is None


# --- Learning tests: each method moves the held-out preference the right way ----------------------------


def margin(model, tokenizer, rows, tag=None) -> float:
    """Mean per-token log-prob of chosen minus rejected (with `tag`, both responses opened by it)."""
    collator = PreferenceCollator(tokenizer.pad_token_id)
    opened = (lambda text: f"{tag} {text}") if tag else (lambda text: text)
    batch = [tokenize_pair(tokenizer, r["prompt"], opened(r["chosen"]), opened(r["rejected"])) for r in rows]
    with torch.no_grad():
        out = forward_logps(model.eval(), collator(batch))
    chosen, rejected = (out.logps / out.lengths).chunk(2)
    return (chosen - rejected).mean().item()


LEARN = dict(max_steps=12, learning_rate=1e-3, per_device_train_batch_size=4)


@pytest.mark.parametrize("method,options", [
    ("kto", {}),
    ("kto", {"reward_funcs": ["length:target_words=3"], "alpha": 0.5, "aux_normalization": "per_token"}),
    ("aoppo", {}),
    ("drov", {"reward_funcs": ["length:target_words=3"], "alpha": 0.5}),
    ("alol", {"reward_funcs": ["length:target_words=3"], "alpha": 0.5}),
])
def test_baseline_learns_the_preference(tokenizer, tmp_path, method, options):
    data = Dataset.from_list(make_pairs(16))
    before = margin(tiny_model(), tokenizer, make_pairs(16))
    trainer, logs = train(tokenizer, data, tmp_path, method, loss_type=[method], **{"alpha": 0.0, **LEARN, **options})
    after = margin(trainer.model, tokenizer, make_pairs(16))
    print(f"{method} {options}: chosen - rejected per-token log-prob {before:+.3f} -> {after:+.3f}")
    assert after > before + 0.3
    assert all(math.isfinite(log["loss"]) for log in logs)
    if method == "kto":
        # TRL's KTOTrainer's names: rewards/chosen for the desirable completions, rewards/rejected for the others
        kto_keys = ("rewards/chosen", "rewards/rejected", "logps/chosen", "kl", "entropy", "logits/chosen")
        assert all(key in logs[-1] for key in kto_keys), sorted(logs[-1])
        assert not {"rewards/desirable", "rewards/accuracies", "mean_token_accuracy"} & set(logs[-1])
        assert ("loss/aux" in logs[-1]) == bool(options)
    else:  # a value head; the designer reward is inside the reward, not a separate term
        assert "value_mean" in logs[-1] and "loss/aux" not in logs[-1]
        assert ("loss/value" in logs[-1]) == (method != "drov")  # DRO-V's one squared loss trains both
        assert math.isfinite(logs[-1]["value/explained_variance"])


def test_csft_learns_to_follow_the_good_tag(tokenizer, tmp_path):
    data = Dataset.from_list(make_pairs(16))
    # The tiny tokenizer spells the tags letter by letter: tying them to the responses takes more steps.
    trainer, logs = train(tokenizer, data, tmp_path, "csft", loss_type=["csft"], alpha=0.0,
                          **{**LEARN, "max_steps": 80, "learning_rate": 3e-3})
    good = margin(trainer.model, tokenizer, make_pairs(16), "[good]")
    bad = margin(trainer.model, tokenizer, make_pairs(16), "[bad]")
    print(f"csft: chosen - rejected after [good] {good:+.3f}, after [bad] {bad:+.3f}")
    assert good > 0.1 and bad < -0.1 and good > bad + 0.3
    trainer.save_model()
    assert conditioning_prefix(tmp_path / "csft") == "[good]"


@pytest.mark.parametrize("method", ["csft", "aoppo", "drov", "alol"])
def test_a_weight_column_is_refused_where_the_method_has_no_pair_weights(tokenizer, tmp_path, method):
    rows = [{**row, "weight": 2.0} for row in make_pairs(8)]
    with pytest.raises(ConfigError, match=f"'weight' column, but loss_type \\['{method}'\\] has no per-pair weights"):
        train(tokenizer, Dataset.from_list(rows), tmp_path, method, loss_type=[method], alpha=0.0)


def test_kto_standardises_designer_rewards_over_the_completions_once(tokenizer):
    """The mismatched slot repeats other rows' completions: it must not weigh in the statistics."""
    import statistics

    from upo.data.pipeline import prepare_preference_data

    pairs = make_pairs(8)
    prepared = prepare_preference_data(Dataset.from_list(pairs), tokenizer, args(loss_type=["kto"], max_length=64),
                                       ["length:target_words=3"])
    completions = [r[side] for r in pairs for side in ("chosen", "rejected")]
    words = [len(c.split()) for c in completions]
    scores = [math.exp(-abs(w - 3) / 3) for w in words]  # the built-in length reward, written out
    assert prepared.stats.mean[0] == pytest.approx(statistics.fmean(scores), abs=1e-9)
    assert prepared.stats.std[0] == pytest.approx(statistics.pstdev(scores), abs=1e-9)



# --- Documented choices: what the designer term sees --------------------------------------------------------


def test_the_weight_column_weighs_the_preference_loss_only():
    logps, ref, lengths = t(-1.0, -2.0, -3.0, -1.0), t(-1.5, -1.5, -2.0, -2.0), t(2.0, 3.0, 1.0, 2.0)
    rewards, weights = t(0.5, -0.5, -1.0, 1.0), t(2.0, 0.0)
    config = args(alpha=1.0, value_baseline="pair_mean")
    plain = compute_objective(config, logps, lengths, ref, rewards=rewards)
    weighted = compute_objective(config, logps, lengths, ref, rewards=rewards, pair_weights=weights)
    assert weighted.metrics["loss/aux"].item() == pytest.approx(plain.metrics["loss/aux"].item(), abs=1e-12)
    logits = (logps[:2] - ref[:2]) - (logps[2:] - ref[2:])  # 0.5 - (-1.0) = 1.5 and -0.5 - 1.0 = -1.5
    expected = (2.0 * -math.log(sigmoid(0.1 * logits[0].item())) + 0.0) / 2
    assert weighted.metrics["loss/pref"].item() == pytest.approx(expected, abs=1e-12)


def test_designer_scores_are_of_the_whole_response_when_training_sees_it_truncated(tokenizer):
    from upo.data.pipeline import prepare_preference_data

    long = " one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"
    pairs = [{"prompt": f"Human: Q{i}? Assistant:", "chosen": long, "rejected": " No."} for i in range(2)]
    prepared = prepare_preference_data(Dataset.from_list(pairs), tokenizer, args(max_length=24),
                                       ["length:target_words=3"])
    assert prepared.report.truncated == 2
    assert prepared.dataset[0]["designer_scores_chosen"] == [pytest.approx(math.exp(-abs(15 - 3) / 3))]  # 15 words
