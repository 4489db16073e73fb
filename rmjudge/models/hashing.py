"""sha256 of model files, remembered by (path, size, mtime) so that a 5 GB file is hashed once.

The memo is ``<cache dir>/sha256.json``. A file pulled from the hub needs no hashing at all: the
download computes its sha256 on the way and remembers it here, and its blob is named by it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from rmjudge.paths import user_cache_dir

_BLOCK = 8 * 1024 * 1024


def _memo_file() -> Path:
    return user_cache_dir() / "sha256.json"


def _memo_key(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def _load_memo() -> dict[str, str]:
    try:
        memo = json.loads(_memo_file().read_text())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def remember_sha256(path: Path, digest: str) -> None:
    """Record ``digest`` as the sha256 of ``path`` as it is now (size and mtime)."""
    memo = _load_memo()
    memo[_memo_key(path)] = digest
    memo_file = _memo_file()
    try:
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo))
        tmp.replace(memo_file)
    except OSError:
        pass  # a read-only cache dir only costs a re-hash next time


def hash_into(digest: hashlib._Hash, path: Path) -> None:
    """Feed a file's bytes to ``digest``, a block at a time."""
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)


def file_sha256(path: Path) -> str:
    """sha256 of a model file, remembered by (path, size, mtime) so a 5 GB file is hashed once."""
    memo = _load_memo()
    key = _memo_key(path)
    if key in memo:
        return memo[key]
    digest = hashlib.sha256()
    hash_into(digest, path)
    remember_sha256(path, digest.hexdigest())
    return digest.hexdigest()
