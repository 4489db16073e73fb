"""``ResolvedModel``: a GGUF file on disk and where it came from; ``resolved_model`` is the one way to make one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rmjudge.models.hubcache import blob_sha256
from rmjudge.models.naming import quant_of


@dataclass(frozen=True)
class ResolvedModel:
    """A GGUF file on disk, and where it came from."""

    path: Path
    sha256: str | None = None  # known without hashing when the hub gave it
    alias: str | None = None
    repo: str | None = None
    revision: str | None = None  # the commit the file was taken from
    filename: str | None = None  # path inside the repo
    quant: str | None = None
    # One line for the user when the file is not where the registry said: which repository a hub
    # search found in place of the alias's missing ones. None otherwise.
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """What ``models pull --json`` prints: where the file came from, where it is, its size and hash."""
        return {
            "alias": self.alias,
            "repo": self.repo,
            "filename": self.filename,
            "revision": self.revision,
            "quant": self.quant,
            "path": str(self.path),
            "size": self.path.stat().st_size,
            "sha256": self.sha256,
            "note": self.note,
        }


def resolved_model(
    path: Path,
    *,
    sha256: str | None = None,
    alias: str | None = None,
    repo: str | None = None,
    revision: str | None = None,
    filename: str | None = None,
    note: str | None = None,
) -> ResolvedModel:
    """A ResolvedModel for ``path``: its quant read from the file name, its sha256 from the blob's
    name when the caller does not know it (no file is read)."""
    return ResolvedModel(
        path=path,
        sha256=sha256 or blob_sha256(path),
        alias=alias,
        repo=repo,
        revision=revision,
        filename=filename,
        quant=quant_of(filename or path.name),
        note=note,
    )
