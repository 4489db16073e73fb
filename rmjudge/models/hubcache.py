"""The Hugging Face hub cache on disk, in huggingface_hub's own layout.

``models--<owner>--<name>/blobs/<sha256>`` holds a file's bytes (``<sha256>.incomplete`` while it
downloads), ``snapshots/<commit>/<file>`` links to the blob, and ``refs/<branch>`` holds the commit
the branch pointed to. ``huggingface_hub``, ``hf cache`` and llama-cpp-python's
``Llama.from_pretrained`` all see the files rmjudge puts here, and rmjudge sees theirs.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from rmjudge.errors import ModelError
from rmjudge.models.environment import hf_cache_dir
from rmjudge.models.naming import is_model_file

_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PREFIX = "models--"


def repo_dir(repo: str) -> Path:
    return hf_cache_dir() / (_PREFIX + repo.replace("/", "--"))


def cached_repos() -> list[str]:
    """Every model repository with a folder in the cache, by name."""
    cache = hf_cache_dir()
    folders = sorted(cache.glob(f"{_PREFIX}*--*")) if cache.is_dir() else []
    return [folder.name[len(_PREFIX) :].replace("--", "/", 1) for folder in folders]


def lock_file(folder: Path, etag: str) -> Path:
    """The lock file huggingface_hub takes for a blob: two processes never write one file."""
    return hf_cache_dir() / ".locks" / folder.name / f"{etag}.lock"


def read_ref(folder: Path, ref: str) -> str | None:
    try:
        commit = (folder / "refs" / ref).read_text().strip()
    except OSError:
        return None
    return commit or None


def write_ref(folder: Path, ref: str, commit: str) -> None:
    ref_path = folder / "refs" / ref
    if read_ref(folder, ref) != commit:
        ref_path.parent.mkdir(parents=True, exist_ok=True)
        ref_path.write_text(commit)


def snapshot_commits(folder: Path, revision: str | None) -> list[str]:
    """Snapshots to look in: the pinned one, else the one ``main`` points to, then the rest, newest first."""
    snapshots = folder / "snapshots"
    if revision:
        commit = revision if _HEX40.fullmatch(revision) else read_ref(folder, revision)
        return [commit] if commit and (snapshots / commit).is_dir() else []
    try:
        others = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return []
    main = read_ref(folder, "main")
    ordered = [main] if main and (snapshots / main).is_dir() else []
    return ordered + [p.name for p in others if p.name != main and p.is_dir()]


def snapshot_files(snapshot: Path) -> list[str]:
    """Repo-relative names of the model files present in a snapshot (dangling links skipped)."""
    return sorted(
        path.relative_to(snapshot).as_posix()
        for path in snapshot.rglob("*")
        if is_model_file(path.name) and path.is_file()
    )


def blob_sha256(path: Path) -> str | None:
    """The sha256 a cached file is stored under (its blob's name), without reading it."""
    if path.is_symlink():
        name = path.resolve().name
        return name if _HEX64.fullmatch(name) else None
    return None


def cached_files(repo: str) -> list[tuple[Path, str, str]]:
    """(pointer, commit, filename) of every model file cached for a repo, one per blob."""
    folder = repo_dir(repo)
    seen: set[Path] = set()
    found: list[tuple[Path, str, str]] = []
    for commit in snapshot_commits(folder, None):
        snapshot = folder / "snapshots" / commit
        for filename in snapshot_files(snapshot):
            pointer = snapshot / filename
            blob = pointer.resolve()
            if blob not in seen:
                seen.add(blob)
                found.append((pointer, commit, filename))
    return found


def link(blob: Path, pointer: Path) -> None:
    """Make ``pointer`` (a snapshot's file) point at ``blob``."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if pointer.is_symlink():
        pointer.unlink()  # a dangling link from an earlier removal
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), pointer)
    except OSError:
        shutil.move(str(blob), pointer)  # no symlinks (Windows without developer mode): as huggingface_hub does


def remove_pointer(pointer: Path, folder: Path) -> None:
    """Remove a snapshot's file, its blob unless another snapshot links to it, and emptied folders."""
    blob = pointer.resolve() if pointer.is_symlink() else None
    pointer.unlink(missing_ok=True)
    if blob is not None and blob.is_file():
        snapshots = folder / "snapshots"
        if not any(p.is_symlink() and p.resolve() == blob for p in snapshots.rglob("*")):
            blob.unlink()
    parent = pointer.parent
    while parent != folder / "snapshots" and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def remove_partials(folder: Path) -> list[Path]:
    """Delete a repo's interrupted downloads; returns them."""
    removed = []
    for partial in (folder / "blobs").glob("*.incomplete"):
        partial.unlink(missing_ok=True)
        removed.append(partial)
    return removed


def drop_if_empty(folder: Path) -> None:
    """Remove a repo's cache folder once no file is left in any snapshot."""
    snapshots = folder / "snapshots"
    if folder.is_dir() and not any(p.is_file() or p.is_symlink() for p in snapshots.rglob("*")):
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(hf_cache_dir() / ".locks" / folder.name, ignore_errors=True)


def remove_cached_file(path: Path) -> list[Path]:
    """Delete a file in the cache given by its path (and every snapshot's link to the same blob)."""
    cache = hf_cache_dir().resolve()
    absolute = path.absolute()
    try:
        relative = absolute.relative_to(cache)
    except ValueError:
        raise ModelError(
            f"{path} is not in the model cache ({cache}): rmjudge only removes what it pulled, delete it yourself"
        ) from None
    folder = cache / relative.parts[0]
    blob = absolute.resolve()
    pointers = [p for p in (folder / "snapshots").rglob("*") if p.is_symlink() and p.resolve() == blob]
    if not pointers and absolute.is_file():
        pointers = [absolute]
    for pointer in pointers:
        remove_pointer(pointer, folder)
    drop_if_empty(folder)
    return pointers
