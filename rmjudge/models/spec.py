"""What ``--model`` names: a registry alias, ``hf://owner/repo[/file.gguf][@revision]``, or a local GGUF path."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

from rmjudge.errors import ModelError, RmjudgeError, UsageError
from rmjudge.models.registry import entries


@dataclass(frozen=True)
class HubTarget:
    """Where on the hub a model spec points: an alias's repos in order, or one repo."""

    label: str  # the spec as the user wrote it, for messages
    repos: tuple[str, ...]
    filename: str | None = None
    revision: str | None = None
    alias: str | None = None


def parse_hf_uri(spec: str) -> tuple[str, str | None, str | None]:
    """``hf://owner/repo[/file.gguf][@revision]`` as (repo, file, revision)."""
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


def classify(spec: str, revision: str | None = None) -> HubTarget | Path:
    """A hub target for aliases and hf:// URIs, or the path of a local file. Never touches the network."""
    if spec.startswith("hf://"):
        repo, filename, uri_revision = parse_hf_uri(spec)
        if revision and uri_revision and revision != uri_revision:
            raise UsageError(f"two revisions given ({uri_revision} in {spec}, {revision} in --revision): give one")
        return HubTarget(label=spec, repos=(repo,), filename=filename, revision=uri_revision or revision)
    path = Path(spec).expanduser()
    if path.exists():
        return path
    known = entries()
    alias = spec.lower()
    if alias in known:
        return HubTarget(label=alias, repos=known[alias].repos, revision=revision, alias=alias)
    if _looks_like_path(spec):
        raise ModelError(
            f"model file not found: {spec} (pass a path to a .gguf file, an alias from `rmjudge models list`,"
            " or hf://owner/repo)"
        )
    raise _unknown_alias(spec, sorted(known))


def located(error: RmjudgeError, where: str) -> RmjudgeError:
    """The same error (class, exit code), its message prefixed with where the bad value was written."""
    return type(error)(f"{where}: {error}")


def check_model_spec(spec: str, where: str) -> None:
    """Reject, without any network, a model value that can never resolve: an unknown alias, a missing
    file, a malformed hf:// URI. ``where`` names its origin for the message ("<file>: model")."""
    try:
        classify(spec)
    except (ModelError, UsageError) as error:
        raise located(error, where) from None
