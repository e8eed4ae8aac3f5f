"""A run folder that `upo train` wrote, as a model: the base model it was trained from, and the run loaded for
generation (a full fine-tune as it is, a LoRA adapter merged into its base), as `upo eval` and the frontier load it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from upo.errors import ConfigError, ModelResolutionError
from upo.models.loading import load_causal_lm, load_tokenizer
from upo.models.smollm2 import SMOLLM2_NAME
from upo.run_folder import ADAPTER_CONFIG, UPO_CONFIG


def base_model_name_or_path(run_folder: str | os.PathLike) -> str | None:
    """The model a run folder was trained from, as the user named it (a Hub ID, a folder or a known name).

    Read from the run's `upo_config.json` (`model_name_or_path`, written by `UPOTrainer.save_model`), else from a LoRA
    adapter's `adapter_config.json` (`base_model_name_or_path`, written by peft); None when neither says.
    """
    folder = Path(run_folder)
    for file_name, key in ((UPO_CONFIG, "model_name_or_path"), (ADAPTER_CONFIG, "base_model_name_or_path")):
        try:
            value = json.loads((folder / file_name).read_text()).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if value:
            return value
    return None


def resolve_base_model(name_or_path: str) -> str:
    """A base model as recorded in a run folder, made loadable here: a recorded folder that does not exist on this
    machine (another machine's cache) is tried by its last path component (e.g. `smollm2-135m-instruct`)."""
    if os.path.isabs(name_or_path) and not os.path.isdir(name_or_path):
        return Path(name_or_path).name
    return name_or_path


def default_reference(model_path: str) -> str:
    """The base model the run in `model_path` was trained from; `ConfigError` when the folder does not say."""
    base = base_model_name_or_path(model_path)
    if base is None:
        raise ConfigError(f"{model_path} does not record the model it was trained from (no upo_config.json or "
                          "adapter_config.json naming it): pass the reference with --reference NAME_OR_PATH.")
    return resolve_base_model(base)


def load_model(name_or_path: str, dtype=None, device: str | None = None, trust_remote_code: bool = False):
    """A trained run folder (full model, or a LoRA adapter merged into its base), a local model, a Hub ID or a known
    name (`upo.models.loading`). Returns `(model, tokenizer)`, the model in eval mode on `device` (default: CUDA when
    there is one). `dtype`: default the checkpoint's own on an accelerator, float32 on a CPU."""
    import torch  # torch and peft where used, as everywhere in upo.models: importing upo.models stays light

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype is None:
        dtype = "auto" if device.type != "cpu" else torch.float32
    folder = Path(name_or_path)
    if (folder / ADAPTER_CONFIG).is_file():
        from peft import PeftModel

        base_name = resolve_base_model(base_model_name_or_path(folder) or SMOLLM2_NAME)
        base = load_causal_lm(base_name, dtype=dtype, trust_remote_code=trust_remote_code)
        try:  # merged: generation then costs what the base model costs
            model = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
        except (OSError, ValueError, KeyError, RuntimeError) as error:  # a damaged or mismatched adapter
            raise ModelResolutionError(f"Cannot load the LoRA adapter {folder} onto {base_name!r}: "
                                       f"{' '.join(str(error).split())[:300]}") from error
        has_tokenizer = (folder / "tokenizer_config.json").is_file()
        tokenizer = load_tokenizer(str(folder) if has_tokenizer else base_name, trust_remote_code=trust_remote_code)
    else:
        model = load_causal_lm(str(name_or_path), dtype=dtype, trust_remote_code=trust_remote_code)
        tokenizer = load_tokenizer(str(name_or_path), trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer
