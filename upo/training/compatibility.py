"""Before the first step: do the model, the data and a resumed checkpoint fit together?

Nothing checked this, so a misfit surfaced as a torch error deep in a forward pass, or not at all:

* **positions**: a model with learned position embeddings (GPT-2's `wpe`, OPT's `embed_positions`) shorter than
  the longest tokenised pair failed with "IndexError: index out of range in self" at the first batch that long. A
  rotary model runs past its `max_position_embeddings`, on lengths it never saw in training: a warning;
* **vocabulary**: a tokenizer that gives ids beyond the model's embedding matrix (another model's tokenizer, or
  tokens added without resizing) failed with the same IndexError;
* **a resumed checkpoint** of another model failed while loading its weights ("size mismatch for lm_head.weight");
  one trained without UPO's value head (DPO) failed loading the optimizer ("loaded state dict has a different number
  of parameter groups"); one trained with another `loss_type` resumed silently into a different objective.

`check_data_fits_model` runs once the data is tokenised, before the reference log-probs are computed (which is
already a forward pass); `check_resume_fits` when training starts, before transformers loads the checkpoint. Each
problem is a `ConfigError` naming the option (`max_length`, the model, `resume_from_checkpoint`) and the fix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.compute as pc
import torch

from upo import methods
from upo.errors import ConfigError
from upo.logs import get_logger
from upo.run_folder import VALUE_HEAD, read_run_config

logger = get_logger(__name__)

# The names transformers gives learned (absolute) position embeddings.
POSITION_EMBEDDINGS = ("wpe", "embed_positions", "position_embeddings", "pos_embed", "pos_emb")


def position_embedding(model: torch.nn.Module) -> torch.nn.Embedding | None:
    """The model's learned position embedding, or None (rotary or no positions)."""
    tokens = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Embedding) and module is not tokens \
                and name.rpartition(".")[2] in POSITION_EMBEDDINGS:
            return module
    return None


def positions_needed(dataset, pad_to_multiple_of: int | None = None) -> int:
    """The most positions one sequence of `dataset` (tokenised pairs) takes: its prompt and its longer response (the
    collator restarts the rejected response's positions after the prompt), padded up to `pad_to_multiple_of` (the
    separate layout pads every row of a batch to one length, with positions up to it)."""
    if len(dataset) == 0:
        return 0
    arrow = dataset.with_format("arrow")
    prompt, chosen, rejected = (pc.list_value_length(arrow[c]) for c in ("prompt_ids", "chosen_ids", "rejected_ids"))
    longest = pc.max(pc.add(prompt, pc.max_element_wise(chosen, rejected))).as_py() or 0
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    return longest


def largest_token_id(dataset) -> int:
    """The largest token id in `dataset`'s prompts and responses (-1 when there is none)."""
    if len(dataset) == 0:
        return -1
    arrow = dataset.with_format("arrow")
    found = [pc.max(pc.list_flatten(arrow[c])).as_py() for c in ("prompt_ids", "chosen_ids", "rejected_ids")]
    return max((v for v in found if v is not None), default=-1)


