"""Models: the registry of RM-R1 checkpoints, download from the hub, the local cache.

``--model`` takes an alias from the registry (``registry.json`` in the package, with the
user's ``<config dir>/registry.json`` merged over it), ``hf://owner/repo[/file.gguf][@revision]``
for any GGUF on the hub, or a path to a ``.gguf`` file.

Pulled files live in the Hugging Face hub cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``) in
its own layout: ``blobs/<sha256>``, ``snapshots/<commit>/<file>`` linking to the blob, and
``refs/<branch>`` holding the commit. ``huggingface_hub``, ``hf cache`` and llama-cpp-python's
``Llama.from_pretrained`` all see the same files. Resolution looks on disk first, so a pulled
model needs no network and no hub call.

The bytes are fetched by a small loop over huggingface_hub's own HTTP client rather than by
``hf_hub_download``: since huggingface_hub 1.0 that deletes a partial download when it is
interrupted, and a 20 GB model should not start over after a Ctrl-C. Here the partial file
stays as ``blobs/<sha256>.incomplete`` (the name ``hf cache`` knows) and the next run resumes
it with a Range request; the sha256 is computed on the way and checked against the hub's LFS
hash before the file is moved into place.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmjudge.errors import ModelError, UsageError
from rmjudge.gguf import chat_template, context_length, read_metadata
from rmjudge.paths import user_cache_dir, user_config_dir
from rmjudge.system import available_memory, human_size, memory_warning  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from huggingface_hub import HfApi, ModelInfo
    from huggingface_hub.hf_api import RepoSibling

DEFAULT_QUANT = "Q4_K_M"
FAMILIES = ("instruct", "reasoning")

_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SHARD = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)
# Quant names as llama.cpp's quantize and the common GGUF publishers write them in file names.
_QUANT = re.compile(
    r"(?<![A-Za-z0-9])(I?Q[0-9]_[A-Z0-9_]*?|TQ[0-9]_[0-9]|MXFP4(?:_MOE)?|B?F16|F32)(?=[.\-]|$)",
    re.IGNORECASE,
)
# llama.cpp's llama_ftype (include/llama.h), stored as general.file_type.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0",
}  # fmt: skip

_RETRIES = 5  # attempts in a row without a byte received before a download gives up
_RETRY_WAIT_S = 1.0


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
        }


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


@dataclass(frozen=True)
class HubModel:
    """One row of ``models search``: a GGUF repository on the hub."""

    repo: str
    alias: str | None  # the registry alias this repo quantizes, when it is recognisable
    in_registry: bool  # listed in the alias's gguf_repos
    quants: list[str]
    downloads: int | None = None
    likes: int | None = None
    last_modified: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Entry:
    alias: str
    upstream: str | None
    family: str
    params: str | None
    scores: dict[str, float | None]
    repos: tuple[str, ...]


@dataclass(frozen=True)
class _HubTarget:
    """Where on the hub a model spec points: an alias's repos in order, or one repo."""

    label: str  # the spec as the user wrote it, for messages
    repos: tuple[str, ...]
    filename: str | None = None
    revision: str | None = None
    alias: str | None = None


class _NoNetwork(Exception):
    """The hub could not be reached (connection refused, DNS, timeout, HF_HUB_OFFLINE)."""


# --------------------------------------------------------------------------- environment


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE``, read now: huggingface_hub itself reads it once, at import."""
    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")


def hub_endpoint() -> str:
    """``HF_ENDPOINT``, read now (huggingface_hub.constants froze it at import)."""
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def hf_cache_dir() -> Path:
    """The hub cache, resolved the way huggingface_hub does it, but at call time."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if value := os.environ.get(name):
            return Path(os.path.expandvars(value)).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


# --------------------------------------------------------------------------- registry


