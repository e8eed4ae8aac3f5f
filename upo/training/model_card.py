"""A short model card written beside every saved model: what was trained, on what, with which objectives."""

from __future__ import annotations

import os

import upo
from upo.training.run_folder import MODEL_CARD, UPO_CONFIG, VALUE_HEAD


def write_model_card(output_dir: str, trainer) -> None:
    args = trainer.args
    base = getattr(trainer.model.config, "_name_or_path", "") or "unknown"
    stats = trainer.designer_stats
    objectives = (
        "\n".join(f"| {n} | {w:g} | {m:.4g} | {s:.4g} |" for n, w, m, s in zip(stats.names, stats.weights, stats.mean, stats.std))
        if stats is not None else ""
    )
    term = (
        f"UPO designer term on (alpha = {args.alpha}, value baseline `{args.value_baseline}`, "
        f"expectile tau = {args.expectile_tau}, temperature = {args.aw_temperature}, max weight = {args.aw_max_weight})."
        if trainer.use_designer_term else "No designer term (plain preference optimisation)."
    )
    if args.loss_type[0] in ("aoppo", "drov"):
        term = f"Reward of each response: preference label (+1 / -1) + {args.alpha} x the designer reward."
    if args.loss_type == ["csft"]:
        term += f" Conditional SFT: generate after the control tag `{args.csft_tags[0]}` (`upo eval` does)."
    load = (
        "A LoRA adapter: load it with `peft.AutoPeftModelForCausalLM.from_pretrained(folder)` (merge with `merge_and_unload()`)"
        if trainer.is_peft else "Load it with `transformers.AutoModelForCausalLM.from_pretrained(folder)`"
    )
    head = f", the value head in `{VALUE_HEAD}`" if trainer.value_head is not None else ""
    text = f"""---
library_name: transformers
tags: [upo, dpo, preference-optimization]
---
# {os.path.basename(os.path.abspath(output_dir))}

Fine-tuned from `{base}` with upo {upo.__version__} (Unified Preference Optimization).

* Preference loss: {", ".join(args.loss_type)} (beta = {args.beta})
* {term}
* Learning rate {args.learning_rate}, {args.num_train_epochs} epoch(s), batch size {args.per_device_train_batch_size}.

""" + (f"""## Designer objectives (standardised with the training set's mean and std)
| objective | weight | mean | std |
|---|---|---|---|
{objectives}
""" if objectives else "") + f"""
{load}. The resolved configuration is in `{UPO_CONFIG}`{head}.
"""
    with open(os.path.join(output_dir, MODEL_CARD), "w") as f:
        f.write(text)
