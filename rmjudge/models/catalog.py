"""What exists: the registry's models and what is on disk for them (``list_models``), GGUF
repositories on the hub (``search_models``), and removing a pulled model (``remove_model``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rmjudge.errors import ModelError
from rmjudge.models.environment import hub_endpoint, hub_offline
from rmjudge.models.hub import HubModel, NoNetwork, search_gguf_repos
from rmjudge.models.hubcache import (
    cached_files,
    cached_repos,
    drop_if_empty,
    read_ref,
    remove_cached_file,
    remove_partials,
    remove_pointer,
    repo_dir,
)
from rmjudge.models.naming import matches_quant, quant_of
from rmjudge.models.registry import entries, registry
from rmjudge.models.resolve import disk_repos
from rmjudge.models.spec import classify


@dataclass(frozen=True)
class LocalModel:
    """One row of ``models list``: a registry alias, or a GGUF found in the cache."""

    alias: str | None
    spec: str  # what to pass to --model
    upstream: str | None = None
    family: str | None = None
    params: str | None = None
    scores: dict[str, float | None] = field(default_factory=dict)
    default: bool = False
    repo: str | None = None
    filename: str | None = None
    quant: str | None = None
    revision: str | None = None
    size: int | None = None
    path: Path | None = None  # None: nothing on disk

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path) if self.path else None
        return data


def list_models() -> list[LocalModel]:
    """Every registry alias with what is on disk for it, then other GGUFs found in the cache."""
    data = registry()
    cached = cached_repos()
    rows: list[LocalModel] = []
    known: set[str] = set()
    for alias, entry in entries(data).items():
        meta = {
            "upstream": entry.upstream,
            "family": entry.family,
            "params": entry.params,
            "scores": entry.scores,
            "default": alias == data["default"],
        }
        repos = entry.serving_repos(cached)
        found = [(repo, *item) for repo in repos for item in cached_files(repo)]
        known.update(repos)
        if not found:
            rows.append(LocalModel(alias=alias, spec=alias, **meta))
        rows += [_cached_row(alias, alias, *item, meta) for item in found]
    for repo in cached:
        if repo not in known:
            rows += [
                _cached_row(None, f"hf://{repo}/{filename}", repo, pointer, commit, filename, {})
                for pointer, commit, filename in cached_files(repo)
            ]
    return rows


def _cached_row(
    alias: str | None, spec: str, repo: str, pointer: Path, commit: str, filename: str, meta: dict[str, Any]
) -> LocalModel:
    """One ``models list`` row for a GGUF in the Hugging Face cache."""
    return LocalModel(
        alias=alias,
        spec=spec,
        repo=repo,
        filename=filename,
        quant=quant_of(filename),
        revision=commit,
        size=pointer.stat().st_size,
        path=pointer,
        **meta,
    )


def search_models(query: str = "RM-R1", *, limit: int | None = None) -> list[HubModel]:
    """GGUF repositories on the hub whose name contains ``query``, most downloaded first."""
    if hub_offline():
        raise ModelError("HF_HUB_OFFLINE is set: `models search` asks the hub, unset it to search")
    try:
        return search_gguf_repos(query, entries(), limit)
    except NoNetwork:
        raise ModelError(
            f"cannot reach the hub ({hub_endpoint()}): `models search` needs the network;"
            " `models list` shows what is on disk"
        ) from None


def remove_model(spec: str, *, quant: str | None = None) -> list[Path]:
    """Delete a pulled model from the cache (all its quants unless ``quant``); returns what went.

    Blobs still linked from another snapshot stay; a repo left with no files is removed whole,
    with its partial downloads.
    """
    target = classify(spec)
    if isinstance(target, Path):
        return remove_cached_file(target)
    removed: list[Path] = []
    for repo in disk_repos(target):
        folder = repo_dir(repo)
        for pointer, commit, filename in cached_files(repo):
            if target.filename and filename != target.filename:
                continue
            if target.revision and commit != target.revision and read_ref(folder, target.revision) != commit:
                continue
            if quant and not matches_quant(filename, quant):
                continue
            remove_pointer(pointer, folder)
            removed.append(pointer)
        if not quant and not target.filename:
            removed += remove_partials(folder)
        drop_if_empty(folder)
    return removed