def check_data_fits_model(model: torch.nn.Module, which: str, datasets: dict, pad_token_id: int | None,
                          max_length: int | None, pad_to_multiple_of: int | None, separate_layout: bool) -> None:
    """Refuse (ConfigError) data whose token ids or lengths the model cannot take; warn for lengths beyond a rotary
    model's `max_position_embeddings` (see the module docstring). `which` names the model (the policy, the reference)
    and `datasets` maps a name (the source) to its tokenised pairs."""
    rows = model.get_input_embeddings().num_embeddings
    for source, dataset in datasets.items():
        largest = max(largest_token_id(dataset), pad_token_id if pad_token_id is not None else -1)
        if largest >= rows:
            raise ConfigError(
                f"{which}: the tokenizer gives token ids up to {largest} on {source}, but the model's embedding matrix "
                f"has {rows} rows (ids 0-{rows - 1}): the tokenizer is not this model's, or tokens were added to it "
                "without resizing the model. Use the model's own tokenizer, or resize the embeddings "
                "(model.resize_token_embeddings(len(tokenizer))) and save the model before training.")
    config = getattr(model, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    learned = position_embedding(model)
    limit = learned.num_embeddings - getattr(learned, "offset", 0) if learned is not None else \
        getattr(text_config, "max_position_embeddings", None)
    if not limit:
        return
    for source, dataset in datasets.items():
        needed = positions_needed(dataset, pad_to_multiple_of if separate_layout else None)
        if needed <= limit:
            continue
        padded = " (padded to pad_to_multiple_of)" if separate_layout and pad_to_multiple_of else ""
        fix = f"set max_length to {limit} or less" + (f" (it is {max_length})" if max_length else " (it is None)")
        if learned is not None:
            raise ConfigError(
                f"{which}: the longest pair of {source} takes {needed} positions{padded}, but the model has learned "
                f"position embeddings for {limit}: a longer sequence cannot be encoded. {fix[0].upper() + fix[1:]}, "
                "or choose a model with longer positions.")
        logger.warning(f"{which}: the longest pair of {source} takes {needed} positions{padded}, beyond the model's "
                       f"max_position_embeddings={limit}; its rotary positions run, but on lengths it was not trained "
                       f"on. To stay within them, {fix}.")


def check_generation_fits(model: torch.nn.Module, which: str, prompt_ids: list[list[int]], max_new_tokens: int) -> None:
    """`check_data_fits_model` for generation (`upo eval`): the prompts' token ids within the embedding matrix, and
    the longest prompt with `max_new_tokens` within learned position embeddings."""
    rows = model.get_input_embeddings().num_embeddings
    largest = max((max(ids) for ids in prompt_ids if ids), default=-1)
    if largest >= rows:
        raise ConfigError(f"{which}: the tokenizer gives token ids up to {largest} on the prompts, but the model's "
                          f"embedding matrix has {rows} rows: the tokenizer is not this model's, or tokens were added "
                          "to it without resizing the model. Save the model with its own tokenizer.")
    learned = position_embedding(model)
    if learned is None:
        return
    limit = learned.num_embeddings - getattr(learned, "offset", 0)
    longest = max((len(ids) for ids in prompt_ids), default=0)
    if longest + max_new_tokens > limit:
        raise ConfigError(f"{which}: the longest prompt has {longest} tokens, and with max_new_tokens={max_new_tokens} "
                          f"a reply would need {longest + max_new_tokens} positions; the model has learned position "
                          f"embeddings for {limit}. Lower max_new_tokens, or leave out the longest prompts.")


# Options that decide what a run trains: a resume with another value would continue another objective.
OBJECTIVE_OPTIONS = ("loss_type", "aux_loss", "value_baseline")
# Options a resume may change (a learning rate, a budget), but that change the objective's numbers: named.
TUNED_OPTIONS = ("beta", "alpha", "label_smoothing", "loss_weights", "reward_weights", "aw_temperature",
                 "aw_max_weight", "expectile_tau", "modpo_weight", "aux_normalization", "standardize_rewards")


def _weights(checkpoint: Path, adapter: bool) -> dict[str, list[int]] | None:
    """Parameter name -> shape in the checkpoint's weights (model or adapter, single or sharded safetensors), read from
    the files' headers only; None when it holds no safetensors weights of that kind."""
    from safetensors import safe_open

    stem = "adapter_model" if adapter else "model"
    index = checkpoint / f"{stem}.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
    elif (checkpoint / f"{stem}.safetensors").is_file():
        files = [f"{stem}.safetensors"]
    else:
        return None
    shapes = {}
    for name in files:
        with safe_open(str(checkpoint / name), "pt") as handle:
            for key in handle.keys():
                shapes[key] = list(handle.get_slice(key).get_shape())
    return shapes


def _expected_weights(model: torch.nn.Module, adapter: bool) -> dict[str, list[int]]:
    if adapter:
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(model)
    else:
        state = {k: v for k, v in model.state_dict().items() if not k.startswith("upo_value_head.")}
    return {key: list(value.shape) for key, value in state.items()}


def _weights_problem(checkpoint: Path, model: torch.nn.Module, adapter: bool) -> str | None:
    stored = _weights(checkpoint, adapter)
    if stored is None:
        other = _weights(checkpoint, not adapter)
        if other is not None:
            return (f"it holds {'a full model' if adapter else 'a LoRA adapter'}, and this run trains "
                    f"{'a LoRA adapter (use_peft)' if adapter else 'every weight (no use_peft)'}")
        return None  # a checkpoint without safetensors weights (FSDP's sharded state): transformers checks it
    expected = _expected_weights(model, adapter)
    for key, shape in stored.items():
        if key in expected and expected[key] != shape:
            return f"its {key} has shape {shape}, this model's has {expected[key]}"
    unknown = [key for key in stored if key not in expected]
    if unknown:
        return (f"it holds {len(unknown)} weights this model does not have (the first: {unknown[0]}), so it is a "
                "checkpoint of another architecture")
    return None


def _designer_layout(config: dict) -> tuple[bool, bool]:
    """(designer term on, value head) of a run config (upo_config.json, or the options of this run)."""
    loss_type = config.get("loss_type") or [methods.DEFAULT_LOSS_TYPE]
    loss_type = [loss_type] if isinstance(loss_type, str) else list(loss_type)
    has_rewards = bool(config.get("reward_funcs"))
    alpha = float(config.get("alpha", 1.0))
    term = methods.uses_designer_term(loss_type, alpha, has_rewards)
    head = methods.needs_value_head(loss_type, alpha, has_rewards, config.get("value_baseline", "value_head"),
                                    config.get("aux_loss", "awr"))
    return term, head


def check_resume_fits(checkpoint: str | os.PathLike, model: torch.nn.Module, options: dict, adapter: bool,
                      model_name_or_path: str | None) -> None:
    """Refuse resuming from `checkpoint` when it holds another model's weights, or was trained with another objective
    (`OBJECTIVE_OPTIONS`, the designer term, the value head, the designer rewards); name the options of
    `TUNED_OPTIONS` that changed. `options` are this run's (its `to_dict()` with its reward function names)."""
    checkpoint = Path(checkpoint)
    where = f"resume_from_checkpoint {checkpoint}"
    trained_from = None
    stored = read_run_config(checkpoint)
    if stored is not None:
        trained_from = stored.get("model_name_or_path")
        problems = []
        for name in OBJECTIVE_OPTIONS:
            then, now = stored.get(name), options.get(name)
            then = [then] if name == "loss_type" and isinstance(then, str) else then
            if then is not None and then != now and (name == "loss_type" or _designer_layout(stored)[0]):
                problems.append(f"{name} {then!r} there, {now!r} here")
        (term_then, head_then), (term_now, head_now) = _designer_layout(stored), _designer_layout(options)
        if term_then != term_now:
            problems.append(f"UPO's designer term {'on' if term_then else 'off'} there, {'on' if term_now else 'off'} "
                            "here (alpha, reward_funcs)")
        elif head_then != head_now:
            problems.append(f"a value head {'there, none here' if head_then else 'here, none there'}")
        if term_then and term_now and list(stored.get("reward_funcs") or []) != list(options.get("reward_funcs") or []):
            problems.append(f"reward_funcs {stored.get('reward_funcs')} there, {options.get('reward_funcs')} here")
        if problems:
            raise ConfigError(
                f"{where} was trained with another objective: {'; '.join(problems)}. Resuming continues a run as it "
                "was: resume with its options, or start a new run (another output_dir) from its weights "
                f"(model_name_or_path: {checkpoint}).")
    elif (checkpoint / "model.safetensors").is_file() and (checkpoint / VALUE_HEAD).is_file() != any(
            k.startswith("upo_value_head.") for k in model.state_dict()):  # another tool's checkpoint, not FSDP's
        there, here = ("a value head", "none") if (checkpoint / VALUE_HEAD).is_file() else ("no value head", "one")
        raise ConfigError(f"{where} has {there} and this run has {here}: resume with the options it was trained "
                          "with, or start a new run from its weights.")
    problem = _weights_problem(checkpoint, model, adapter)
    if problem:
        origin = f" (it was trained from {trained_from})" if trained_from else ""
        raise ConfigError(
            f"{where} is not a checkpoint of this run's model{origin}: {problem}. Resume with the model it was trained "
            f"from (model_name_or_path{': ' + str(trained_from) if trained_from else ''}, and the same use_peft), or "
            "start a new run.")
    if stored is not None:
        changed = [f"{name} {stored[name]!r} -> {options.get(name)!r}" for name in TUNED_OPTIONS
                   if name in stored and stored[name] != options.get(name)]
        if changed:
            logger.warning(f"resuming {checkpoint} with other values of options that shape the objective: "
                           f"{', '.join(changed)}.")
    if trained_from and model_name_or_path and str(trained_from) != str(model_name_or_path):
        logger.warning(f"{checkpoint} was trained from {trained_from}; this run names {model_name_or_path}. Its "
                       "weights have the same names and shapes.")
