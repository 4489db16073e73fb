"""The resumable, verified download of one file from the hub into the cache.

The bytes are fetched by a small loop over huggingface_hub's own HTTP client rather than by
``hf_hub_download``: since huggingface_hub 1.0 that deletes a partial download when it is
interrupted, and a 20 GB model should not start over after a Ctrl-C. Here the partial file stays
as ``blobs/<sha256>.incomplete`` (the name ``hf cache`` knows) and the next run resumes it with a
Range request; the sha256 is computed on the way and checked against the hub's LFS hash before the
file is moved into place. A cut connection is retried at once, ``_RETRIES`` times in a row
without a byte received.

Progress is reported, never drawn: the caller passes a ``rmjudge.progress.Progress`` (the command
line's bar) or nothing.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from rmjudge.errors import ModelError
from rmjudge.gguf import read_metadata
from rmjudge.models.environment import hub_endpoint
from rmjudge.models.hashing import hash_into, remember_sha256
from rmjudge.models.hub import NoNetwork, hub_errors
from rmjudge.models.hubcache import link, lock_file, repo_dir, write_ref
from rmjudge.progress import Progress, Update, no_progress
from rmjudge.system import human_size

if TYPE_CHECKING:
    from httpx2 import Response
    from huggingface_hub.hf_api import RepoSibling

_RETRIES = 5  # attempts in a row without a byte received before a download gives up
_RETRY_WAIT_S = 1.0


@dataclass(frozen=True)
class RemoteFile:
    """A file of a repository at one commit, as the hub lists it."""

    repo: str
    commit: str
    filename: str
    sha256: str | None  # the LFS sha256; None for a file kept in git itself
    size: int | None
    etag: str  # what the cache names its blob: the sha256, else the git blob id

    @classmethod
    def from_sibling(cls, repo: str, commit: str, sibling: RepoSibling) -> RemoteFile:
        sha256 = sibling.lfs.sha256 if sibling.lfs else None
        etag = sha256 or sibling.blob_id
        if not etag:
            raise ModelError(
                f"the hub lists no hash for {sibling.rfilename} in {repo}: download it yourself and pass its path"
            )
        size = sibling.lfs.size if sibling.lfs else sibling.size
        return cls(repo=repo, commit=commit, filename=sibling.rfilename, sha256=sha256, size=size, etag=etag)


def download(file: RemoteFile, ref: str, progress: Progress | None = None) -> tuple[Path, str | None]:
    """Put ``file`` into the cache unless it is there, point ``ref`` (a branch or tag) at its commit;
    returns the snapshot's path and the sha256 when known."""
    from huggingface_hub.utils import WeakFileLock

    folder = repo_dir(file.repo)
    pointer = folder / "snapshots" / file.commit / file.filename
    blob = folder / "blobs" / file.etag
    sha256 = file.sha256
    if not pointer.is_file():
        blob.parent.mkdir(parents=True, exist_ok=True)
        lock = lock_file(folder, file.etag)
        lock.parent.mkdir(parents=True, exist_ok=True)
        with WeakFileLock(lock):
            if not blob.is_file():
                sha256 = _fetch_blob(file, blob, progress)
            if not pointer.is_file():
                link(blob, pointer)
    if ref != file.commit:  # a branch or tag (main by default): remember where it pointed
        write_ref(folder, ref, file.commit)
    if sha256:
        remember_sha256(pointer, sha256)  # the caller's file_sha256 needs no second pass over the file
    return pointer, sha256


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


