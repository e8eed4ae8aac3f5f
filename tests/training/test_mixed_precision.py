"""fp16 and bf16 against fp32, on CPU, through the mechanisms a GPU run uses.

bf16 autocast runs on CPU as it is (`use_cpu`). fp16 is what accelerate builds only on a GPU: autocast to fp16 around
the model's forward and a `torch.amp.GradScaler`, which `accelerator.backward` scales the loss with and
`AcceleratedOptimizer.step` steps and updates. `FP16Trainer` builds the same two on the CPU, where accelerate sets
them (`Accelerator.__init__`), so every other part is the real one: upo's unscale, check and clipping, the scaler's
skipped steps, the lowered scale.

Tolerance against fp32: one unit roundoff of the format, u = 2^-8 for bf16 (8 significant bits) and 2^-11 for fp16
(11), relative, on what one step computes before any update (the loss and its terms, the log-probs, the gradient's
norm). Each is a sum over many products rounded to that precision, so its relative error stays near u or below
(measured at step 1: grad_norm 6.3e-5 in bf16, 8.4e-6 in fp16; the loss 4.9e-6 and 3.1e-7). What must not move at
all does not: the implicit rewards at step 1, policy and reference being the same weights under the same precision.
"""


import pytest
import torch
from datasets import Dataset
from helpers import make_pairs, nan_gradient_in_first_layer, tiny_model
from transformers import TrainerCallback

from upo import UPOConfig, UPOTrainer
from upo.training.numerics import NonFiniteError

# The designer term named (the paper's, at 0.5): the overflow counts below are this term's gradients at these scales
FAST = dict(per_device_train_batch_size=4, learning_rate=1e-3, logging_steps=1, seed=0, report_to="none", use_cpu=True,
            max_length=64, disable_tqdm=True, save_strategy="no", aux_loss="awr", aw_temperature=0.5)
UNIT_ROUNDOFF = {"bf16": 2.0 ** -8, "fp16": 2.0 ** -11}


def length(prompts, completions, **kwargs):
    return [float(len(c)) for c in completions]


class FP16Trainer(UPOTrainer):
    """fp16 as accelerate sets it up on a GPU (`native_amp` and a GradScaler; on a CUDA device the scaler is
    `torch.amp.GradScaler("cuda")`), here on the CPU. Before the models and the optimizer are prepared."""

    init_scale = 2.0 ** 16  # torch's default

    def create_accelerator_and_postprocess(self):
        super().create_accelerator_and_postprocess()
        self.accelerator.native_amp = True
        self.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=self.init_scale)


class StepRecorder(TrainerCallback):
    """Every log, the weights after each optimizer step, and the value head's and the policy's gradient norms as the
    optimizer gets them (after clipping)."""

    def __init__(self):
        self.trainer = None
        self.logs, self.weights, self.head_norms, self.policy_norms = [], [], [], []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        head = list(self.trainer.value_head.parameters()) if self.trainer.value_head is not None else []
        ids = {id(p) for p in head}
        policy = [p for p in self.trainer.model.parameters() if id(p) not in ids and p.grad is not None]
        self.head_norms.append(norm(head))
        self.policy_norms.append(norm(policy))

    def on_step_end(self, args, state, control, **kwargs):
        self.weights.append(weights(self.trainer.model))


