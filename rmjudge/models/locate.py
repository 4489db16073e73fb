"""Which file on the hub a model spec means, before anything is downloaded.

An alias's repositories are asked in order; the first holding the quant (whole, not split into
parts) wins. When none of them exists on the hub (the registry names community quantizations,
which get renamed or removed), the hub is searched for GGUF repositories of the alias's upstream
checkpoint and the most downloaded one holding the quant is taken, with a note that says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rmjudge.errors import ModelError, UsageError
from rmjudge.models.download import RemoteFile
from rmjudge.models.hub import repo_info, search_gguf_repos
from rmjudge.models.naming import is_model_file, is_split_part, matches_quant, quants_in
from rmjudge.models.registry import default_quant, entries, user_registry_path
from rmjudge.models.spec import HubTarget

if TYPE_CHECKING:
    from huggingface_hub.hf_api import RepoSibling

_SHOWN = 5  # repositories named in a one-line message, at most


@dataclass
class _Survey:
    """What the repositories asked so far hold, for the message when none has the file."""

    missing: list[str] = field(default_factory=list)
    no_revision: list[str] = field(default_factory=list)
    available: dict[str, list[str]] = field(default_factory=dict)  # repo -> its quants
    split_only: list[str] = field(default_factory=list)  # the quant is there, split into parts


@dataclass(frozen=True)
class Located:
    file: RemoteFile
    note: str | None = None  # set when the file is not in a repository the registry names


def locate(target: HubTarget, quant: str | None) -> Located:
    """The file ``target`` means on the hub (``quant``, else the default quant); a ModelError that says
    what exists when there is none. Raises NoNetwork when the hub cannot be reached."""
    wanted = quant or default_quant()
    if target.filename and quant and not matches_quant(target.filename, quant):
        raise UsageError(f"{target.label} names a file, and --quant {quant} does not match it: give one of the two")
    survey = _Survey()
    for repo in target.repos:
        if file := _file_in(repo, target, wanted, survey):
            return Located(file)
    if target.alias and not target.revision and survey.missing == list(target.repos):
        return _substitute(target.alias, wanted, survey)
    raise _nothing_found(target, wanted, survey)


def _quant_files(siblings: list[RepoSibling], wanted: str, repo: str, survey: _Survey) -> list[RepoSibling]:
    matching = [s for s in siblings if matches_quant(s.rfilename, wanted)]
    whole = [s for s in matching if not is_split_part(s.rfilename)]
    if not whole:
        if matching:
            survey.split_only.append(repo)
        survey.available[repo] = quants_in([s.rfilename for s in siblings])
    return whole


def _file_in(repo: str, target: HubTarget, wanted: str, survey: _Survey) -> RemoteFile | None:
    """The file in ``repo`` (the one named, else the quant's shortest name), or None, noted in ``survey``."""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = repo_info(repo, target.revision)
    except RepositoryNotFoundError:
        survey.missing.append(repo)
        return None
    except RevisionNotFoundError:
        survey.no_revision.append(repo)
        return None
    if not info.sha:
        raise ModelError(f"the hub gave no commit for {repo}: try again later, or pin one with --revision")
    siblings = [s for s in info.siblings or [] if is_model_file(s.rfilename)]
    if target.filename:
        chosen = [s for s in siblings if s.rfilename == target.filename]
        if not chosen:
            names = ", ".join(s.rfilename for s in siblings) or "none"
            where = f"{repo}@{target.revision or 'main'}"
            raise ModelError(f"{target.filename} is not in {where} (GGUF files there: {names})")
    else:
        chosen = _quant_files(siblings, wanted, repo, survey)
        if not chosen:
            return None
    sibling = min(chosen, key=lambda s: (len(s.rfilename), s.rfilename))
    return RemoteFile.from_sibling(repo, info.sha, sibling)


def _nothing_found(target: HubTarget, wanted: str, survey: _Survey) -> ModelError:
    if survey.split_only:
        return ModelError(
            f"{wanted} of {target.label} is split into several files in {survey.split_only[0]}, which rmjudge does"
            " not join: pick another --quant, or join the parts with llama-gguf-split and pass the path"
        )
    if any(survey.available.values()):
        quants = sorted({q for qs in survey.available.values() for q in qs})
        return ModelError(
            f"no {wanted} file for {target.label} in {', '.join(survey.available)}; available: {', '.join(quants)}"
            " (pass --quant NAME)"
        )
    if survey.available:
        return ModelError(
            f"{', '.join(survey.available)} holds no GGUF file: pass hf://owner/repo of a GGUF repository"
        )
    if survey.no_revision:
        return ModelError(
            f"revision {target.revision} not found in {', '.join(survey.no_revision)}: pass a branch, tag or commit"
            " that exists there"
        )
    if target.alias:
        return ModelError(
            f"no GGUF repository of {target.alias} was found on the hub (tried {', '.join(survey.missing)}): add one"
            f" to gguf_repos in {user_registry_path()}, or pass --model hf://owner/repo"
        )
    return ModelError(
        f"repository {survey.missing[0]} not found on the hub: check the name (for a private repo, set HF_TOKEN)"
    )


def _substitute(alias: str, wanted: str, registry_survey: _Survey) -> Located:
    """None of the alias's repositories exists: the most downloaded GGUF repository of its checkpoint
    that holds ``wanted``, found by a hub search; else a ModelError listing what the search found."""
    known = entries()
    entry = known[alias]
    tried = ", ".join(registry_survey.missing)
    if not entry.upstream:
        raise _nothing_found(HubTarget(label=alias, repos=entry.repos, alias=alias), wanted, registry_survey)
    checkpoint = entry.upstream.split("/")[-1]
    candidates = [found for found in search_gguf_repos(checkpoint, known) if entry.quantized_in(found.repo)]
    survey = _Survey()
    for candidate in candidates:  # most downloaded first
        if file := _file_in(candidate.repo, HubTarget(label=alias, repos=(candidate.repo,)), wanted, survey):
            note = (
                f"none of {alias}'s registry repositories is on the hub ({tried}): using {candidate.repo}, the most"
                f" downloaded GGUF repository of {entry.upstream} with {wanted} ({candidate.downloads or 0} downloads)"
            )
            return Located(file, note)
    if not survey.available:
        raise ModelError(
            f"no GGUF repository of {alias} was found on the hub (tried {tried}, and a search for {checkpoint} found"
            f" none): add one to gguf_repos in {user_registry_path()}, or pass --model hf://owner/repo"
        )
    shown = [
        f"{repo} ({', '.join(quants) or 'no GGUF'}{f'; {wanted} split in parts' if repo in survey.split_only else ''})"
        for repo, quants in list(survey.available.items())[:_SHOWN]
    ]
    raise ModelError(
        f"none of {alias}'s registry repositories is on the hub (tried {tried}), and no GGUF repository of"
        f" {entry.upstream} holds {wanted}; the hub has {', '.join(shown)}: pass --quant NAME, or --model"
        " hf://owner/repo"
    )
