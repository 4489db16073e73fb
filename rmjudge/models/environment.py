"""The Hugging Face environment variables, read when asked rather than at import.

huggingface_hub reads ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and the cache location once, when it is
first imported; rmjudge reads them at call time, so a test or a long-lived process that changes
them is obeyed.
"""

from __future__ import annotations

import os
from pathlib import Path


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set."""
    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")


def hub_endpoint() -> str:
    """``HF_ENDPOINT``, else the public hub."""
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def hf_cache_dir() -> Path:
    """The hub cache, resolved the way huggingface_hub does it: ``HF_HUB_CACHE``, else ``HF_HOME/hub``."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if value := os.environ.get(name):
            return Path(os.path.expandvars(value)).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"