def registry() -> dict[str, Any]:
    """The packaged registry with ``<config dir>/registry.json`` merged over it.

    An override may set ``default``/``default_quant``, add aliases, change fields of an
    existing alias (e.g. its ``gguf_repos``), or remove one by setting it to ``null``.
    """
    data: dict[str, Any] = json.loads(resources.files("rmjudge").joinpath("registry.json").read_text("utf-8"))
    override_path = user_config_dir() / "registry.json"
    if override_path.is_file():
        try:
            override = json.loads(override_path.read_text("utf-8"))
        except (OSError, ValueError) as error:
            raise ModelError(f"cannot read {override_path} ({error}): fix the JSON or delete the file") from None
        if not isinstance(override, dict) or not isinstance(override.get("models", {}), dict):
            raise ModelError(f'{override_path} must be a JSON object like {{"models": {{"alias": {{...}}}}}}')
        for key, value in override.items():
            if key != "models":
                data[key] = value
                continue
            for alias, entry in value.items():
                if entry is None:
                    data["models"].pop(alias, None)
                elif isinstance(entry, dict):
                    data["models"][alias] = {**data["models"].get(alias, {}), **entry}
                else:
                    raise ModelError(f"{override_path}: models.{alias} must be an object or null")
    for alias, entry in data["models"].items():
        repos = entry.get("gguf_repos")
        if not (isinstance(repos, list) and repos and all(isinstance(r, str) and r.count("/") == 1 for r in repos)):
            raise ModelError(f"registry alias {alias}: gguf_repos must be a non-empty list of 'owner/name' repos")
        if entry.get("family") not in FAMILIES:
            raise ModelError(f"registry alias {alias}: family must be one of {', '.join(FAMILIES)}")
    if data.get("default") not in data["models"]:
        raise ModelError(
            f"registry default {data.get('default')!r} is not an alias in the registry: fix {override_path}"
        )
    return data


def _entries(data: dict[str, Any] | None = None) -> dict[str, _Entry]:
    data = data or registry()
    return {
        alias: _Entry(
            alias=alias,
            upstream=entry.get("upstream"),
            family=entry["family"],
            params=entry.get("params"),
            scores=dict(entry.get("scores") or {}),
            repos=tuple(entry["gguf_repos"]),
        )
        for alias, entry in data["models"].items()
    }


def default_alias() -> str:
    return str(registry()["default"])


def default_quant() -> str:
    return str(registry().get("default_quant") or DEFAULT_QUANT)


# --------------------------------------------------------------------------- specs and quants


def quant_of(filename: str) -> str | None:
    """The quantization named in a GGUF file name (``X.i1-Q4_K_M.gguf`` -> ``Q4_K_M``)."""
    stem = re.sub(r"\.gguf$", "", filename.rsplit("/", 1)[-1], flags=re.IGNORECASE)
    found = _QUANT.findall(stem)
    return found[-1].upper() if found else None


def _matches_quant(filename: str, quant: str) -> bool:
    # Whole-token match, so Q4_K does not pick Q4_K_M and Q4_XS does not pick IQ4_XS.
    pattern = rf"(?<![A-Za-z0-9]){re.escape(quant)}(?![A-Za-z0-9_])"
    return re.search(pattern, filename.rsplit("/", 1)[-1], re.IGNORECASE) is not None


def _is_model_file(filename: str) -> bool:
    name = filename.rsplit("/", 1)[-1].lower()
    return name.endswith(".gguf") and "mmproj" not in name  # mmproj: a vision projector, not a model


def _parse_hf_uri(spec: str) -> tuple[str, str | None, str | None]:
    body, _, revision = spec[len("hf://") :].partition("@")
    parts = [part for part in body.split("/") if part]
    if len(parts) < 2 or any(part in (".", "..") for part in parts):
        raise UsageError(f"bad model {spec!r}: write hf://owner/repo[/file.gguf][@revision]")
    filename = "/".join(parts[2:]) or None
    if filename and not filename.lower().endswith(".gguf"):
        raise UsageError(f"bad model {spec!r}: the file part must be a .gguf file")
    return "/".join(parts[:2]), filename, revision or None


def _looks_like_path(spec: str) -> bool:
    return spec.lower().endswith(".gguf") or os.sep in spec or "/" in spec or spec.startswith((".", "~"))


def _unknown_alias(spec: str, aliases: list[str]) -> ModelError:
    close = difflib.get_close_matches(spec.lower(), aliases, n=3, cutoff=0.5)
    close += [alias for alias in aliases if spec.lower() in alias and alias not in close]
    hint = f"did you mean {' or '.join(close[:3])}?" if close else f"known aliases: {', '.join(aliases)}"
    return ModelError(
        f"unknown model {spec!r}: {hint} (`rmjudge models list` shows them; a .gguf path or hf://owner/repo also works)"
    )