def norm(params) -> float:
    grads = [p.grad.float() for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item() if grads else 0.0


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def build(tmp_path, tokenizer, precision="fp32", init_scale=2.0 ** 16, model=None, designer=True, pairs=16, **options):
    """A trainer of the tiny model in `precision` ("fp32", "bf16", "fp16"), and its StepRecorder."""
    args = UPOConfig(output_dir=str(tmp_path / precision), **{**FAST, **options}, bf16=precision == "bf16",
                     fp16=precision == "fp16")
    cls = FP16Trainer if precision == "fp16" else UPOTrainer
    recorder = StepRecorder()
    trainer = type("Trainer", (cls,), {"init_scale": init_scale})(
        model or tiny_model(), args=args, train_dataset=Dataset.from_list(make_pairs(pairs)),
        processing_class=tokenizer, reward_funcs=[length] if designer else None, callbacks=[recorder])
    recorder.trainer = trainer
    recorder.initial = weights(trainer.model)
    return trainer, recorder


def train(tmp_path, tokenizer, precision="fp32", **options):
    trainer, recorder = build(tmp_path, tokenizer, precision, **options)
    trainer.train()
    return trainer, recorder


def steps(recorder):
    return [log for log in recorder.logs if "loss" in log]


def unchanged(before, after):
    return all(torch.equal(before[k], v) for k, v in after.items())


# --- fp16: the loss scaler's overflows are its skipped steps ------------------------------------------------


@pytest.mark.parametrize("skip", [False, True])
def test_fp16_loss_scale_overflows_are_skipped_steps_and_training_goes_on(tmp_path, tokenizer, skip):
    """At torch's default scale (2^16) the designer term's gradient overflows fp16 at steps 1 and 2 of this run: the
    scaler skips both and halves its scale twice, then trains. Neither an error nor a skipped batch of the guard
    (which, reading the gradients scaled, used to stop at step 1, or clear them so that the scaler asserted)."""
    trainer, recorder = train(tmp_path, tokenizer, "fp16", max_steps=4, skip_nonfinite_batches=skip)
    last = steps(recorder)[-1]
    assert last["amp/skipped_steps"] == 2 and last["amp/loss_scale"] == 2.0 ** 14
    assert "nonfinite/skipped_batches" not in last
    assert unchanged(recorder.initial, recorder.weights[0]) and unchanged(recorder.initial, recorder.weights[1])
    assert not torch.equal(recorder.weights[1]["model.embed_tokens.weight"],
                           recorder.weights[3]["model.embed_tokens.weight"])
    assert not torch.equal(recorder.weights[1]["upo_value_head.linear.weight"],
                           recorder.weights[3]["upo_value_head.linear.weight"])
    assert all(torch.isfinite(v).all() for v in recorder.weights[3].values())


def test_fp16_clips_the_value_head_and_the_policy_after_unscaling(tmp_path, tokenizer):
    """Both clipped to max_grad_norm by their own unscaled norm. Clipped before unscaling, the value head's norm ended
    at max_grad_norm / scale (here 0.01 / 256). The logged grad_norm is the policy's, as in fp32 within u."""
    _, fp16 = train(tmp_path, tokenizer, "fp16", init_scale=2.0 ** 8, max_steps=2, max_grad_norm=0.01)
    _, fp32 = train(tmp_path, tokenizer, "fp32", max_steps=1, max_grad_norm=0.01)
    assert "amp/skipped_steps" in steps(fp16)[-1] and steps(fp16)[-1]["amp/skipped_steps"] == 0
    assert fp16.head_norms == pytest.approx([0.01, 0.01], rel=1e-4)
    assert fp16.policy_norms == pytest.approx([0.01, 0.01], rel=1e-4)
    assert steps(fp16)[0]["grad_norm"] == pytest.approx(steps(fp32)[0]["grad_norm"], rel=UNIT_ROUNDOFF["fp16"])



def nan_gradient_model():
    return nan_gradient_in_first_layer(tiny_model())


def test_fp16_non_finite_gradient_at_the_minimum_loss_scale_is_a_fault(tmp_path, tokenizer):
    """The scaler skips it while it can lower its scale (4, then 2); at 1 the gradient overflows unscaled, and the
    guard stops the run as in fp32, saying why it is no loss-scale overflow. The weights never moved."""
    trainer, recorder = build(tmp_path, tokenizer, "fp16", init_scale=4.0, model=nan_gradient_model(), designer=False,
                              max_steps=4)
    with pytest.raises(NonFiniteError, match=r"^Non-finite gradient at step 3: first in parameter "
                       r"'model.embed_tokens.weight'.* It is no fp16 loss-scale overflow: the scale is down to 1 "
                       r"\(the scaler skipped 2 steps so far\)"):
        trainer.train()
    assert len(recorder.weights) == 2 and all(unchanged(recorder.initial, after) for after in recorder.weights)
    assert unchanged(recorder.initial, weights(trainer.model))


def test_fp16_non_finite_gradient_at_the_minimum_loss_scale_is_skipped_when_asked(tmp_path, tokenizer):
    trainer, recorder = train(tmp_path, tokenizer, "fp16", init_scale=4.0, model=nan_gradient_model(), designer=False,
                              max_steps=4, skip_nonfinite_batches=True)
    last = steps(recorder)[-1]
    assert last["amp/skipped_steps"] == 2 and last["nonfinite/skipped_batches"] == 2  # steps 1-2, then 3-4
    assert all(unchanged(recorder.initial, after) for after in recorder.weights)


# --- bf16 and fp16 against fp32 ------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("precompute", [False, True])
def test_implicit_rewards_are_exactly_zero_at_learning_rate_zero(tmp_path, tokenizer, precision, precompute):
    """At learning rate 0 the policy stays the reference, so every implicit reward is 0, with the reference computed
    during training or before it (TRL's GPU recipe: bf16 with precompute_ref_log_probs). The precomputed reference's
    LM head used to run under autocast, the policy's outside it: off by 1e-4 here, by 0.029 (beta 0.1) on a 200-token
    text with SmolLM2-135M."""
    _, recorder = train(tmp_path, tokenizer, precision, init_scale=2.0 ** 8, designer=False, pairs=8, max_steps=2,
                        learning_rate=0.0, precompute_ref_log_probs=precompute)
    for log in steps(recorder):
        assert (log["rewards/chosen"], log["rewards/rejected"], log["rewards/margins"]) == (0.0, 0.0, 0.0), log


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_one_step_equals_fp32_within_one_unit_roundoff(tmp_path, tokenizer, precision):
    """UPO with the designer term and the value head: step 1's loss, each of its terms, the log-probs and the
    gradient's norm within u of fp32 (module docstring); its implicit rewards exactly fp32's (0)."""
    _, mixed = train(tmp_path, tokenizer, precision, init_scale=2.0 ** 8, max_steps=1)
    _, full = train(tmp_path, tokenizer, "fp32", max_steps=1)
    first, reference = steps(mixed)[0], steps(full)[0]
    for key in ("loss", "loss/pref", "loss/aux", "loss/value", "logps/chosen", "logps/rejected", "grad_norm"):
        assert first[key] == pytest.approx(reference[key], rel=UNIT_ROUNDOFF[precision]), key
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
        assert first[key] == reference[key] == 0.0
