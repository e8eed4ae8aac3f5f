"""`UPOTrainer`: wires the model forward, the losses of `upo.losses` and the metrics into `transformers.Trainer`."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import shutil
import time

import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file
from transformers import Trainer
from transformers.trainer_utils import rotate_checkpoints

from upo import methods
from upo.config import UPOConfig
from upo.data.collator import CheckedCollator, PreferenceCollator
from upo.data.pipeline import designer_rewards, prepare_preference_data
from upo.errors import ConfigError
from upo.files import atomic_write_json
from upo.legacy_options import LEGACY_TRAINER_ARGUMENTS, refuse_legacy_options
from upo.library_errors import REFUSALS, refused_by_library
from upo.logps import forward_logps
from upo.logs import get_logger, set_process_log_level, shows_progress
from upo.losses import step_token_counts
from upo.objective import (
    apply_designer_target,
    check_designer_term,
    compute_objective,
    needs_value_head,
    uses_designer_term,
)
from upo.preflight import check_training
from upo.run_folder import TRAINED_MODEL_FILES, UPO_CONFIG, VALUE_HEAD
from upo.training.checkpointing import (
    CHECKPOINT_PATTERN,
    explaining_save_failures,
    noting_interruption,
    refusing_unsafe_pickles,
    remove_if_incomplete,
    remove_written_since,
    resolve_resume_checkpoint,
    write_completion_marker,
)
from upo.training.compatibility import check_data_fits_model, check_resume_fits
from upo.training.distributed import check_launch, enable_sharding_on_cpu, prepare_reference_model
from upo.training.fsdp import without_tied_copies
from upo.training.gradients import EngineHeadGradient, clip_gradients, unscale_once
from upo.training.metrics import TrainingMetrics, implicit_rewards
from upo.training.model_card import write_model_card
from upo.training.model_setup import freeze_reference, prepare_models
from upo.training.numerics import NonFiniteGuard, check_numeric_columns
from upo.training.reference import add_reference_logps
from upo.training.run_lock import hold_output_dir
from upo.training.tensorboard import keep_one_event_file
from upo.training.trainer_state import TrainerStateWriter
from upo.trl_config import as_upo_config
from upo.value_head import ValueHead

logger = get_logger(__name__)

VALUE_HEAD_PREFIX = "upo_value_head."
MODEL_COLUMNS = [
    "length", "prompt_ids", "chosen_ids", "rejected_ids", "ref_chosen_logps", "ref_rejected_logps", "weight", "label",
    "designer_reward_chosen", "designer_reward_rejected", "designer_scores_chosen", "designer_scores_rejected",
]


class UPOTrainer(Trainer):
    """DPO-family preference optimisation plus UPO's advantage-weighted designer term.

    Where TRL's `DPOTrainer` stands: the same arguments in the same order (TRL 1.16's, `peft_config` last), then
    upo's `reward_funcs` by keyword.

    Args:
        model: a `PreTrainedModel`, or a name: a local folder, a Hugging Face Hub ID or a known name, loaded with
            `upo.models.load_causal_lm` and `args.model_init_kwargs`.
        ref_model: a frozen reference (a model or a name, as `model`). Default: a frozen copy of `model`; with
            `peft_config`, the base model with the adapter disabled; with `precompute_ref_log_probs`, none is kept;
            for a reference-free `loss_type` (SimPO, CPO, ORPO, SFT), none at all.
        args: `UPOConfig`; TRL's `DPOConfig` or transformers' `TrainingArguments` is converted (`upo.trl_config`).
        data_collator: builds a batch from tokenised rows (`prompt_ids`, `chosen_ids`, `rejected_ids`, ...); it must
            return `upo.data.collator.PreferenceCollator`'s layout. Default: `PreferenceCollator`.
        train_dataset, eval_dataset: a `datasets.Dataset`, a local file or a saved-dataset folder; `eval_dataset` may
            be a dict of them (a `DatasetDict` too), each evaluated with its metrics prefixed `eval_{name}_`.
        processing_class: the tokenizer (loaded with `model` when it is a name).
        compute_metrics: called after each evaluation with a `transformers.EvalPrediction` whose `predictions` are
            each eval pair's implicit rewards `beta * log(pi / pi_ref)`, shape (N, 2), chosen then rejected, and whose
            `label_ids` are 0 (the chosen column); for unpaired rows (KTO), each completion's reward, shape (N,), and
            its label. TRL 1.16's DPOTrainer passes the logits of a second forward instead (deprecated in TRL); here
            none runs.
        callbacks, optimizers: as `transformers.Trainer`.
        quantization_config: a `transformers.BitsAndBytesConfig` (QLoRA, with `peft_config`) for a model given by name.
        peft_config: a `peft.LoraConfig` (or any PEFT config) to train an adapter.
        reward_funcs: designer reward functions (callables or names); default `args.reward_funcs`.

    The logged `loss` is the whole objective, `L_pref + alpha * L_aux + L_value`; `loss/pref` is the preference term
    alone (what TRL's DPOTrainer logs as `loss`), `loss/aux` and `loss/value` the designer term's parts.
    """

    _tag_names = ["upo"]

    def __init__(self, model, ref_model=None, args: UPOConfig | None = None, data_collator=None, train_dataset=None,
                 eval_dataset=None, processing_class=None, compute_metrics=None, callbacks=None,
                 optimizers=(None, None), quantization_config=None, peft_config=None, *, reward_funcs=None,
                 **removed):
        refuse_legacy_options(removed, "UPOTrainer", LEGACY_TRAINER_ARGUMENTS)
        if removed:
            raise TypeError(f"UPOTrainer got an unexpected keyword argument {next(iter(removed))!r}")
        args = as_upo_config(args) or UPOConfig(output_dir="upo-output")
        check_launch(args)  # several processes that would not train together, or an engine that is not there
        set_process_log_level(args)  # upo's log: log_level on the main process, log_level_replica on the others
        # Every optional package the run needs (trackers, kernels, optimizers, bitsandbytes) and the Hub when it
        # pushes: all missing ones at once, before any model or data loads.
        check_training(args, quantization_config)
        # One run at a time in output_dir, for as long as this trainer lives; refused before anything is loaded.
        self._run_lock = hold_output_dir(self, args)
        if args.eval_strategy != "no" and eval_dataset is None:
            raise ConfigError(f"eval_strategy={args.eval_strategy.value!r} needs an eval_dataset: pass one "
                              "(--eval_dataset PATH), or set eval_strategy='no'.")
        self.model_name_or_path = model if isinstance(model, str) else getattr(model, "name_or_path", None)
        self.data_sources = (train_dataset, eval_dataset)  # the model card names the Hub datasets among them

        self.reward_funcs = list(reward_funcs if reward_funcs is not None else args.reward_funcs or [])
        if args.reward_weights is not None and len(args.reward_weights) != len(self.reward_funcs):
            raise ConfigError(
                f"reward_weights has {len(args.reward_weights)} values for {len(self.reward_funcs)} reward "
                "functions: give one weight per reward function."
            )
        method = methods.lead_method(args.loss_type)
        if method.needs_rewards and not self.reward_funcs:
            raise ConfigError(f"loss_type {method.loss_type!r} needs designer rewards: set reward_funcs.")
        check_designer_term(args, bool(self.reward_funcs))
        self.use_designer_term = uses_designer_term(args, bool(self.reward_funcs))
        self.uses_reference = methods.uses_reference(args.loss_type, self.use_designer_term, args.aux_loss)
        if ref_model is not None and not self.uses_reference:
            raise ConfigError(f"loss_type {args.loss_type} reads no reference model: drop ref_model.")
        model, ref_model, tokenizer = prepare_models(model, ref_model, args, processing_class, peft_config,
                                                     quantization_config)

        # Under several processes the main process scores and writes the cache first; the others then read it
        # (upo.rewards.cache), so nothing is scored twice.
        with args.main_process_first(desc="scoring designer rewards"):
            train = prepare_preference_data(train_dataset, tokenizer, args, self.reward_funcs)
            logger.info(train.report.summary())
            check_numeric_columns(train.dataset, train.report.source)
            if "weight" in train.dataset.column_names and not methods.honours_weights(args.loss_type):
                weighted = ", ".join(m.loss_type for m in methods.METHODS.values() if m.weighted)
                raise ConfigError(f"{train.report.source}: a 'weight' column, but loss_type {args.loss_type} has no "
                                  f"per-pair weights (only {weighted} do). Remove the column, or choose one of those "
                                  "loss types.")
            self.designer_stats = train.stats
            self.designer_temperature = apply_designer_target(
                args, designer_rewards(train.dataset) if self.use_designer_term else None, self.use_designer_term)
            named_evals = eval_dataset if isinstance(eval_dataset, dict) else {None: eval_dataset}  # DatasetDict too
            evals = {name: self._prepare_eval_data(data, tokenizer, args) for name, data in named_evals.items()
                     if data is not None}
            if isinstance(eval_dataset, dict):
                eval_data = {name: prepared.dataset for name, prepared in evals.items()}
            else:
                eval_data = evals[None].dataset if evals else None

        # Token ids and lengths the model (and a reference of its own) can take, before any forward pass.
        fitted = {train.report.source: train.dataset, **{p.report.source: p.dataset for p in evals.values()}}
        named = f" {self.model_name_or_path}" if self.model_name_or_path else ""
        for which, checked in ((f"the model{named} (model_name_or_path)", model), ("the reference model (ref_model)",
                                                                                   ref_model)):
            if isinstance(checked, torch.nn.Module):
                check_data_fits_model(checked, which, fitted, tokenizer.pad_token_id, args.max_length,
                                      args.pad_to_multiple_of, not (args.shared_prompt or args.padding_free))
        self.is_peft = peft_config is not None or hasattr(model, "peft_config")
        self.precomputed_ref = self.uses_reference and bool(
            args.precompute_ref_log_probs or "ref_chosen_logps" in train.dataset.column_names)
        if ref_model is None and self.uses_reference and not self.is_peft and not self.precomputed_ref:
            ref_model = copy.deepcopy(model)
        if ref_model is not None:
            freeze_reference(ref_model, args)

        if needs_value_head(args, bool(self.reward_funcs)):
            model.add_module(VALUE_HEAD_PREFIX[:-1], ValueHead(model.config.get_text_config().hidden_size))

        super().__init__(
            model=model, args=args,
            data_collator=CheckedCollator(data_collator) if data_collator else self._make_collator(tokenizer, args),
            train_dataset=train.dataset, eval_dataset=eval_data, processing_class=tokenizer,
            compute_metrics=compute_metrics, callbacks=[TrainerStateWriter(), *(callbacks or [])],
            optimizers=optimizers,
        )
        keep_one_event_file(self)  # an evaluate() after train() writes into the run's TensorBoard event file
        self.ref_model = None
        if ref_model is not None:
            # Sharded as the policy is (FSDP2, ZeRO-3), unless it only serves the precomputation just below
            self.ref_model = ref_model if self.precomputed_ref else prepare_reference_model(self, ref_model)
        if self.precomputed_ref:
            # Now that the Trainer has placed the model on its device: each process its share, then gathered
            # (upo.training.reference). No reference model is kept afterwards.
            batch_size = args.precompute_ref_batch_size or args.per_device_train_batch_size
            self.train_dataset = self._add_reference_logps(self.train_dataset, batch_size)
            if isinstance(self.eval_dataset, dict):
                self.eval_dataset = {name: self._add_reference_logps(data, batch_size)
                                     for name, data in self.eval_dataset.items()}
            elif self.eval_dataset is not None:
                self.eval_dataset = self._add_reference_logps(self.eval_dataset, batch_size)
            self.ref_model = None
        self.training_metrics = TrainingMetrics(self.accelerator, args, self.designer_stats)
        self._eval_prefix = "eval"  # the metric_key_prefix of the evaluation under way (eval_{name} for a dict)
        self.nonfinite_guard = NonFiniteGuard(args)
        self._engine_head_gradient = None  # DeepSpeed with a value head: see _clip_grad_norm
        self._step_num_tokens = None

    def _prepare_eval_data(self, eval_dataset, tokenizer, args):
        """An evaluation dataset through the training data's path, scored with the training set's standardisation;
        the prepared data with its report."""
        prepared = prepare_preference_data(eval_dataset, tokenizer, args, self.reward_funcs, self.designer_stats,
                                           "eval")
        logger.info(prepared.report.summary())
        check_numeric_columns(prepared.dataset, prepared.report.source)
        return prepared

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        # accelerate enables FSDP and DeepSpeed only on accelerators; on CPU (gloo) upo switches them on
        enable_sharding_on_cpu(self)

    def train(self, resume_from_checkpoint=None, **kwargs):
        out = self.args.output_dir
        if resume_from_checkpoint in (None, False) and not self.args.overwrite_output_dir and os.path.isdir(out):
            taken = [f for f in os.listdir(out) if f.startswith("checkpoint-") or f in TRAINED_MODEL_FILES]
            if taken:
                raise ConfigError(
                    f"output_dir {out} already holds a trained model or checkpoints ({', '.join(sorted(taken)[:3])}). "
                    "Choose a new output_dir, resume with resume_from_checkpoint, or set overwrite_output_dir."
                )
        # Only a complete checkpoint (upo.training.checkpointing): True means the last complete one, not the last
        # folder.
        resume_from_checkpoint = resolve_resume_checkpoint(resume_from_checkpoint, out)
        if resume_from_checkpoint is not None:  # its model and objective are this run's, before transformers loads it
            check_resume_fits(resume_from_checkpoint, self.model, self._run_config(), self.is_peft,
                              self.model_name_or_path)
        with refusing_unsafe_pickles(resume_from_checkpoint), noting_interruption(out, lambda: self.state.global_step):
            return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.is_deepspeed_enabled and self.value_head is not None and self._engine_head_gradient is None:
            self._engine_head_gradient = EngineHeadGradient(self._value_head_parameters(),
                                                            self.accelerator.deepspeed_engine_wrapped.engine)
        loss = super().training_step(model, inputs, num_items_in_batch)
        # At an optimizer step the gradients are unscaled once (fp16), then checked before the optimizer sees them: a
        # non-finite one stops the run (or, optionally, drops the step); a loss-scale overflow skips the step
        # (upo.training.gradients). DeepSpeed has stepped already: the guard reads whether it applied the step.
        if self.accelerator.sync_gradients:
            unscale_once(self.accelerator)
        engine = self.accelerator.deepspeed_engine_wrapped if self.is_deepspeed_enabled else None
        self.nonfinite_guard.after_backward(model, self.state.global_step, self.accelerator.sync_gradients,
                                            self.accelerator.scaler, engine.engine if engine is not None else None)
        return loss

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        # The step's micro-batches are all known here: count their tokens once, over every process.
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        if batches:
            counts = step_token_counts(batches, self.accelerator.num_processes).to(device)
            self._step_num_tokens = self.accelerator.reduce(counts, reduction="sum").float().clamp(min=1e-8)
        return batches, num_items

    def _clip_grad_norm(self, model):
        # The value head is clipped on its own: in the policy's norm its (large, fresh) gradient would shrink every
        # policy step where DPO's would not. The returned norm, logged as grad_norm, is the policy's. Under DeepSpeed
        # the engine has already clipped every gradient by one norm, the value head's included; grad_norm is still
        # the policy's (upo.training.gradients.EngineHeadGradient).
        if self.is_deepspeed_enabled:
            return self._deepspeed_policy_norm(model)
        return clip_gradients(model, self._value_head_parameters(), self.args.max_grad_norm)

    def _get_grad_norm(self, model, grad_norm=None):
        # max_grad_norm 0 (no clipping): the policy's norm all the same, measured without unscaling a second time
        if grad_norm is None:
            grad_norm = self._deepspeed_policy_norm(model) if self.is_deepspeed_enabled else clip_gradients(
                model, self._value_head_parameters(), math.inf)
        return super()._get_grad_norm(model, grad_norm)

    def _deepspeed_policy_norm(self, model):
        if self._engine_head_gradient is None:
            return super()._clip_grad_norm(model)  # the engine's norm over every gradient: the policy's here
        return self._engine_head_gradient.policy_norm()

    def _value_head_parameters(self) -> list:
        return list(self.value_head.parameters()) if self.value_head is not None else []

    # --- Wiring ---

    def _add_reference_logps(self, dataset, batch_size: int):
        reference = self.ref_model if self.ref_model is not None else self.model
        adapter_off = self.is_peft and self.ref_model is None  # the reference is the base model, adapter off
        return add_reference_logps(dataset, reference, self.data_collator, batch_size, adapter_off,
                                   accelerator=self.accelerator, show_progress=shows_progress(self.args))

    @staticmethod
    def _make_collator(tokenizer, args) -> PreferenceCollator:
        layout = "padding_free" if args.padding_free else "shared_prompt" if args.shared_prompt else "separate"
        return PreferenceCollator(tokenizer.pad_token_id, args.pad_to_multiple_of, layout)

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = MODEL_COLUMNS

    @property
    def value_head(self) -> ValueHead | None:
        return getattr(self.accelerator.unwrap_model(self.model), VALUE_HEAD_PREFIX[:-1], None)

    def create_optimizer(self, model=None):
        args = self.args
        given = ", ".join(f"{name} {value!r}" for name, value in (("optim_args", args.optim_args),
                          ("optim_target_modules", args.optim_target_modules)) if value)
        with refused_by_library(f"optim {getattr(args.optim, 'value', args.optim)!r}" + (f" with {given}" if given
                                else ""), "Fix the optimizer's options (optim_args as 'key=value,key=value', "
                                "optim_target_modules for GaLore and APOLLO), or choose another optim.",
                                errors=(*REFUSALS, RuntimeError)):
            optimizer = super().create_optimizer(model)
        if self.value_head is not None:  # its own learning rate: the policy's is far too small for a fresh head
            head = {id(p) for p in self.value_head.parameters()}
            for group in optimizer.param_groups:
                group["params"] = [p for p in group["params"] if id(p) not in head]
            optimizer.add_param_group(
                {"params": list(self.value_head.parameters()), "lr": self.args.value_learning_rate, "weight_decay": 0.0}
            )
        return optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        args = self.args
        scheduler = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
        kwargs = args.lr_scheduler_kwargs or {}
        with refused_by_library(f"lr_scheduler_type {scheduler!r} with lr_scheduler_kwargs {kwargs}",
                                "Give the scheduler the arguments it takes in lr_scheduler_kwargs, or choose another "
                                "lr_scheduler_type."):
            return super().create_scheduler(num_training_steps, optimizer)

    def _reference_logps(self, model, inputs) -> torch.Tensor | None:
        """The reference's log-probs of every response, chosen then rejected (2B,); None for a run without one."""
        if not self.uses_reference:
            return None
        if self.precomputed_ref:
            return torch.cat([inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]])
        with torch.no_grad():
            if self.ref_model is not None:
                return forward_logps(self.ref_model, inputs).logps
            with self.accelerator.unwrap_model(model).disable_adapter():  # PEFT: the base model, adapter off
                return forward_logps(model, inputs).logps

    # --- The loss ---

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        args = self.args
        mode = "train" if model.training else "eval"
        # Per-token averages over the whole optimizer step in training; over this batch in evaluation.
        step_tokens = self._step_num_tokens if mode == "train" else None
        out = forward_logps(model, inputs, args.logps_chunk_size, statistics=True)
        ref_logps = self._reference_logps(model, inputs)
        head = self.value_head
        objective = compute_objective(
            args, out.logps, out.lengths, ref_logps,
            rewards=inputs.get("designer_rewards"), labels=inputs.get("label"),
            values=head(out.prompt_hidden) if head is not None else None,
            pair_weights=inputs.get("weight"), step_tokens=step_tokens,
            mean_over_processes=(lambda x: self.accelerator.reduce(x, reduction="mean"))
            if self.accelerator.num_processes > 1 else None,
        )
        loss = objective.loss
        components = {k[len("loss/"):]: v for k, v in objective.metrics.items() if k.startswith("loss/")}
        # A non-finite loss stops the run (or, optionally, its batch is skipped) before its backward pass.
        guard = self.nonfinite_guard
        if mode == "train" and guard.check_loss(loss, components, self.state.global_step, self._any_rank):
            loss = guard.no_update_loss(model, loss)  # and the batch's metrics are not recorded
        else:
            self.training_metrics.record(mode, objective.metrics, inputs, out, ref_logps, objective.sums)
        if not return_outputs:
            return loss
        n = len(out.logps) // 2
        rewards = implicit_rewards(out, ref_logps, args)[1]
        unpaired = methods.lead_method(args.loss_type).rows == methods.UNPAIRED
        # What `compute_metrics` receives (see the class docstring): each pair's rewards, or each completion's.
        return loss, {"rewards": rewards[:n] if unpaired else torch.stack(rewards.chunk(2), dim=-1)}

    def _any_rank(self, flag: bool) -> bool:
        """True when `flag` is true on any process (every process must call this at the same point)."""
        total = self.accelerator.reduce(torch.tensor([float(flag)], device=self.accelerator.device), reduction="sum")
        return bool(total.item() > 0)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        metrics = self.training_metrics.window(mode)
        if mode == "train":
            if self.nonfinite_guard.skipped_batches:
                metrics["nonfinite/skipped_batches"] = float(self.nonfinite_guard.skipped_batches)
            scaler = self.accelerator.scaler
            if scaler is not None and scaler.is_enabled():  # fp16: the loss scale, and the steps it skipped
                metrics["amp/loss_scale"] = scaler.get_scale()
            if scaler is not None and scaler.is_enabled() or self.nonfinite_guard.scaler_skipped_steps:
                metrics["amp/skipped_steps"] = float(self.nonfinite_guard.scaler_skipped_steps)
        else:  # eval_..., or eval_{name}_... for each of a dict of eval datasets
            metrics = {f"{self._eval_prefix}_{key}": value for key, value in metrics.items()}
        logs.update(metrics)
        super().log(logs, start_time)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        """`transformers.Trainer.evaluate`; a dataset (or a dict of them) given here goes through the training data's
        path first, as the ones given to the trainer did."""
        if isinstance(eval_dataset, dict):  # transformers calls back here once per name, with its prefix
            eval_dataset = {name: self._eval_data_here(data) for name, data in eval_dataset.items()}
        elif eval_dataset is not None and not isinstance(eval_dataset, str):
            eval_dataset = self._eval_data_here(eval_dataset)
        self._eval_prefix = metric_key_prefix
        try:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        finally:
            self._eval_prefix = "eval"

    def _eval_data_here(self, dataset):
        """A dataset given to `evaluate`: tokenised, scored and with reference log-probs when it is not yet."""
        if isinstance(dataset, Dataset) and "prompt_ids" in dataset.column_names:
            return dataset  # prepared already (by __init__, or by a dict's first pass)
        if self.precomputed_ref and not self.is_peft and self.state.global_step > 0:
            raise ConfigError("evaluate() got a new dataset after training started, with precompute_ref_log_probs and "
                              "no reference model kept: give it as eval_dataset to the trainer, or pass a ref_model.")
        prepared = self._prepare_eval_data(dataset, self.processing_class, self.args).dataset
        if self.precomputed_ref:
            batch_size = self.args.precompute_ref_batch_size or self.args.per_device_eval_batch_size
            prepared = self._add_reference_logps(prepared, batch_size)
        return prepared

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            if prediction_loss_only or self.compute_metrics is None:
                return self.compute_loss(model, inputs).detach(), None, None
            loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
        rewards = outputs["rewards"]
        unpaired = rewards.dim() == 1
        labels = inputs["label"] if unpaired else torch.zeros(len(rewards), dtype=torch.long, device=rewards.device)
        return loss.detach(), rewards, labels

    # --- Saving and resuming: the value head lives beside the weights, not inside them ---

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        if state_dict is None:
            state_dict = self.accelerator.unwrap_model(self.model).state_dict()
        else:  # gathered from shards (FSDP2): a tied weight comes as two tensors
            state_dict = without_tied_copies(state_dict, self.accelerator.unwrap_model(self.model))
        head = {k[len(VALUE_HEAD_PREFIX):]: v.contiguous()
                for k, v in state_dict.items() if k.startswith(VALUE_HEAD_PREFIX)}
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(VALUE_HEAD_PREFIX)}
        if CHECKPOINT_PATTERN.match(os.path.basename(os.path.normpath(output_dir))):
            self._save_files(output_dir, state_dict, head)  # _save_checkpoint explains a failure
            return
        start = time.time()
        with explaining_save_failures("the model into", output_dir, self.args.output_dir,
                                      cleanup=lambda: remove_written_since(output_dir, start)):
            self._save_files(output_dir, state_dict, head)

    def _save_files(self, output_dir: str, state_dict: dict, head: dict) -> None:
        super()._save(output_dir, state_dict=state_dict)
        if not self.args.should_save:
            return
        if head:
            save_file(head, os.path.join(output_dir, VALUE_HEAD))
        config = self._run_config()
        if self.designer_stats is not None:
            config["designer_reward_stats"] = self.designer_stats.to_dict()
        if self.designer_temperature is not None:  # how designer_target became aw_temperature
            config["designer_temperature"] = dataclasses.asdict(self.designer_temperature)
        atomic_write_json(os.path.join(output_dir, UPO_CONFIG), config, indent=2, default=str)
        write_model_card(output_dir, self)

    def _run_config(self) -> dict:
        """The options as upo_config.json records them: with the base model and the reward functions' names."""
        config = self.args.to_dict()
        config["model_name_or_path"] = self.model_name_or_path  # upo.models.base_model_name_or_path reads it
        config["reward_funcs"] = [getattr(f, "__name__", str(f)) if callable(f) else f for f in self.reward_funcs]
        return config

    def _save_checkpoint(self, model, trial) -> None:
        # Marked complete only once every rank has written every file: a kill mid-save leaves no usable-looking folder.
        folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
        if self.args.should_save:
            remove_if_incomplete(folder)  # left by a save that was killed
        self.accelerator.wait_for_everyone()
        limit, self.args.save_total_limit = self.args.save_total_limit, None  # rotate only once this one is complete
        with explaining_save_failures("checkpoint", folder, self.args.output_dir,
                                      cleanup=lambda: self.args.should_save and shutil.rmtree(folder)):
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self.args.save_total_limit = limit
            self.accelerator.wait_for_everyone()
            if self.args.should_save:
                write_completion_marker(folder, self.state.global_step)
                rotate_checkpoints(os.path.dirname(folder), limit, self.state.best_model_checkpoint, use_mtime=True)

    def _issue_warnings_after_load(self, load_result) -> None:
        # The value head is not in model.safetensors by design (it loads from value_head.safetensors below).
        load_result.missing_keys[:] = [k for k in load_result.missing_keys if not k.startswith(VALUE_HEAD_PREFIX)]
        super()._issue_warnings_after_load(load_result)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = os.path.join(resume_from_checkpoint, VALUE_HEAD)
        # Under FSDP the checkpoint's sharded model state (pytorch_model_fsdp.bin) already holds the value head.
        if self.value_head is not None and os.path.isfile(path) and not self.is_fsdp_enabled:
            self.value_head.load_state_dict(load_file(path))

    def create_model_card(self, *args, license: str | None = None, **kwargs):
        write_model_card(self.args.output_dir, self, license=license)
