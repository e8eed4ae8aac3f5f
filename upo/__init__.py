"""Unified Preference Optimization: user preferences (DPO) and designer objectives in one offline run."""

__version__ = "0.1.0"
