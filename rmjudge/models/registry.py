"""The registry of RM-R1 checkpoints: ``registry.json`` beside this module, with the user's merged over it.

Each alias names its upstream checkpoint, its prompt family, the paper's scores and the GGUF
repositories on the hub that quantize it, tried in order. ``<config dir>/registry.json`` may set
``default``/``default_quant``, add aliases, change fields of one, or remove one with ``null``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from rmjudge.errors import ModelError
from rmjudge.models.naming import checkpoint_of
from rmjudge.paths import user_config_dir
from rmjudge.prompts import FAMILIES

DEFAULT_QUANT = "Q4_K_M"


@dataclass(frozen=True)
class Entry:
    """One alias of the registry."""

    alias: str
    upstream: str | None  # the full-precision checkpoint on the hub, "owner/name"
    family: str
    params: str | None
    scores: dict[str, float | None]
    repos: tuple[str, ...]  # GGUF repositories, tried in order

    def quantized_in(self, repo: str) -> bool:
        """``repo`` holds GGUFs of this checkpoint: it is listed, or its name says so
        (``owner/<upstream>-GGUF``, ``-i1-GGUF``, ``-Q4_K_M-GGUF``, ``owner/uploader_<upstream>-GGUF``)."""
        if repo.lower() in (listed.lower() for listed in self.repos):
            return True
        if not self.upstream:
            return False
        name, upstream = checkpoint_of(repo), self.upstream.split("/")[-1].lower()
        return name == upstream or name.endswith("_" + upstream)

    def serving_repos(self, cached: list[str]) -> tuple[str, ...]:
        """Where files on disk serve this alias: its repositories, then any other cached GGUF repository
        of its checkpoint (the one a hub search found when the registry's were gone)."""
        return (*self.repos, *(repo for repo in cached if repo not in self.repos and self.quantized_in(repo)))


def user_registry_path() -> Path:
    return user_config_dir() / "registry.json"


def _merge_override(data: dict[str, Any], override_path: Path) -> None:
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


def _validate(data: dict[str, Any], override_path: Path) -> None:
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


def registry() -> dict[str, Any]:
    """The packaged registry with ``<config dir>/registry.json`` merged over it."""
    packaged = resources.files("rmjudge.models").joinpath("registry.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(packaged)
    override_path = user_registry_path()
    if override_path.is_file():
        _merge_override(data, override_path)
    _validate(data, override_path)
    return data


def entries(data: dict[str, Any] | None = None) -> dict[str, Entry]:
    """The registry's aliases, as ``Entry`` records."""
    data = data or registry()
    return {
        alias: Entry(
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