def _classify(spec: str, revision: str | None = None) -> _HubTarget | Path:
    """A hub target for aliases and hf:// URIs, or the path of a local file."""
    if spec.startswith("hf://"):
        repo, filename, uri_revision = _parse_hf_uri(spec)
        if revision and uri_revision and revision != uri_revision:
            raise UsageError(f"two revisions given ({uri_revision} in {spec}, {revision} in --revision): give one")
        return _HubTarget(label=spec, repos=(repo,), filename=filename, revision=uri_revision or revision)
    path = Path(spec).expanduser()
    if path.exists():
        return path
    entries = _entries()
    alias = spec.lower()
    if alias in entries:
        return _HubTarget(label=alias, repos=entries[alias].repos, revision=revision, alias=alias)
    if _looks_like_path(spec):
        raise ModelError(
            f"model file not found: {spec} (pass a path to a .gguf file, an alias from `rmjudge models list`,"
            " or hf://owner/repo)"
        )
    raise _unknown_alias(spec, sorted(entries))


# --------------------------------------------------------------------------- sha256 memo


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


def _store_memo(key: str, digest: str) -> None:
    memo = _load_memo()
    memo[key] = digest
    memo_file = _memo_file()
    try:
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo))
        tmp.replace(memo_file)
    except OSError:
        pass  # a read-only cache dir only costs a re-hash next time


def file_sha256(path: Path) -> str:
    """sha256 of a model file, remembered by (path, size, mtime) so a 5 GB file is hashed once."""
    key = _memo_key(path)
    memo = _load_memo()
    if key in memo:
        return memo[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(8 * 1024 * 1024):
            digest.update(block)
    _store_memo(key, digest.hexdigest())
    return digest.hexdigest()


# --------------------------------------------------------------------------- the cache on disk


def _repo_dir(repo: str) -> Path:
    return hf_cache_dir() / ("models--" + repo.replace("/", "--"))


def _read_ref(repo_dir: Path, ref: str) -> str | None:
    try:
        commit = (repo_dir / "refs" / ref).read_text().strip()
    except OSError:
        return None
    return commit or None


def _write_ref(repo_dir: Path, ref: str, commit: str) -> None:
    ref_path = repo_dir / "refs" / ref
    if _read_ref(repo_dir, ref) != commit:
        ref_path.parent.mkdir(parents=True, exist_ok=True)
        ref_path.write_text(commit)


def _snapshot_commits(repo_dir: Path, revision: str | None) -> list[str]:
    """Snapshots to look in: the pinned one, else the one ``main`` points to, then the rest, newest first."""
    snapshots = repo_dir / "snapshots"
    if revision:
        commit = revision if _HEX40.fullmatch(revision) else _read_ref(repo_dir, revision)
        return [commit] if commit and (snapshots / commit).is_dir() else []
    try:
        others = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return []
    main = _read_ref(repo_dir, "main")
    ordered = [main] if main and (snapshots / main).is_dir() else []
    return ordered + [p.name for p in others if p.name != main and p.is_dir()]


def _snapshot_files(snapshot: Path) -> list[str]:
    """Repo-relative names of the model files present in a snapshot (dangling links skipped)."""
    return sorted(
        path.relative_to(snapshot).as_posix()
        for path in snapshot.rglob("*")
        if _is_model_file(path.name) and path.is_file()
    )


def _blob_sha256(path: Path) -> str | None:
    """The sha256 a cached file is stored under (its blob's name), without reading it."""
    if path.is_symlink():
        name = path.resolve().name
        return name if _HEX64.fullmatch(name) else None
    return None


def _cached_files(repo: str) -> list[tuple[Path, str, str]]:
    """(pointer, commit, filename) of every model file cached for a repo, one per blob."""
    repo_dir = _repo_dir(repo)
    seen: set[Path] = set()
    found: list[tuple[Path, str, str]] = []
    for commit in _snapshot_commits(repo_dir, None):
        snapshot = repo_dir / "snapshots" / commit
        for filename in _snapshot_files(snapshot):
            pointer = snapshot / filename
            blob = pointer.resolve()
            if blob not in seen:
                seen.add(blob)
                found.append((pointer, commit, filename))
    return found


def _find_cached(target: _HubTarget, quant: str | None) -> ResolvedModel | None:
    """The model on disk for a hub target, without any network. No quant: the default one, else any."""
    wanted: list[str | None] = [quant] if quant else [default_quant(), None]
    for want in wanted:
        for repo in target.repos:
            repo_dir = _repo_dir(repo)
            for commit in _snapshot_commits(repo_dir, target.revision):
                snapshot = repo_dir / "snapshots" / commit
                if target.filename:
                    names = [target.filename] if (snapshot / target.filename).is_file() else []
                else:
                    names = [n for n in _snapshot_files(snapshot) if want is None or _matches_quant(n, want)]
                    names = [n for n in names if not _SHARD.search(n)]
                if names:
                    filename = min(names, key=lambda n: (len(n), n))
                    pointer = snapshot / filename
                    return ResolvedModel(
                        path=pointer,
                        sha256=_blob_sha256(pointer),
                        alias=target.alias,
                        repo=repo,
                        revision=commit,
                        filename=filename,
                        quant=quant_of(filename),
                    )
    return None


def _link(blob: Path, pointer: Path) -> None:
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if pointer.is_symlink():
        pointer.unlink()  # a dangling link from an earlier removal
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), pointer)
    except OSError:
        shutil.move(str(blob), pointer)  # no symlinks (Windows without developer mode): as huggingface_hub does


