"""``rmjudge check``: did a file get worse than its baseline?

Each file's new content (the index inside a pre-commit run, else the working tree; the to-ref's
content in ``pre-commit run --from-ref X --to-ref Y``) is judged against its baseline: the same
path at a git revision (default HEAD, or the from-ref; a file that git sees as renamed is compared
with its old path there), or a fixed reference file. The check fails when
the baseline wins with a confidence at or above the threshold; a tie or a win for the new text
passes. Files that need no judgment (unchanged, new, deleted, binary, not staged) are reported
with a note, and the model is loaded only when some file needs judging: once per model, however
many files. Judgments go through the Judge's verdict cache, so unchanged pairs are never
generated twice.

Work happens in two steps: ``plan_check`` reads everything (git and files; bad input fails here,
before any model work), ``run_check`` judges what needs judging and yields one result per file.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rmjudge.config import CheckConfig, Settings
from rmjudge.errors import ExitCode, InputError, RmjudgeError, UsageError
from rmjudge.prompts import Pair
from rmjudge.textio import decode_utf8
from rmjudge.verdict import one_line_reason

if TYPE_CHECKING:
    from rmjudge.judge import Judge
    from rmjudge.judgment import Judgment

DEFAULT_THRESHOLD = 0.6
SOURCES = ("auto", "staged", "worktree")
# git's own test for binary content: a NUL byte in the first 8000 bytes.
_BINARY_PROBE = 8000

# What a file's result says; only "worse" (at or above the threshold) fails the check.
JUDGED = ("better", "worse", "tie")
NOT_JUDGED = ("unchanged", "new", "deleted", "binary", "unstaged")


@dataclass(frozen=True)
class JudgeSettings:
    """What a loaded judge depends on: files with equal settings share one judge."""

    model: str | None
    template: str | None
    max_tokens: int | None


JudgeFactory = Callable[[JudgeSettings], "Judge"]


@dataclass(frozen=True)
class CheckItem:
    """One file, read and classified: judged when ``status`` is "judge", else reported with ``note``."""

    path: str  # as given
    status: str  # "judge" or one of NOT_JUDGED
    note: str
    baseline_name: str | None  # "HEAD:docs/a.md", "golden/a.md"
    pair: Pair | None = None  # a: the baseline, b: the new content
    settings: JudgeSettings | None = None
    threshold: float = DEFAULT_THRESHOLD


@dataclass(frozen=True)
class FileResult:
    path: str
    status: str  # one of JUDGED or NOT_JUDGED
    passed: bool
    baseline: str | None
    note: str = ""
    confidence: float | None = None
    threshold: float | None = None
    reason: str = ""
    judgment: Judgment | None = field(default=None, repr=False)

    @property
    def winner(self) -> str | None:
        """In the check's terms: "new", "baseline" or "tie"; None when nothing was judged."""
        if self.judgment is None:
            return None
        return {"A": "baseline", "B": "new", "tie": "tie"}[self.judgment.winner]

    def to_dict(self, raw: bool = False) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "passed": self.passed,
            "baseline": self.baseline,
            "winner": self.winner,
            "confidence": self.confidence,
            "threshold": self.threshold,
            "reason": self.reason,
            "note": self.note,
            "judgment": None if self.judgment is None else self.judgment.to_dict(raw=raw),
        }


# -- git ----------------------------------------------------------------------------------------


