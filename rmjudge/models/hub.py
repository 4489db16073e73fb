"""Calls to the Hugging Face hub, and what its errors mean to a user.

Every call reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` now (see ``environment``). A hub that
cannot be reached raises ``NoNetwork``, which the caller turns into advice that fits (pull once
online, or use what is on disk); a refusal becomes a one-line ModelError; "not found" passes
through, since the caller knows whether another repository is worth a try.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from rmjudge.errors import ModelError
from rmjudge.models.environment import hub_endpoint
from rmjudge.models.naming import quants_in
from rmjudge.models.registry import Entry

if TYPE_CHECKING:
    from huggingface_hub import HfApi, ModelInfo


class NoNetwork(Exception):
    """The hub could not be reached (connection refused, DNS, timeout, HF_HUB_OFFLINE)."""


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


def hub_client() -> HfApi:
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub_endpoint(), library_name="rmjudge")


@contextlib.contextmanager
def hub_errors(repo: str) -> Iterator[None]:
    """Turn what the hub client raises into NoNetwork or a one-line ModelError.

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
        raise NoNetwork(str(error)) from error
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


def repo_info(repo: str, revision: str | None) -> ModelInfo:
    """A repository's files at ``revision`` (default: main) with their sizes and LFS hashes."""
    from huggingface_hub import constants

    with hub_errors(repo):
        return hub_client().model_info(
            repo, revision=revision, files_metadata=True, timeout=constants.HF_HUB_ETAG_TIMEOUT
        )


def _list_gguf_repos(query: str, limit: int | None) -> list[ModelInfo]:
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


def search_gguf_repos(query: str, known: dict[str, Entry], limit: int | None = None) -> list[HubModel]:
    """GGUF repositories on the hub whose name contains ``query``, most downloaded first, each
    labelled with the registry alias it quantizes when that is recognisable."""
    with hub_errors("the model search"):
        found = _list_gguf_repos(query, limit)
    listed = {repo.lower() for entry in known.values() for repo in entry.repos}
    results = [
        HubModel(
            repo=info.id,
            alias=next((entry.alias for entry in known.values() if entry.quantized_in(info.id)), None),
            in_registry=info.id.lower() in listed,
            quants=quants_in([sibling.rfilename for sibling in info.siblings or []]),
            downloads=info.downloads,
            likes=info.likes,
            last_modified=info.last_modified.isoformat() if info.last_modified else None,
        )
        for info in found
    ]
    return sorted(results, key=lambda r: (-(r.downloads or 0), r.repo))
