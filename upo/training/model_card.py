"""The model card written beside every saved model, as the Hugging Face Hub reads it (`huggingface_hub.ModelCard`).

Its metadata (`ModelCardData`): `base_model` as a Hub ID when one is known (a Hub ID as given, a known name's Hub ID,
or the ID a Hub-cache snapshot folder stands for), never a local path; the training `datasets` that are Hub
datasets; the base model's `license` when it can be read (a known name's, or the base model's own card); tags; and
evaluation results as `model-index`: the trainer's held-out metrics at save time, and `upo eval`'s results when
asked for (`add_eval_results`). The text says what was trained, with which objectives, how to load it, and how to
cite the method.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

import upo
from upo import methods
from upo.errors import DataError
from upo.files import atomic_write_text
from upo.library_errors import library_message
from upo.models.smollm2 import SMOLLM2_HUB_ID, SMOLLM2_LICENSE, SMOLLM2_NAME
from upo.run_folder import MODEL_CARD, UPO_CONFIG, VALUE_HEAD

# The Hub IDs and licences of the models upo knows by a short name (upo.models.KNOWN_MODELS).
KNOWN_HUB_MODELS = {SMOLLM2_NAME: (SMOLLM2_HUB_ID, SMOLLM2_LICENSE)}

CITATION = """@article{badrinath2025unified,
  title   = {Unified Preference Optimization: Language Model Alignment Beyond the Preference Frontier},
  author  = {Badrinath, Anirudhan and Agarwal, Prabhat and Xu, Jiajing},
  journal = {Transactions on Machine Learning Research},
  year    = {2025},
  url     = {https://arxiv.org/abs/2405.17956}
}"""

_SNAPSHOT = re.compile(r"(?:^|/)models--([^/]+?)--([^/]+)/snapshots/[^/]+/?$")


def hub_model_id(name_or_path: str | None) -> str | None:
    """The Hub ID a model name stands for, or None when it is only a local folder (never a local path)."""
    if not name_or_path:
        return None
    name = os.fspath(name_or_path)
    if name.lower() in KNOWN_HUB_MODELS:
        return KNOWN_HUB_MODELS[name.lower()][0]
    if os.path.isabs(name) and Path(name).name.lower() in KNOWN_HUB_MODELS:  # the converted known model's cache
        return KNOWN_HUB_MODELS[Path(name).name.lower()][0]
    match = _SNAPSHOT.search(name.replace(os.sep, "/"))
    if match:
        return f"{match.group(1)}/{match.group(2)}"
    if os.path.exists(name) or name.startswith((".", "/", "~")):
        return None
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name if "/" in name else None


def base_model_license(name_or_path: str | None) -> str | None:
    """The base model's licence: a known name's, or what its own model card (in its folder or the Hub cache) says."""
    if not name_or_path:
        return None
    hub_id = hub_model_id(name_or_path)
    for name, (known_id, license_id) in KNOWN_HUB_MODELS.items():
        if hub_id == known_id or os.fspath(name_or_path).lower() == name:
            return license_id
    card_path = Path(name_or_path) / MODEL_CARD if os.path.isdir(name_or_path) else None
    if card_path is None and hub_id:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(hub_id, MODEL_CARD)
        card_path = Path(cached) if isinstance(cached, str) else None
    if card_path is None or not card_path.is_file():
        return None
    from huggingface_hub import ModelCard

    try:
        return ModelCard.load(card_path).data.license
    except Exception:  # a card without metadata, or malformed: no licence known
        return None


def hub_dataset_ids(sources) -> list[str]:
    """The training sources that are Hub datasets (`HubDataset`s whose name is not a local folder)."""
    ids = []
    for source in sources:
        name = getattr(source, "name", None)
        if isinstance(name, str) and not os.path.exists(name) and "/" in name and name not in ids:
            ids.append(name)
    return ids


def eval_results(metrics: dict[str, float | None], dataset_name: str, dataset_type: str | None = None,
                 source: str = "upo eval") -> list:
    """`huggingface_hub.EvalResult`s (the card's `model-index`) for the metrics that have a value."""
    import math

    from huggingface_hub import EvalResult

    out = []
    for key, value in metrics.items():
        if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        out.append(EvalResult(task_type="text-generation", task_name="Preference alignment",
                              dataset_type=dataset_type or "local", dataset_name=dataset_name, metric_type=key,
                              metric_name=key.replace("_", " "), metric_value=round(float(value), 4),
                              metric_config=source))  # which upo step measured it (source_name wants a URL)
    return out


def trainer_eval_results(trainer) -> list:
    """The held-out metrics the trainer logged last (`eval_loss`, `eval_rewards/accuracies`, ...), if any."""
    history = [e for e in getattr(trainer.state, "log_history", []) if "eval_loss" in e]
    if not history:
        return []
    last = history[-1]
    keys = ("eval_loss", "eval_rewards/accuracies", "eval_rewards/margins")
    sources = getattr(trainer, "data_sources", (None, None))
    eval_ids = hub_dataset_ids([sources[1]]) if len(sources) > 1 else []
    name = eval_ids[0] if eval_ids else "held-out preference pairs"
    return eval_results({k.replace("/", "_"): last.get(k) for k in keys}, name, eval_ids[0] if eval_ids else None,
                        source="upo train")


TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

Fine-tuned from {{ base_text }} with [upo](https://arxiv.org/abs/2405.17956) {{ upo_version }} (Unified Preference
Optimization: DPO plus advantage-weighted designer objectives).

* Preference loss: {{ loss }} (beta = {{ beta }})
* {{ term }}
* Learning rate {{ learning_rate }}, {{ epochs }} epoch(s), batch size {{ batch_size }}.
* Training data: {{ data_text }}
{% if objectives %}
## Designer objectives (standardised with the training set's mean and std)

| objective | weight | mean | std |
|---|---|---|---|
{% for o in objectives %}| {{ o.name }} | {{ o.weight }} | {{ o.mean }} | {{ o.std }} |
{% endfor %}{% endif %}
## Use it

{{ load }}. The resolved configuration is in `{{ upo_config }}`{{ head }}.

## Citation

```bibtex
{{ citation }}
```
"""


def build_model_card(output_dir: str, trainer, extra_eval_results: list | None = None, license: str | None = None):
    """The `huggingface_hub.ModelCard` of a trainer's saved model."""
    from huggingface_hub import ModelCard, ModelCardData

    args = trainer.args
    given = getattr(trainer, "model_name_or_path", None) or getattr(trainer.model.config, "_name_or_path", None)
    base_id = hub_model_id(given)
    sources = [s for s in getattr(trainer, "data_sources", ()) if s is not None]
    datasets = hub_dataset_ids(sources[:1])
    stats = trainer.designer_stats
    objectives = [{"name": n, "weight": f"{w:g}", "mean": f"{m:.4g}", "std": f"{s:.4g}"}
                  for n, w, m, s in zip(stats.names, stats.weights, stats.mean, stats.std)] if stats else []
    term = methods.designer_card_text(args, trainer.use_designer_term)
    load = ("A LoRA adapter: load it with `peft.AutoPeftModelForCausalLM.from_pretrained(folder)` (merge with "
            "`merge_and_unload()`)" if trainer.is_peft else
            "Load it with `transformers.AutoModelForCausalLM.from_pretrained(folder)`")
    results = trainer_eval_results(trainer) + list(extra_eval_results or [])
    model_name = os.path.basename(os.path.abspath(output_dir))
    card_data = ModelCardData(
        base_model=base_id, datasets=datasets or None, license=license or base_model_license(given),
        library_name="peft" if trainer.is_peft else "transformers", model_name=model_name,
        tags=["upo", "dpo", "trl", "preference-optimization"] + (["lora"] if trainer.is_peft else []),
        pipeline_tag="text-generation", eval_results=results or None,
    )
    local = [getattr(s, "name", s) for s in sources if not hub_dataset_ids([s])]
    data_text = ", ".join(f"`{d}` (Hub)" for d in datasets) or ", ".join(
        f"`{Path(os.fspath(s)).name}` (a local file)" for s in local if isinstance(s, (str, os.PathLike))) or \
        "an in-memory dataset"
    return ModelCard.from_template(
        card_data, template_str=TEMPLATE, model_name=model_name,
        base_text=f"[`{base_id}`](https://huggingface.co/{base_id})" if base_id else "a local model",
        upo_version=upo.__version__, loss=", ".join(args.loss_type), beta=args.beta, term=term,
        learning_rate=args.learning_rate, epochs=args.num_train_epochs, batch_size=args.per_device_train_batch_size,
        data_text=data_text, objectives=objectives, load=load, upo_config=UPO_CONFIG,
        head=f", the value head in `{VALUE_HEAD}`" if trainer.value_head is not None else "", citation=CITATION)


def write_model_card(output_dir: str, trainer, **kwargs) -> None:
    """Writes the card (`build_model_card`) as `README.md` in `output_dir`."""
    atomic_write_text(Path(output_dir) / MODEL_CARD, str(build_model_card(output_dir, trainer, **kwargs)))


def read_model_card(path: str | os.PathLike):
    """The `ModelCard` in `path`, with its metadata (the YAML front matter between `---` lines) and model-index read;
    a card that cannot be read is a `DataError` naming the file, instead of PyYAML's or huggingface_hub's error."""
    from huggingface_hub import ModelCard

    try:
        card = ModelCard.load(path)
        card.data.eval_results  # noqa: B018 (the model-index is parsed when the card is; read to be sure)
    except (ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError) as error:
        raise DataError(f"{path}: the model card's metadata (the YAML front matter between the --- lines at its top) "
                        f"cannot be read ({library_message(error, 160)}). Fix the front matter, or move the file away "
                        "to start a new card.") from error
    return card


def add_eval_results(folder: str | os.PathLike, summary: dict, dataset_name: str, dataset_type: str | None = None,
                     source: str = "upo eval") -> bool:
    """Adds `upo eval`'s results of one model (its summary row) to the `model-index` of the card in `folder`,
    replacing earlier results of the same source on the same data. False when the folder has no card."""
    path = Path(folder) / MODEL_CARD
    if not path.is_file():
        return False
    card = read_model_card(path)
    keys = ("win_rate", "preference_score", "designer_score", "kl", "implicit_accuracy")
    fresh = eval_results({k: summary.get(k) for k in keys}, dataset_name, dataset_type, source)
    kept = [r for r in (card.data.eval_results or [])
            if not (r.metric_config == source and r.dataset_name == dataset_name)]
    card.data.eval_results = kept + fresh
    if card.data.model_name is None:
        card.data.model_name = Path(folder).resolve().name

    atomic_write_text(path, str(card))
    return True