class Repository:
    """The git repository around the current directory, read through the git command."""

    def __init__(self, top: Path) -> None:
        self.top = top

    @classmethod
    def find(cls, cwd: Path) -> Repository | None:
        try:
            found = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True, check=False)
        except FileNotFoundError:
            return None  # no git at all: only --reference can work, which the caller says
        if found.returncode != 0:
            return None
        return cls(Path(os.fsdecode(found.stdout.strip())))

    def git(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["git", *args], cwd=self.top, capture_output=True, check=False)

    def relative(self, path: str) -> str:
        """``path`` (as given) relative to the repository root, in git's spelling."""
        absolute = os.path.abspath(path)
        # Resolve the directory, not the file: a committed symlink is a file of its own to git.
        real = os.path.join(os.path.realpath(os.path.dirname(absolute)), os.path.basename(absolute))
        relative = os.path.relpath(real, os.path.realpath(self.top))
        if relative == os.pardir or relative.startswith(os.pardir + os.sep):
            raise UsageError(f"{path} is outside the git repository at {self.top}: compare it with --reference")
        return relative.replace(os.sep, "/")

    def tree(self, rev: str) -> str | None:
        """The tree of commit ``rev``; None when it names no commit."""
        found = self.git("rev-parse", "--verify", "--quiet", f"{rev}^{{tree}}")
        return found.stdout.decode().strip() if found.returncode == 0 else None

    def empty_tree(self) -> str:
        return self.git("hash-object", "-t", "tree", os.devnull).stdout.decode().strip()

    def has_commits(self) -> bool:
        return self.git("rev-parse", "--verify", "--quiet", "HEAD").returncode == 0

    def blob(self, spec: str) -> bytes | None:
        """The content of ``spec`` (``:path`` in the index, ``TREE:path``); None when it has none."""
        found = self.git("cat-file", "blob", spec)
        return found.stdout if found.returncode == 0 else None

    def renames(self, tree: str, target: str | None) -> dict[str, str]:
        """New path -> old path, for the files git's rename detection pairs between ``tree`` and
        ``target``: a tree, ":" for the index, or None for the working tree."""
        args = ["diff", "--no-ext-diff", "--no-color", "-M", "--name-status", "-z"]
        targets = ["--cached", tree] if target == ":" else [tree] if target is None else [tree, target]
        found = self.git(*args, *targets, "--")
        if found.returncode != 0:
            raise InputError(f"git diff failed: {found.stderr.decode(errors='replace').strip()}")
        fields_ = found.stdout.decode("utf-8", "surrogateescape").split("\0")
        renames, i = {}, 0
        while i < len(fields_) and fields_[i]:
            status = fields_[i]
            if status.startswith(("R", "C")):
                if status.startswith("R"):
                    renames[fields_[i + 2]] = fields_[i + 1]
                i += 3
            else:
                i += 2
        return renames


# -- planning -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where the new content comes from, and the baseline revision unless --against says otherwise."""

    kind: str  # "staged" (the index), "worktree", or "revision"
    revision: str | None = None  # for "revision"
    default_against: str = "HEAD"

    @property
    def name(self) -> str:
        return {"staged": "the index", "worktree": "the working tree"}.get(self.kind, str(self.revision))


def resolve_source(source: str, environ: Mapping[str, str] | None = None) -> Source:
    """``auto``, inside a pre-commit run (pre-commit sets PRE_COMMIT=1 for its hooks): the index,
    which is what is being committed; in ``pre-commit run --from-ref X --to-ref Y`` (CI, pre-push),
    the content at Y against X. Outside pre-commit: the working tree."""
    if source not in SOURCES:
        raise UsageError(f"source {source!r}: use auto, staged or worktree")
    environ = os.environ if environ is None else environ
    if source != "auto":
        return Source(source)
    if environ.get("PRE_COMMIT") != "1":
        return Source("worktree")
    from_ref, to_ref = environ.get("PRE_COMMIT_FROM_REF"), environ.get("PRE_COMMIT_TO_REF")
    if from_ref and to_ref:
        return Source("revision", revision=to_ref, default_against=from_ref)
    return Source("staged")


def _is_binary(data: bytes) -> bool:
    return b"\0" in data[:_BINARY_PROBE]


