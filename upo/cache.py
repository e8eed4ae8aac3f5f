"""Where upo keeps what it builds once: converted models, designer scores, reference log-probs."""

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """The upo cache root: `$UPO_CACHE` if set, else `~/.cache/upo`."""
    return Path(os.environ.get("UPO_CACHE") or Path.home() / ".cache" / "upo").expanduser()