class _Receiver:
    """Appends what the hub sends to the partial file, hashing it on the way, and counts retries."""

    def __init__(self, out: BinaryIO, have: int, digest: hashlib._Hash, update: Update) -> None:
        self.out, self.have, self.digest, self.update = out, have, digest, update
        self.tries_left = _RETRIES

    def headers(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, "Range": f"bytes={self.have}-"} if self.have else base

    def receive(self, response: Response) -> None:
        if self.have and not (
            response.status_code == 206 and response.headers.get("Content-Range", "").startswith(f"bytes {self.have}-")
        ):
            # The server ignored the Range: start from the first byte again.
            self.out.truncate(0)
            self.update(advance=-self.have)
            self.have, self.digest = 0, hashlib.sha256()
        for chunk in response.iter_bytes():  # as they arrive: a cut keeps all but the last
            self.out.write(chunk)
            self.digest.update(chunk)
            self.have += len(chunk)
            self.update(advance=len(chunk))
            self.tries_left = _RETRIES

    def retry_after(self, file: RemoteFile, error: Exception) -> None:
        """Wait before the next attempt, or give up with a message that says a rerun resumes."""
        self.out.flush()
        if self.tries_left <= 0:
            raise ModelError(
                f"download of {file.filename} from {file.repo} was interrupted ({error}): run the same command"
                " again to resume it"
            ) from None
        self.tries_left -= 1
        time.sleep(_RETRY_WAIT_S)


def _receive_all(file: RemoteFile, receiver: _Receiver) -> None:
    import httpx2
    from huggingface_hub import constants, hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = hf_hub_url(file.repo, file.filename, revision=file.commit, endpoint=hub_endpoint())
    headers = build_hf_headers(library_name="rmjudge")
    headers["Accept-Encoding"] = "identity"  # the byte counts must be the file's
    while file.size is None or receiver.have < file.size:
        try:
            with get_session().stream(
                "GET", url, headers=receiver.headers(headers), timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    with hub_errors(file.repo):
                        hf_raise_for_status(response)
                receiver.receive(response)
            if file.size is None:
                return
            if receiver.have < file.size:
                raise httpx2.RemoteProtocolError("the connection ended before the whole file arrived")
        except httpx2.TransportError as error:
            receiver.retry_after(file, error)


def _fetch_blob(file: RemoteFile, blob: Path, progress: Progress | None) -> str:
    """Download into ``<blob>.incomplete`` (resuming what is there), verify, move to ``blob``; return the sha256."""
    from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    partial = blob.with_name(blob.name + ".incomplete")
    have = partial.stat().st_size if partial.exists() else 0
    if file.size is not None and have > file.size:
        partial.unlink()
        have = 0
    if file.size is not None:
        _check_disk_space(blob.parent, file.size - have)
    digest = hashlib.sha256()
    if have:
        hash_into(digest, partial)
    label = file.filename.rsplit("/", 1)[-1]
    try:
        bar = (progress or no_progress)(file.size, unit="bytes", description=label, completed=have)
        with bar as update, partial.open("ab") as out:
            receiver = _Receiver(out, have, digest, update)
            _receive_all(file, receiver)
    except NoNetwork as error:
        raise ModelError(
            f"lost the hub while downloading {file.filename} ({error}): run the same command again"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError):
        raise ModelError(
            f"{file.filename} is no longer in {file.repo} at {file.commit[:12]}: run the command again to get the"
            " current file"
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
    _verify(file, partial, receiver.have, receiver.digest.hexdigest())
    os.replace(partial, blob)
    return receiver.digest.hexdigest()


def _verify(file: RemoteFile, partial: Path, have: int, actual: str) -> None:
    """The download is the file the hub lists (size, sha256) and a GGUF; else it is deleted."""
    if (file.size is not None and have != file.size) or (file.sha256 and actual != file.sha256):
        partial.unlink(missing_ok=True)
        raise ModelError(
            f"{file.filename} from {file.repo} failed its check (sha256 {actual[:12]}…, size {have}; the hub lists"
            f" {(file.sha256 or '?')[:12]}…, size {file.size}): the corrupt file was deleted, run the command again"
        )
    try:
        read_metadata(partial)
    except ModelError:
        partial.unlink(missing_ok=True)
        raise ModelError(
            f"{file.filename} from {file.repo} is not a valid GGUF file (deleted it): pick another file or quant"
        ) from None