# --------------------------------------------------------------------------- the hub


def _api() -> HfApi:
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub_endpoint(), library_name="rmjudge")


@contextlib.contextmanager
def _hub_errors(repo: str) -> Iterator[None]:
    """Turn what the hub client raises into _NoNetwork or a one-line ModelError.

    "Not found" errors pass through: the caller knows whether to try the next repo.
    """
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except (httpx2.TransportError, OfflineModeIsEnabled) as error:
        raise _NoNetwork(str(error)) from error
    except GatedRepoError:  # before RepositoryNotFoundError, its base class
        raise ModelError(
            f"{repo} is gated: accept its license at {hub_endpoint()}/{repo} and set HF_TOKEN to a token of that"
            " account"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError):
        raise
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status in (401, 403):
            raise ModelError(
                f"the hub refused access to {repo} (HTTP {status}): set HF_TOKEN to a valid token with access to it"
            ) from None
        raise ModelError(f"the hub answered HTTP {status} for {repo}: try again later") from None


def _no_network_error(target: _HubTarget, quant: str | None) -> ModelError:
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


def _fetch(target: _HubTarget, quant: str | None, progress: bool) -> ResolvedModel:
    """Find the file on the hub (repos in order) and download it unless it is already cached."""
    if hub_offline():
        raise _NoNetwork("HF_HUB_OFFLINE is set")
    from huggingface_hub import constants
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    wanted = quant or default_quant()
    if target.filename and quant and not _matches_quant(target.filename, quant):
        raise UsageError(f"{target.label} names a file, and --quant {quant} does not match it: give one of the two")
    api = _api()
    missing: list[str] = []
    no_revision: list[str] = []
    available: dict[str, list[str]] = {}
    split_only: list[str] = []
    for repo in target.repos:
        try:
            with _hub_errors(repo):
                info = api.model_info(
                    repo, revision=target.revision, files_metadata=True, timeout=constants.HF_HUB_ETAG_TIMEOUT
                )
        except RepositoryNotFoundError:
            missing.append(repo)
            continue
        except RevisionNotFoundError:
            no_revision.append(repo)
            continue
        if not info.sha:
            raise ModelError(f"the hub gave no commit for {repo}: try again later, or pin one with --revision")
        siblings = [s for s in info.siblings or [] if _is_model_file(s.rfilename)]
        if target.filename:
            chosen = [s for s in siblings if s.rfilename == target.filename]
            if not chosen:
                names = ", ".join(s.rfilename for s in siblings) or "none"
                raise ModelError(
                    f"{target.filename} is not in {repo}@{target.revision or 'main'} (GGUF files there: {names})"
                )
        else:
            matching = [s for s in siblings if _matches_quant(s.rfilename, wanted)]
            chosen = [s for s in matching if not _SHARD.search(s.rfilename)]
            if not chosen:
                if matching:
                    split_only.append(repo)
                available[repo] = sorted({quant_of(s.rfilename) or s.rfilename for s in siblings})
                continue
        sibling = min(chosen, key=lambda s: (len(s.rfilename), s.rfilename))
        return _download(repo, info.sha, target, sibling, progress)

    if split_only:
        raise ModelError(
            f"{wanted} of {target.label} is split into several files in {split_only[0]}, which rmjudge does not"
            " join: pick another --quant, or join the parts with llama-gguf-split and pass the path"
        )
    if any(available.values()):
        quants = sorted({q for qs in available.values() for q in qs})
        raise ModelError(
            f"no {wanted} file for {target.label} in {', '.join(available)}; available: {', '.join(quants)}"
            " (pass --quant NAME)"
        )
    if available:
        raise ModelError(f"{', '.join(available)} holds no GGUF file: pass hf://owner/repo of a GGUF repository")
    if no_revision:
        raise ModelError(
            f"revision {target.revision} not found in {', '.join(no_revision)}: pass a branch, tag or commit"
            " that exists there"
        )
    if target.alias:
        raise ModelError(
            f"no GGUF repository of {target.alias} was found on the hub (tried {', '.join(missing)}): add one to"
            f" gguf_repos in {user_config_dir() / 'registry.json'}, or pass --model hf://owner/repo"
        )
    raise ModelError(f"repository {missing[0]} not found on the hub: check the name (for a private repo, set HF_TOKEN)")


