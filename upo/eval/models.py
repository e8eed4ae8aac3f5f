"""The models one evaluation compares, loaded once where they can be: a LoRA run trained from the reference is merged
into a copy of the reference already in memory (not its base read from disk again), and a tokenizer whose files are
byte for byte those of one loaded before is that one.

The merged copy has the weights `upo.models.load_model` gives (the base's tensors are the same, and so is the merge),
checked bitwise by bench/eval_profile.py and the tests; anything else (a full fine-tune, a run of another base, a model
by name) loads through `load_model` as before.
"""

from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path

from upo.errors import ModelResolutionError, UPOError
from upo.models import SMOLLM2_NAME, load_model, load_tokenizer, resolve_model_path
from upo.models.trained import base_model_name_or_path, resolve_base_model
from upo.run_folder import ADAPTER_CONFIG

# The files `save_pretrained` writes for a tokenizer (those present are compared).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model")


def tokenizer_files_key(folder: str | os.PathLike) -> str | None:
    """sha256 over a folder's tokenizer files (names and bytes); None when it has none."""
    folder = Path(folder)
    present = [name for name in TOKENIZER_FILES if (folder / name).is_file()]
    if not present:
        return None
    digest = hashlib.sha256()
    for name in present:
        digest.update(name.encode() + b"\0" + (folder / name).read_bytes() + b"\0")
    return digest.hexdigest()


def same_model(a: str, b: str) -> bool:
    """True when two names of models (folders, Hub IDs, known names) load the same files."""
    if a == b:
        return True
    try:
        a, b = resolve_model_path(a), resolve_model_path(b)
    except UPOError:
        return False
    return a == b or (os.path.isdir(a) and os.path.isdir(b) and os.path.realpath(a) == os.path.realpath(b))


class ComparisonModels:
    """Loads the runs of one comparison against `reference` (loaded from `reference_name`, with `tokenizer`)."""

    def __init__(self, reference, tokenizer, reference_name: str, dtype=None, device: str | None = None,
                 trust_remote_code: bool = False):
        self.reference, self.reference_name = reference, reference_name
        self.dtype, self.device, self.trust_remote_code = dtype, device, trust_remote_code
        try:
            path = resolve_model_path(reference_name)
        except UPOError:
            path = None
        key = tokenizer_files_key(path) if path is not None and os.path.isdir(path) else None
        self._reference_tokenizer_key = key or f"name:{reference_name}"
        self.tokenizers = {self._reference_tokenizer_key: tokenizer}

    def load(self, model_path: str):
        """`(model, tokenizer)` of a run folder, model folder or name, in eval mode (as `upo.models.load_model`)."""
        folder = Path(model_path)
        base = resolve_base_model(base_model_name_or_path(folder) or SMOLLM2_NAME)
        if not ((folder / ADAPTER_CONFIG).is_file() and same_model(base, self.reference_name)):
            return load_model(model_path, self.dtype, self.device, self.trust_remote_code)
        from peft import PeftModel

        try:  # merged: generation then costs what the base model costs
            model = PeftModel.from_pretrained(copy.deepcopy(self.reference), str(folder)).merge_and_unload()
        except (OSError, ValueError, KeyError, RuntimeError) as error:  # a damaged or mismatched adapter
            raise ModelResolutionError(f"Cannot load the LoRA adapter {folder} onto {base!r}: "
                                       f"{' '.join(str(error).split())[:300]}") from error
        return model.eval(), self.tokenizer(folder)

    def tokenizer(self, folder: Path):
        """The run's tokenizer (its folder's, else the reference's), read once per distinct files."""
        key = tokenizer_files_key(folder)
        if key is None:
            return self.tokenizers[self._reference_tokenizer_key]
        if key not in self.tokenizers:
            tokenizer = load_tokenizer(str(folder), trust_remote_code=self.trust_remote_code)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            self.tokenizers[key] = tokenizer
        return self.tokenizers[key]
