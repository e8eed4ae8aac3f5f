"""Unified Preference Optimization: user preferences (DPO) and designer objectives in one offline run."""

__version__ = "0.1.0"

# Imported lazily, so `upo env` and `upo --help` do not wait for torch and transformers.
_LAZY = {"UPOConfig": "upo.config", "UPOTrainer": "upo.trainer"}
__all__ = ["UPOConfig", "UPOTrainer", "__version__"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'upo' has no attribute {name!r}")
