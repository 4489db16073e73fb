"""``--model`` to a GGUF on disk: from the cache without any network, else downloaded (``resolve_model``,
``pull_model``), and what a model on disk is (``model_info``).

A model spec is an alias (else ``RMJUDGE_MODEL``, else the registry's default), an
``hf://owner/repo[/file.gguf][@revision]`` URI or a path. Resolution looks on disk first, so a
pulled model needs no network and no hub call.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rmjudge.errors import ModelError, UsageError
from rmjudge.gguf import chat_template, context_length, quant_name, read_metadata
from rmjudge.models.download import download
from rmjudge.models.environment import hub_endpoint, hub_offline
from rmjudge.models.hub import NoNetwork
from rmjudge.models.hubcache import cached_repos, repo_dir, snapshot_commits, snapshot_files
from rmjudge.models.locate import locate
from rmjudge.models.naming import is_split_part, matches_quant
from rmjudge.models.registry import default_alias, default_quant, entries
from rmjudge.models.resolved import ResolvedModel, resolved_model
from rmjudge.models.spec import HubTarget, classify, located
from rmjudge.progress import Progress


def _classify_spec(spec: str | None, revision: str | None) -> HubTarget | Path:
    """``spec``, else ``RMJUDGE_MODEL``, else the default alias; a bad value from the environment says so."""
    if spec:
        return classify(spec, revision)
    from_env = os.environ.get("RMJUDGE_MODEL")
    if not from_env:
        return classify(default_alias(), revision)
    try:
        return classify(from_env, revision)
    except (ModelError, UsageError) as error:
        raise located(error, "RMJUDGE_MODEL") from None


def resolve_model(
    spec: str | None = None,
    *,
    quant: str | None = None,
    revision: str | None = None,
    progress: Progress | None = None,
    pull: bool = True,
) -> ResolvedModel:
    """Turn ``--model`` (else ``RMJUDGE_MODEL``, else the registry default) into a GGUF on disk.

    A model already in the cache is returned without any network access. Otherwise, with ``pull``
    it is downloaded (reporting to ``progress``); without it, a ModelError says how to pull it.
    """
    target = _classify_spec(spec, revision)
    if isinstance(target, Path):
        if quant or revision:
            raise UsageError(f"--quant and --revision apply to hub models, not to the local file {target}")
        return _local_model(target)
    cached = find_cached(target, quant)
    if cached is not None:
        return cached
    if not pull:
        how = f"rmjudge models pull {target.label}" + (f" --quant {quant}" if quant else "")
        raise ModelError(f"{target.label} is not on disk: run `{how}` first")
    try:
        return _fetch(target, quant, progress)
    except NoNetwork:
        raise _no_network_error(target, quant) from None


def pull_model(
    spec: str | None = None,
    quant: str | None = None,
    revision: str | None = None,
    progress: Progress | None = None,
) -> ResolvedModel:
    """Ask the hub for the current file and download it unless it is cached (``models pull``).

    Without a network, a copy already on disk is returned instead.
    """
    target = _classify_spec(spec, revision)
    if isinstance(target, Path):
        return _local_model(target)
    try:
        return _fetch(target, quant, progress)
    except NoNetwork:
        cached = find_cached(target, quant)
        if cached is not None:
            return cached
        raise _no_network_error(target, quant) from None


def _local_model(path: Path) -> ResolvedModel:
    if path.is_dir():
        raise ModelError(f"{path} is a directory: pass the .gguf file inside it")
    read_metadata(path)  # not a GGUF, or cut short: a one-line ModelError now rather than a crash in llama.cpp
    return resolved_model(path)


def disk_repos(target: HubTarget) -> tuple[str, ...]:
    """The repositories whose cached files serve ``target`` (for an alias, see ``Entry.serving_repos``)."""
    entry = entries().get(target.alias or "")
    return target.repos if entry is None else entry.serving_repos(cached_repos())


def _cached_names(snapshot: Path, target: HubTarget, want: str | None) -> list[str]:
    if target.filename:
        return [target.filename] if (snapshot / target.filename).is_file() else []
    names = [n for n in snapshot_files(snapshot) if want is None or matches_quant(n, want)]
    return [n for n in names if not is_split_part(n)]


def find_cached(target: HubTarget, quant: str | None) -> ResolvedModel | None:
    """The model on disk for a hub target, without any network. No quant: the default one, else any."""
    wanted: list[str | None] = [quant] if quant else [default_quant(), None]
    repos = disk_repos(target)
    for want in wanted:
        for repo in repos:
            folder = repo_dir(repo)
            for commit in snapshot_commits(folder, target.revision):
                names = _cached_names(folder / "snapshots" / commit, target, want)
                if names:
                    filename = min(names, key=lambda n: (len(n), n))
                    pointer = folder / "snapshots" / commit / filename
                    return resolved_model(pointer, alias=target.alias, repo=repo, revision=commit, filename=filename)
    return None


def _fetch(target: HubTarget, quant: str | None, progress: Progress | None) -> ResolvedModel:
    """Find the file on the hub and download it unless it is already cached."""
    if hub_offline():
        raise NoNetwork("HF_HUB_OFFLINE is set")
    found = locate(target, quant)
    file = found.file
    pointer, sha256 = download(file, target.revision or "main", progress)
    return resolved_model(
        pointer,
        sha256=sha256,
        alias=target.alias,
        repo=file.repo,
        revision=file.commit,
        filename=file.filename,
        note=found.note,
    )


def _no_network_error(target: HubTarget, quant: str | None) -> ModelError:
    pull = f"rmjudge models pull {target.label}" + (f" --quant {quant}" if quant else "")
    what = target.label + (f" ({quant})" if quant else "")
    if hub_offline():
        return ModelError(
            f"HF_HUB_OFFLINE is set and {what} is not on disk: unset it and run `{pull}`, or pass --model PATH.gguf"
        )
    return ModelError(
        f"cannot reach the hub ({hub_endpoint()}) and {what} is not on disk: run `{pull}` once online,"
        " or pass --model PATH.gguf"
    )


def model_info(spec: str | None = None, *, quant: str | None = None, revision: str | None = None) -> dict[str, Any]:
    """GGUF metadata of a model on disk (alias, hf:// URI or path); never downloads."""
    from rmjudge.prompts import detect_family

    resolved = resolve_model(spec, quant=quant, revision=revision, pull=False)
    metadata = read_metadata(resolved.path)
    entry = entries().get(resolved.alias or "")
    return {
        "alias": resolved.alias,
        "path": str(resolved.path),
        "repo": resolved.repo,
        "filename": resolved.filename,
        "revision": resolved.revision,
        "sha256": resolved.sha256,
        "size": resolved.path.stat().st_size,
        "name": metadata.get("general.name"),
        "architecture": metadata.get("general.architecture"),
        "parameters": metadata.get("general.size_label") or (entry.params if entry else None),
        "quant": quant_name(metadata) or resolved.quant,
        "file_type": metadata.get("general.file_type"),
        "context_length": context_length(metadata),
        "template_family": detect_family(metadata),
        "has_chat_template": chat_template(metadata) is not None,
        "gguf_version": metadata.get("gguf.version"),
        "tensor_count": metadata.get("gguf.tensor_count"),
        "upstream": entry.upstream if entry else None,
        "registry_family": entry.family if entry else None,
        "scores": entry.scores if entry else None,
    }