def _download(repo: str, commit: str, target: _HubTarget, sibling: RepoSibling, progress: bool) -> ResolvedModel:
    from huggingface_hub.utils import WeakFileLock

    filename = sibling.rfilename
    expected_sha = sibling.lfs.sha256 if sibling.lfs else None
    size = sibling.lfs.size if sibling.lfs else sibling.size
    etag = expected_sha or sibling.blob_id  # the cache names LFS blobs by sha256, others by git oid
    if not etag:
        raise ModelError(f"the hub lists no hash for {filename} in {repo}: download it yourself and pass its path")
    repo_dir = _repo_dir(repo)
    pointer = repo_dir / "snapshots" / commit / filename
    blob = repo_dir / "blobs" / etag
    sha256 = expected_sha
    if not pointer.is_file():
        blob.parent.mkdir(parents=True, exist_ok=True)
        # The same lock file huggingface_hub takes for this blob: two processes never write one file.
        lock = hf_cache_dir() / ".locks" / repo_dir.name / f"{etag}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with WeakFileLock(lock):
            if not blob.is_file():
                sha256 = _transfer(repo, commit, filename, blob, expected_sha, size, progress)
            if not pointer.is_file():
                _link(blob, pointer)
    if target.revision != commit:  # a branch or tag (main by default): remember where it pointed
        _write_ref(repo_dir, target.revision or "main", commit)
    if sha256:
        _store_memo(_memo_key(pointer), sha256)  # the caller's file_sha256 needs no second pass over the file
    return ResolvedModel(
        path=pointer,
        sha256=sha256 or _blob_sha256(pointer),
        alias=target.alias,
        repo=repo,
        revision=commit,
        filename=filename,
        quant=quant_of(filename),
    )


def _check_disk_space(directory: Path, needed: int) -> None:
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return  # cannot tell: let the download try
    if free < needed:
        raise ModelError(
            f"need {human_size(needed)} free in {directory}, have {human_size(free)}: free some space,"
            " or set HF_HOME to a bigger disk"
        )