def _read_file(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory: give files (a shell glob such as docs/*.md)") from None
    except OSError as error:
        raise InputError(f"cannot read {path}: {error.strerror}") from None


def _reference_for(reference: str, path: str) -> str:
    """A reference file, or for a directory the file at the same relative path inside it."""
    if os.path.isdir(reference):
        if os.path.isabs(path):
            raise UsageError(f"{path}: with a reference directory, give paths relative to the current directory")
        return os.path.join(reference, path)
    return reference


def plan_check(
    files: Sequence[str],
    *,
    against: str | None = None,
    reference: str | None = None,
    source: str = "auto",
    config: CheckConfig | None = None,
    overrides: Settings | None = None,
) -> list[CheckItem]:
    """Read and classify each file (paths relative to the current directory). No model runs here.

    ``against``: the git revision holding the baselines (default HEAD); ``reference``: a file (or
    a directory mirroring the paths) holding them instead. ``overrides`` (from the command line)
    win over ``config``'s per-glob settings, which win over its top-level ones.
    """
    if not files:
        raise UsageError("give the files to check, e.g. rmjudge check docs/*.md")
    if against is not None and reference is not None:
        raise UsageError("--against and --reference exclude each other: give one baseline")
    config = config or CheckConfig(path=None, defaults=Settings())
    overrides = overrides or Settings()
    if overrides.threshold is not None and not 0 <= overrides.threshold <= 1:
        raise UsageError(f"--threshold {overrides.threshold}: give a confidence from 0 to 1")
    if reference is not None and not os.path.exists(reference):
        raise InputError(f"--reference {reference}: no such file or directory")

    repository = Repository.find(Path.cwd())
    new_from = resolve_source(source)
    if repository is None and (reference is None or new_from.kind != "worktree"):
        if reference is None:
            raise UsageError("not inside a git repository: there is no baseline at HEAD; give one with --reference")
        raise UsageError(f"not in a git repository: no {new_from.name} to read; check the working tree (--worktree)")

    new_tree = None
    if new_from.kind == "revision":
        assert repository is not None and new_from.revision is not None
        new_tree = repository.tree(new_from.revision)
        if new_tree is None:
            raise UsageError(f"PRE_COMMIT_TO_REF {new_from.revision}: not a commit in {repository.top}")
    tree = renames = None
    rev = against or new_from.default_against
    if reference is None and repository is not None:
        tree = repository.tree(rev)
        if tree is None:
            if rev != "HEAD" or repository.has_commits():
                raise UsageError(f"--against {rev}: not a commit in {repository.top} (a branch, tag or commit id)")
            tree = repository.empty_tree()  # a repository without commits: every file is new
        renames = repository.renames(tree, {"staged": ":", "worktree": None}.get(new_from.kind, new_tree))

    items = []
    for path in files:
        relative = path
        if repository is not None and (new_from.kind != "worktree" or reference is None):
            relative = repository.relative(path)
        if new_from.kind == "worktree" or repository is None:
            new = _read_file(path)
        else:
            new = repository.blob(f":{relative}" if new_from.kind == "staged" else f"{new_tree}:{relative}")
        if reference is not None:
            baseline_name = _reference_for(reference, path)
            baseline = _read_file(baseline_name)
            if baseline is None:
                raise InputError(f"{baseline_name}: no such reference file for {path}")
        else:
            assert repository is not None and tree is not None and renames is not None
            old = renames.get(relative, relative)
            baseline_name = f"{rev}:{old}"
            baseline = repository.blob(f"{tree}:{old}")
        revision = None if reference is not None else rev
        items.append(_classify(path, new, baseline, baseline_name, revision, new_from, config, overrides))
    return items


def _classify(
    path: str,
    new: bytes | None,
    baseline: bytes | None,
    baseline_name: str,
    revision: str | None,  # None: the baseline is a reference file
    source: Source,
    config: CheckConfig,
    overrides: Settings,
) -> CheckItem:
    def skip(status: str, note: str) -> CheckItem:
        return CheckItem(path, status, note, baseline_name if baseline is not None else None)

    if new is None:
        if source.kind == "staged" and os.path.isfile(path) and (revision is None or baseline is None):
            return skip("unstaged", "not in the index: git add it to check it")
        if baseline is not None and revision is not None:
            return skip("deleted", "deleted: nothing to judge")
        also = "" if revision is None else f" nor in {revision}"
        raise InputError(f"{path}: no such file (not in {source.name}{also})")
    if new == baseline:
        return skip("unchanged", f"unchanged: same as {revision or 'the reference'}")
    if _is_binary(new) or (baseline is not None and _is_binary(baseline)):
        return skip("binary", "binary: not judged")
    if baseline is None:
        return skip("new", f"new: not in {revision}, nothing to compare with")
    settings = overrides.over(config.settings_for(path))
    return CheckItem(
        path=path,
        status="judge",
        note="",
        baseline_name=baseline_name,
        pair=Pair(
            a=decode_utf8(baseline, baseline_name),
            b=decode_utf8(new, path),
            question=settings.question,
            criteria=settings.criteria,
        ),
        settings=JudgeSettings(model=settings.model, template=settings.template, max_tokens=settings.max_tokens),
        threshold=DEFAULT_THRESHOLD if settings.threshold is None else settings.threshold,
    )


# -- judging ------------------------------------------------------------------------------------


class JudgePool:
    """Judges by settings, loading each model once: settings that differ only in template or
    budget share the loaded engine; a different model replaces it (one model in memory at a time)."""

    def __init__(self, load: JudgeFactory) -> None:
        self._load = load
        self._judges: dict[JudgeSettings, Judge] = {}

    def __call__(self, settings: JudgeSettings) -> Judge:
        if settings in self._judges:
            return self._judges[settings]
        loaded = next((judge for known, judge in self._judges.items() if known.model == settings.model), None)
        if loaded is None:
            self._judges.clear()
            judge = self._load(settings)
        else:
            from rmjudge.judge import Judge

            judge = Judge(
                template=settings.template, max_tokens=settings.max_tokens, order=loaded.order,
                sampling=loaded.sampling, cache=loaded.cache, engine=loaded.engine, decide=loaded.rule,
                tie_margin=loaded.tie_margin, samples=loaded.samples, criteria=loaded.criteria,
            )  # fmt: skip
        self._judges[settings] = judge
        return judge


def _in_check_terms(reason: str, order: str) -> str:
    """The model's "Chatbot A/B" are positions; in a check report they are the baseline and the new text."""
    names = {"A": "the baseline", "B": "the new text"} if order == "ab" else {"A": "the new text", "B": "the baseline"}
    relabelled = re.sub(r"\bChatbot ([AB])\b", lambda match: names[match.group(1)], reason)
    return relabelled[:1].upper() + relabelled[1:]


def _result(item: CheckItem, judgment: Judgment) -> FileResult:
    status = {"A": "worse", "B": "better", "tie": "tie"}[judgment.winner]
    passed = status != "worse" or judgment.confidence < item.threshold
    # The reason of an order that reached the combined verdict, when one did.
    order = next((o for o in judgment.orders if o.verdict == judgment.winner), judgment.orders[0])
    return FileResult(
        path=item.path,
        status=status,
        passed=passed,
        baseline=item.baseline_name,
        confidence=judgment.confidence,
        threshold=item.threshold,
        reason=_in_check_terms(one_line_reason(order.rationale), order.order),
        judgment=judgment,
    )


def run_check(items: Iterable[CheckItem], judge_for: JudgeFactory) -> Iterator[FileResult]:
    """Results: first the files that need no judgment, then the judged ones, grouped by settings so
    that each model loads once. ``judge_for`` is called only when some file needs judging."""
    items = list(items)
    for item in items:
        if item.status != "judge":
            yield FileResult(item.path, item.status, True, item.baseline_name, note=item.note)
    groups: dict[JudgeSettings, list[CheckItem]] = {}
    for item in items:
        if item.status == "judge":
            assert item.settings is not None
            groups.setdefault(item.settings, []).append(item)
    # Settings of the same model next to each other: the pool keeps one model loaded at a time.
    model_rank: dict[str | None, int] = {}
    for settings in groups:
        model_rank.setdefault(settings.model, len(model_rank))
    for settings in sorted(groups, key=lambda s: model_rank[s.model]):
        judge = judge_for(settings)
        pairs: list[Pair] = []
        for item in groups[settings]:
            assert item.pair is not None
            judge.check_fits(item.pair)  # every file of the group fits before the first is judged
            pairs.append(item.pair)
        # The group's files are judged at once; each result comes as soon as it and those before it are done.
        for item, outcome in zip(groups[settings], judge.judge_many(pairs), strict=True):
            if isinstance(outcome, RmjudgeError):
                raise outcome
            yield _result(item, outcome)


def exit_code(results: Iterable[FileResult]) -> int:
    return ExitCode.OK if all(result.passed for result in results) else ExitCode.NEGATIVE