@contextlib.contextmanager
def _progress_bar(label: str, total: int | None, done: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich bar on stderr, only for a terminal: yields the function that advances it."""
    from rich.console import Console

    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield lambda _: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(label, total=total, completed=done)
        yield lambda n: bar.advance(task, n)


def _transfer(
    repo: str, commit: str, filename: str, blob: Path, expected_sha: str | None, size: int | None, progress: bool
) -> str:
    """Download into ``<blob>.incomplete`` (resuming what is there), verify, move to ``blob``; return the sha256."""
    import httpx2
    from huggingface_hub import constants, hf_hub_url
    from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    partial = blob.with_name(blob.name + ".incomplete")
    have = partial.stat().st_size if partial.exists() else 0
    if size is not None and have > size:
        partial.unlink()
        have = 0
    if size is not None:
        _check_disk_space(blob.parent, size - have)
    digest = hashlib.sha256()
    if have:
        with partial.open("rb") as handle:
            while block := handle.read(8 * 1024 * 1024):
                digest.update(block)
    url = hf_hub_url(repo, filename, revision=commit, endpoint=hub_endpoint())
    headers = build_hf_headers(library_name="rmjudge")
    headers["Accept-Encoding"] = "identity"  # the byte counts must be the file's
    label = filename.rsplit("/", 1)[-1]
    tries_left = _RETRIES
    try:
        with _progress_bar(label, size, have, progress) as advance, partial.open("ab") as out:
            while size is None or have < size:
                request_headers = {**headers, "Range": f"bytes={have}-"} if have else headers
                try:
                    with get_session().stream(
                        "GET", url, headers=request_headers, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT
                    ) as response:
                        if response.status_code >= 400:
                            response.read()
                            with _hub_errors(repo):
                                hf_raise_for_status(response)
                        if have and not (
                            response.status_code == 206
                            and response.headers.get("Content-Range", "").startswith(f"bytes {have}-")
                        ):
                            # The server ignored the Range: start from the first byte again.
                            out.truncate(0)
                            advance(-have)
                            have, digest = 0, hashlib.sha256()
                        for chunk in response.iter_bytes():  # as they arrive: a cut keeps all but the last
                            out.write(chunk)
                            digest.update(chunk)
                            have += len(chunk)
                            advance(len(chunk))
                            tries_left = _RETRIES
                    if size is None:
                        break
                    if have < size:
                        raise httpx2.RemoteProtocolError("the connection ended before the whole file arrived")
                except httpx2.TransportError as error:
                    out.flush()
                    if tries_left <= 0:
                        raise ModelError(
                            f"download of {filename} from {repo} was interrupted ({error}): run the same command"
                            " again to resume it"
                        ) from None
                    tries_left -= 1
                    time.sleep(_RETRY_WAIT_S)
    except _NoNetwork as error:
        raise ModelError(f"lost the hub while downloading {filename} ({error}): run the same command again") from None
    except (RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError):
        raise ModelError(
            f"{filename} is no longer in {repo} at {commit[:12]}: run the command again to get the current file"
        ) from None
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise ModelError(
                f"the disk holding {blob.parent} is full: free some space and run the same command again to resume"
            ) from None
        raise
    finally:
        if partial.exists() and partial.stat().st_size == 0:
            partial.unlink()  # refused before the first byte (gated, gone): leave no trace
    actual = digest.hexdigest()
    if (size is not None and have != size) or (expected_sha and actual != expected_sha):
        partial.unlink(missing_ok=True)
        raise ModelError(
            f"{filename} from {repo} failed its check (sha256 {actual[:12]}…, size {have}; the hub lists"
            f" {(expected_sha or '?')[:12]}…, size {size}): the corrupt file was deleted, run the command again"
        )
    try:
        read_metadata(partial)
    except ModelError:
        partial.unlink(missing_ok=True)
        raise ModelError(
            f"{filename} from {repo} is not a valid GGUF file (deleted it): pick another file or quant"
        ) from None
    os.replace(partial, blob)
    return actual


# --------------------------------------------------------------------------- public API


def resolve_model(
    spec: str | None = None,
    *,
    quant: str | None = None,
    revision: str | None = None,
    progress: bool = True,
    pull: bool = True,
) -> ResolvedModel:
    """Turn ``--model`` (else ``RMJUDGE_MODEL``, else the registry default) into a GGUF on disk.

    A model already in the cache is returned without any network access. Otherwise, with
    ``pull`` it is downloaded (progress bar on stderr when ``progress`` and stderr is a terminal);
    without it, a ModelError says how to pull it.
    """
    spec = spec or os.environ.get("RMJUDGE_MODEL") or default_alias()
    target = _classify(spec, revision)
    if isinstance(target, Path):
        if quant or revision:
            raise UsageError(f"--quant and --revision apply to hub models, not to the local file {spec}")
        return _local_model(target)
    cached = _find_cached(target, quant)
    if cached is not None:
        return cached
    if not pull:
        how = f"rmjudge models pull {target.label}" + (f" --quant {quant}" if quant else "")
        raise ModelError(f"{target.label} is not on disk: run `{how}` first")
    try:
        return _fetch(target, quant, progress)
    except _NoNetwork:
        raise _no_network_error(target, quant) from None


def pull_model(
    spec: str | None = None, quant: str | None = None, revision: str | None = None, progress: bool = True
) -> ResolvedModel:
    """Ask the hub for the current file and download it unless it is cached (``models pull``).

    Without a network, a copy already on disk is returned instead.
    """
    spec = spec or os.environ.get("RMJUDGE_MODEL") or default_alias()
    target = _classify(spec, revision)
    if isinstance(target, Path):
        return _local_model(target)
    try:
        return _fetch(target, quant, progress)
    except _NoNetwork:
        cached = _find_cached(target, quant)
        if cached is not None:
            return cached
        raise _no_network_error(target, quant) from None


def _local_model(path: Path) -> ResolvedModel:
    if path.is_dir():
        raise ModelError(f"{path} is a directory: pass the .gguf file inside it")
    read_metadata(path)  # not a GGUF, or cut short: a one-line ModelError now rather than a crash in llama.cpp
    return ResolvedModel(path=path, sha256=_blob_sha256(path), quant=quant_of(path.name))


def model_info(spec: str | None = None, *, quant: str | None = None, revision: str | None = None) -> dict[str, Any]:
    """GGUF metadata of a model on disk (alias, hf:// URI or path); never downloads."""
    from rmjudge.prompts import detect_family

    resolved = resolve_model(spec, quant=quant, revision=revision, pull=False)
    metadata = read_metadata(resolved.path)
    entry = _entries().get(resolved.alias or "")
    file_type = metadata.get("general.file_type")
    template = chat_template(metadata)
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
        "quant": (FILE_TYPES.get(file_type) if isinstance(file_type, int) else None) or resolved.quant,
        "file_type": file_type,
        "context_length": context_length(metadata),
        "template_family": detect_family(metadata),
        "has_chat_template": template is not None,
        "gguf_version": metadata.get("gguf.version"),
        "tensor_count": metadata.get("gguf.tensor_count"),
        "upstream": entry.upstream if entry else None,
        "registry_family": entry.family if entry else None,
        "scores": entry.scores if entry else None,
    }


def list_models() -> list[LocalModel]:
    """Every registry alias with what is on disk for it, then other GGUFs found in the cache."""
    data = registry()
    entries = _entries(data)
    rows: list[LocalModel] = []
    known: set[str] = set()
    for alias, entry in entries.items():
        meta = {
            "upstream": entry.upstream,
            "family": entry.family,
            "params": entry.params,
            "scores": entry.scores,
            "default": alias == data["default"],
        }
        found = [(repo, *item) for repo in entry.repos for item in _cached_files(repo)]
        known.update(entry.repos)
        if not found:
            rows.append(LocalModel(alias=alias, spec=alias, **meta))
        rows += [_cached_row(alias, alias, *item, meta) for item in found]
    cache = hf_cache_dir()
    others = sorted(cache.glob("models--*--*")) if cache.is_dir() else []
    for repo_dir in others:
        repo = repo_dir.name[len("models--") :].replace("--", "/", 1)
        if repo in known:
            continue
        rows += [
            _cached_row(None, f"hf://{repo}/{filename}", repo, pointer, commit, filename, {})
            for pointer, commit, filename in _cached_files(repo)
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


def _list_hub_models(query: str, limit: int | None) -> list[ModelInfo]:
    """``HfApi.list_models(search=query, filter="gguf", expand=[...])``, minus its retry loop.

    list_models retries a refused connection for about 20 s before failing; offline, a search
    should fail at once. Same request, same pages (the hub's Link header), same ModelInfo.
    """
    from huggingface_hub import ModelInfo, constants
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    params: dict[str, Any] = {
        "search": query,
        "filter": ["gguf"],
        "expand": ["siblings", "downloads", "likes", "lastModified"],
    }
    if limit is not None:
        params["limit"] = limit
    headers = build_hf_headers(library_name="rmjudge")
    url: str | None = f"{hub_endpoint()}/api/models"
    found: list[ModelInfo] = []
    while url and (limit is None or len(found) < limit):
        response = get_session().get(url, params=params, headers=headers, timeout=constants.HF_HUB_ETAG_TIMEOUT)
        hf_raise_for_status(response)
        found += [ModelInfo(**{"siblings": None, **item}) for item in response.json()]
        url, params = response.links.get("next", {}).get("url"), {}  # the next link carries the query
    return found[:limit] if limit is not None else found


def search_models(query: str = "RM-R1", *, limit: int | None = None) -> list[HubModel]:
    """GGUF repositories on the hub whose name contains ``query``, most downloaded first."""
    if hub_offline():
        raise ModelError("HF_HUB_OFFLINE is set: `models search` asks the hub, unset it to search")
    entries = _entries()
    by_repo = {repo.lower(): alias for alias, entry in entries.items() for repo in entry.repos}
    by_upstream = {entry.upstream.split("/")[-1].lower(): alias for alias, entry in entries.items() if entry.upstream}
    try:
        with _hub_errors("the model search"):
            found = _list_hub_models(query, limit)
    except _NoNetwork:
        raise ModelError(
            f"cannot reach the hub ({hub_endpoint()}): `models search` needs the network;"
            " `models list` shows what is on disk"
        ) from None
    results = []
    for info in found:
        name = re.sub(r"(-i1)?-gguf$", "", info.id.split("/")[-1].lower())
        # bartowski and others prefix the uploader: "gaotang_RM-R1-...-GGUF".
        alias = by_repo.get(info.id.lower()) or next(
            (alias for upstream, alias in by_upstream.items() if name == upstream or name.endswith("_" + upstream)),
            None,
        )
        quants = sorted(
            {quant_of(s.rfilename) or s.rfilename for s in info.siblings or [] if _is_model_file(s.rfilename)}
        )
        results.append(
            HubModel(
                repo=info.id,
                alias=alias,
                in_registry=info.id.lower() in by_repo,
                quants=quants,
                downloads=info.downloads,
                likes=info.likes,
                last_modified=info.last_modified.isoformat() if info.last_modified else None,
            )
        )
    return sorted(results, key=lambda r: (-(r.downloads or 0), r.repo))


def remove_model(spec: str, *, quant: str | None = None) -> list[Path]:
    """Delete a pulled model from the cache (all its quants unless ``quant``); returns what went.

    Blobs still linked from another snapshot stay; a repo left with no files is removed whole,
    with its partial downloads.
    """
    target = _classify(spec)
    if isinstance(target, Path):
        return _remove_local(target)
    removed: list[Path] = []
    for repo in target.repos:
        repo_dir = _repo_dir(repo)
        for pointer, commit, filename in _cached_files(repo):
            if target.filename and filename != target.filename:
                continue
            if target.revision and commit != target.revision and _read_ref(repo_dir, target.revision) != commit:
                continue
            if quant and not _matches_quant(filename, quant):
                continue
            _remove_pointer(pointer, repo_dir)
            removed.append(pointer)
        if not quant and not target.filename:
            for partial in (repo_dir / "blobs").glob("*.incomplete"):
                partial.unlink(missing_ok=True)
                removed.append(partial)
        _drop_if_empty(repo_dir)
    return removed


def _remove_local(path: Path) -> list[Path]:
    cache = hf_cache_dir().resolve()
    absolute = path.absolute()
    try:
        relative = absolute.relative_to(cache)
    except ValueError:
        raise ModelError(
            f"{path} is not in the model cache ({cache}): rmjudge only removes what it pulled, delete it yourself"
        ) from None
    repo_dir = cache / relative.parts[0]
    blob = absolute.resolve()
    pointers = [p for p in (repo_dir / "snapshots").rglob("*") if p.is_symlink() and p.resolve() == blob]
    if not pointers and absolute.is_file():
        pointers = [absolute]
    for pointer in pointers:
        _remove_pointer(pointer, repo_dir)
    _drop_if_empty(repo_dir)
    return pointers


def _remove_pointer(pointer: Path, repo_dir: Path) -> None:
    blob = pointer.resolve() if pointer.is_symlink() else None
    pointer.unlink(missing_ok=True)
    if blob is not None and blob.is_file():
        snapshots = repo_dir / "snapshots"
        if not any(p.is_symlink() and p.resolve() == blob for p in snapshots.rglob("*")):
            blob.unlink()
    parent = pointer.parent
    while parent != repo_dir / "snapshots" and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def _drop_if_empty(repo_dir: Path) -> None:
    """Remove a repo's cache folder once no file is left in any snapshot."""
    snapshots = repo_dir / "snapshots"
    if repo_dir.is_dir() and not any(p.is_file() or p.is_symlink() for p in snapshots.rglob("*")):
        shutil.rmtree(repo_dir, ignore_errors=True)
        shutil.rmtree(hf_cache_dir() / ".locks" / repo_dir.name, ignore_errors=True)
