"""``rmjudge check``: baselines from a real temporary git repository, settings from real config files,
judgments from a scripted engine (orchestration), and one run of a real GGUF through the CLI."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from rmjudge import check as checking
from rmjudge import cli, session
from rmjudge.cache import VerdictCache
from rmjudge.check import FileResult, JudgePool, JudgeSettings, exit_code, plan_check, run_check
from rmjudge.config import Settings, glob_regex, load_config
from rmjudge.errors import ContextTooLongError, ExitCode, InputError, RmjudgeError, UsageError
from rmjudge.judge import Judge
from rmjudge.render.check import report_line
from rmjudge.session import JudgeOptions

from .conftest import FakeEngine, invoke_cli, run_cli

EngineFactory = Callable[..., FakeEngine]

GOOD = "Install with `pip install rmjudge`, then run `rmjudge --help` to list the commands. GOOD"
BAD = "No idea. BAD"
# Long enough that git's rename detection (50% similar) pairs a renamed, edited copy with it.
LONG = "".join(f"Line {i}: the generated documentation says something useful here.\n" for i in range(40))


def _section(prompt: str, label: str) -> str:
    return prompt.split(f"[The Start of Chatbot {label}'s Response]")[1].split(
        f"[The End of Chatbot {label}'s Response]"
    )[0]


def prefers(marker: str, probability: float = 0.9) -> dict[str, Callable[[str], object]]:
    """A scripted model that prefers the response containing ``marker`` wherever it is shown, with
    P(that response) = ``probability`` at the verdict."""

    def script(prompt: str) -> str:
        choice = "A" if marker in _section(prompt, "A") else "B"
        return (
            f"<type>Chat</type>\n<eval>Chatbot {choice} is the one with {marker}.</eval>\n<answer>[[{choice}]]</answer>"
        )

    def probability_a(prompt: str) -> float:
        return probability if marker in _section(prompt, "A") else 1 - probability

    return {"script": script, "probability_a": probability_a}


class RecordingFactory:
    """A judge factory over one fake engine that records every judge it is asked for."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.calls: list[JudgeSettings] = []
        self.cache = VerdictCache()

    def __call__(self, settings: JudgeSettings) -> Judge:
        self.calls.append(settings)
        return Judge(engine=self.engine, template=settings.template, max_tokens=settings.max_tokens, cache=self.cache)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh git repository as the current directory; no pre-commit run around it."""
    for name in ("GIT_DIR", "GIT_INDEX_FILE", "GIT_WORK_TREE", "GIT_OBJECT_DIRECTORY", "PRE_COMMIT"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q")
    for key, value in (("user.name", "Test"), ("user.email", "test@example.com"), ("commit.gpgsign", "false")):
        git(path, "config", key, value)
    monkeypatch.chdir(path)
    return path


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def commit(repo: Path, files: dict[str, str | bytes], message: str = "commit") -> None:
    for name, text in files.items():
        write(repo / name, text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def check(files: list[str], factory: Callable[[JudgeSettings], Judge], **options: object) -> list[FileResult]:
    return list(run_check(plan_check(files, **options), factory))  # type: ignore[arg-type]


# -- what gets compared ---------------------------------------------------------------------------


def test_staged_content_against_head(repo: Path, fake_engine_factory: EngineFactory) -> None:
    commit(repo, {"docs/a.md": GOOD})
    write(repo / "docs/a.md", BAD)
    git(repo, "add", "docs/a.md")
    write(repo / "docs/a.md", GOOD + " and an unstaged edit")  # the working tree differs from the index

    item = plan_check(["docs/a.md"], source="staged")[0]
    assert item.status == "judge" and item.baseline_name == "HEAD:docs/a.md"
    assert item.pair is not None and (item.pair.a, item.pair.b) == (GOOD, BAD)

    factory = RecordingFactory(fake_engine_factory(**prefers("GOOD", 0.9)))
    [result] = check(["docs/a.md"], factory, source="staged")
    assert (result.status, result.passed, result.winner) == ("worse", False, "baseline")
    assert result.confidence == pytest.approx(0.9) and result.threshold == checking.DEFAULT_THRESHOLD
    assert result.reason == "The baseline is the one with GOOD."  # the model's "Chatbot A", in order ab
    assert exit_code([result]) == ExitCode.NEGATIVE
    assert report_line(result) == "✗ docs/a.md  worse (baseline wins, 90% ≥ 60%): The baseline is the one with GOOD."


def test_worktree_is_the_default_outside_pre_commit_and_the_index_inside(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit(repo, {"a.md": GOOD})
    write(repo / "a.md", BAD)
    git(repo, "add", "a.md")
    write(repo / "a.md", "working tree text")

    [outside] = plan_check(["a.md"])
    assert outside.pair is not None and outside.pair.b == "working tree text"
    monkeypatch.setenv("PRE_COMMIT", "1")  # what pre-commit sets for its hooks
    [inside] = plan_check(["a.md"])
    assert inside.pair is not None and inside.pair.b == BAD
    [forced] = plan_check(["a.md"], source="worktree")
    assert forced.pair is not None and forced.pair.b == "working tree text"


def test_pre_commit_run_from_ref_to_ref(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pre-commit run --from-ref X --to-ref Y`` (CI, pre-push): Y's content against X's."""
    commit(repo, {"a.md": GOOD, "old.md": LONG + GOOD}, "first")
    first = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "mv", "old.md", "renamed.md")
    commit(repo, {"a.md": BAD, "renamed.md": LONG + BAD}, "second")
    write(repo / "a.md", "neither the index nor the working tree is judged")
    git(repo, "add", "a.md")
    for name, value in (("PRE_COMMIT", "1"), ("PRE_COMMIT_FROM_REF", first), ("PRE_COMMIT_TO_REF", "HEAD")):
        monkeypatch.setenv(name, value)
    a, renamed = plan_check(["a.md", "renamed.md"])
    assert a.baseline_name == f"{first}:a.md" and a.pair is not None and (a.pair.a, a.pair.b) == (GOOD, BAD)
    assert renamed.baseline_name == f"{first}:old.md" and renamed.pair is not None
    assert (renamed.pair.a, renamed.pair.b) == (LONG + GOOD, LONG + BAD)
    [against_head] = plan_check(["a.md"], against="HEAD")  # --against still wins
    assert against_head.status == "unchanged"
    monkeypatch.setenv("PRE_COMMIT_TO_REF", "no-such-ref")
    with pytest.raises(UsageError, match="PRE_COMMIT_TO_REF no-such-ref: not a commit"):
        plan_check(["a.md"])


def test_resolve_source() -> None:
    assert checking.resolve_source("auto", {}).kind == "worktree"
    assert checking.resolve_source("auto", {"PRE_COMMIT": "1"}).kind == "staged"
    assert checking.resolve_source("worktree", {"PRE_COMMIT": "1"}).kind == "worktree"
    ranged = checking.resolve_source("auto", {"PRE_COMMIT": "1", "PRE_COMMIT_FROM_REF": "x", "PRE_COMMIT_TO_REF": "y"})
    assert (ranged.kind, ranged.revision, ranged.default_against) == ("revision", "y", "x")
    with pytest.raises(UsageError):
        checking.resolve_source("index", {})


def test_improvement_and_tie_pass(repo: Path, fake_engine_factory: EngineFactory) -> None:
    commit(repo, {"better.md": BAD, "tie.md": "one text"})
    write(repo / "better.md", GOOD)
    write(repo / "tie.md", "another text")
    factory = RecordingFactory(fake_engine_factory(**prefers("GOOD", 0.8)))
    better, tie = check(["better.md", "tie.md"], factory)
    assert (better.status, better.passed, better.winner) == ("better", True, "new")
    assert report_line(better).startswith("✓ better.md  better (new text wins, 80%)")
    # Neither holds the marker: the model answers B in both orders, i.e. each text once: a tie.
    assert (tie.status, tie.passed, tie.winner) == ("tie", True, "tie")
    assert tie.judgment is not None and not tie.judgment.consistent
    assert report_line(tie).startswith("✓ tie.md  tie (the orders disagree)")
    assert exit_code([better, tie]) == ExitCode.OK
    assert len(factory.calls) == 1  # one judge (one model load) for both files
    # Reasons speak of the baseline and the new text, whichever position the model saw them in.
    assert better.reason == "The new text is the one with GOOD."

    def swapped_only(settings: JudgeSettings) -> Judge:
        return Judge(engine=factory.engine, max_tokens=settings.max_tokens, order="ba")

    [shown_swapped] = check(["better.md"], swapped_only)
    assert shown_swapped.judgment is not None and [o.order for o in shown_swapped.judgment.orders] == ["ba"]
    assert shown_swapped.reason == "The new text is the one with GOOD."  # the model's "Chatbot A" here


def test_threshold(repo: Path, fake_engine_factory: EngineFactory) -> None:
    commit(repo, {"a.md": GOOD})
    write(repo / "a.md", BAD)
    factory = RecordingFactory(fake_engine_factory(**prefers("GOOD", 0.75)))
    [under] = check(["a.md"], factory, overrides=Settings(threshold=0.8))
    assert (under.status, under.passed) == ("worse", True)
    assert report_line(under).startswith("✓ a.md  worse, under the threshold (baseline wins, 75% < 80%)")
    [at] = check(["a.md"], factory, overrides=Settings(threshold=0.75))
    assert (at.status, at.passed) == ("worse", False)  # at the threshold: fails
    [zero] = check(["a.md"], factory, overrides=Settings(threshold=0.0))
    assert not zero.passed


def test_unchanged_and_new_files_load_no_model(repo: Path, fake_engine_factory: EngineFactory) -> None:
    commit(repo, {"same.md": GOOD})
    write(repo / "new.md", GOOD)  # untracked: new in the working tree
    factory = RecordingFactory(fake_engine_factory())
    same, new = check(["same.md", "new.md"], factory)
    assert (same.status, same.passed, same.note) == ("unchanged", True, "unchanged: same as HEAD")
    assert (new.status, new.passed) == ("new", True)
    assert report_line(new) == "· new.md  new: not in HEAD, nothing to compare with"
    assert factory.calls == [] and factory.engine.generate_calls == []


def test_deleted_and_binary_files_are_skipped(repo: Path, fake_engine_factory: EngineFactory) -> None:
    commit(repo, {"gone.md": GOOD, "staged-gone.md": GOOD, "image.bin": b"\x89PNG\x00\x01", "text.md": GOOD})
    (repo / "gone.md").unlink()
    git(repo, "rm", "-q", "staged-gone.md")
    write(repo / "image.bin", b"\x89PNG\x00\x02")
    write(repo / "text.md", b"now \x00 binary")
    factory = RecordingFactory(fake_engine_factory())
    results = {r.path: r for r in check(["gone.md", "staged-gone.md", "image.bin", "text.md"], factory)}
    assert results["gone.md"].status == "deleted" and results["staged-gone.md"].status == "deleted"
    assert results["image.bin"].status == "binary" and results["text.md"].status == "binary"
    assert all(r.passed for r in results.values()) and factory.calls == []
    [staged] = plan_check(["staged-gone.md"], source="staged")
    assert staged.status == "deleted"


def test_unstaged_new_file_in_staged_mode(repo: Path) -> None:
    commit(repo, {"a.md": GOOD})
    write(repo / "untracked.md", GOOD)
    [item] = plan_check(["untracked.md"], source="staged")
    assert item.status == "unstaged" and "git add" in item.note


def test_rename_is_compared_with_the_old_path(repo: Path, fake_engine_factory: EngineFactory) -> None:
    commit(repo, {"old/name.md": LONG + GOOD})
    git(repo, "mv", "old/name.md", "new-name.md")
    write(repo / "new-name.md", LONG + BAD)
    git(repo, "add", "new-name.md")
    for source in ("staged", "worktree"):
        [item] = plan_check(["new-name.md"], source=source)
        assert item.status == "judge" and item.baseline_name == "HEAD:old/name.md", source
        assert item.pair is not None and item.pair.a == LONG + GOOD and item.pair.b == LONG + BAD
    [result] = check(["new-name.md"], RecordingFactory(fake_engine_factory(**prefers("GOOD"))))
    assert result.status == "worse" and not result.passed


def test_paths_from_a_subdirectory(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commit(repo, {"docs/a.md": GOOD})
    write(repo / "docs/a.md", BAD)
    monkeypatch.chdir(repo / "docs")
    [item] = plan_check(["a.md"])
    assert item.baseline_name == "HEAD:docs/a.md" and item.pair is not None and item.pair.a == GOOD


def test_against_a_revision(repo: Path, fake_engine_factory: EngineFactory) -> None:
    commit(repo, {"a.md": GOOD}, "first")
    first = git(repo, "rev-parse", "HEAD").strip()
    commit(repo, {"a.md": BAD}, "second")
    [at_head] = plan_check(["a.md"])
    assert at_head.status == "unchanged"
    [item] = plan_check(["a.md"], against=first)
    assert item.status == "judge" and item.baseline_name == f"{first}:a.md"
    git(repo, "tag", "v1", first)
    [result] = check(["a.md"], RecordingFactory(fake_engine_factory(**prefers("GOOD"))), against="v1")
    assert result.baseline == "v1:a.md" and not result.passed
    with pytest.raises(UsageError, match="--against nope: not a commit"):
        plan_check(["a.md"], against="nope")


def test_repository_without_commits(repo: Path) -> None:
    write(repo / "a.md", GOOD)
    assert [i.status for i in plan_check(["a.md"])] == ["new"]
    git(repo, "add", "a.md")
    assert [i.status for i in plan_check(["a.md"], source="staged")] == ["new"]


def test_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_engine_factory: EngineFactory) -> None:
    monkeypatch.chdir(tmp_path)  # no git repository needed with a reference
    monkeypatch.delenv("PRE_COMMIT", raising=False)
    write(tmp_path / "out.txt", BAD)
    write(tmp_path / "golden/out.txt", GOOD)
    write(tmp_path / "same.txt", GOOD)
    factory = RecordingFactory(fake_engine_factory(**prefers("GOOD")))
    [result] = check(["out.txt"], factory, reference="golden/out.txt")
    assert (result.status, result.baseline, result.passed) == ("worse", "golden/out.txt", False)
    # A directory: each file against the file at the same path inside it.
    [from_dir] = plan_check(["out.txt"], reference="golden")
    assert from_dir.baseline_name == os.path.join("golden", "out.txt") and from_dir.status == "judge"
    [same] = plan_check(["same.txt"], reference="golden/out.txt")
    assert (same.status, same.note) == ("unchanged", "unchanged: same as the reference")
    with pytest.raises(InputError, match=r"no such reference file for same\.txt"):
        plan_check(["same.txt"], reference="golden")
    with pytest.raises(InputError, match=r"--reference missing\.txt: no such file"):
        plan_check(["out.txt"], reference="missing.txt")
    with pytest.raises(InputError, match=r"nothing.txt: no such file \(not in the working tree\)"):
        plan_check(["nothing.txt"], reference="golden/out.txt")
    with pytest.raises(UsageError, match="exclude each other"):
        plan_check(["out.txt"], reference="golden/out.txt", against="HEAD")
    with pytest.raises(UsageError, match="not inside a git repository"):
        plan_check(["out.txt"])


def test_bad_input(repo: Path) -> None:
    commit(repo, {"a.md": GOOD})
    write(repo / "latin1.md", "caf\xe9".encode("latin-1"))
    write(repo / "a.md", "caf\xe9".encode("latin-1"))
    (repo / "folder").mkdir()
    with pytest.raises(InputError, match=r"a\.md is not UTF-8"):
        plan_check(["a.md"])
    with pytest.raises(InputError, match=r"missing\.md: no such file"):
        plan_check(["missing.md"])
    with pytest.raises(InputError, match="is a directory"):
        plan_check(["folder"])
    with pytest.raises(UsageError, match="give the files to check"):
        plan_check([])
    with pytest.raises(UsageError, match="outside the git repository"):
        plan_check([str(repo.parent / "elsewhere.md")])


def test_context_too_long_fails_before_any_generation(repo: Path, fake_engine_factory: EngineFactory) -> None:
    commit(repo, {"short.md": "a", "long.md": "b"})
    write(repo / "short.md", "aa")
    write(repo / "long.md", "x" * 5000)
    engine = fake_engine_factory(context=4000)
    with pytest.raises(ContextTooLongError):
        check(["short.md", "long.md"], RecordingFactory(engine))
    assert engine.generate_calls == []


def test_rerun_is_served_from_the_verdict_cache(repo: Path, fake_engine_factory: EngineFactory) -> None:
    commit(repo, {"a.md": GOOD})
    write(repo / "a.md", BAD)
    factory = RecordingFactory(fake_engine_factory(**prefers("GOOD")))
    [first] = check(["a.md"], factory)
    calls = len(factory.engine.generate_calls)
    [again] = check(["a.md"], factory)
    assert len(factory.engine.generate_calls) == calls == 2
    assert again.judgment is not None and all(o.cached for o in again.judgment.orders)
    assert (again.status, again.confidence) == (first.status, first.confidence)


# -- settings -------------------------------------------------------------------------------------

PYPROJECT = """
[project]
name = "demo"

[tool.rmjudge]
threshold = 0.9
question = "Top-level question."
max_tokens = 64

[[tool.rmjudge.check]]
files = "docs/*.md"
question = "Release notes a user can act on."
threshold = 0.5
max_tokens = 32

[[tool.rmjudge.check]]
files = ["notes/**/*.txt", "*.rst"]
question = "question.txt"
"""


def test_settings_per_glob(repo: Path, fake_engine_factory: EngineFactory) -> None:
    write(repo / "pyproject.toml", PYPROJECT)
    write(repo / "question.txt", "Notes from a file.")
    commit(repo, {"docs/a.md": GOOD, "docs/deep/b.md": GOOD, "notes/x/c.txt": GOOD, "sub/d.rst": GOOD})
    files = ["docs/a.md", "docs/deep/b.md", "notes/x/c.txt", "sub/d.rst"]
    for name in files:
        write(repo / name, BAD + " " + name)
    config = load_config()
    assert config.path == repo / "pyproject.toml"
    items = {i.path: i for i in plan_check(files, config=config)}
    assert items["docs/a.md"].pair.question == "Release notes a user can act on."  # type: ignore[union-attr]
    assert items["docs/a.md"].threshold == 0.5 and items["docs/a.md"].settings == JudgeSettings(None, None, 32)
    # docs/*.md stays in docs/: the top-level settings apply one directory down.
    assert items["docs/deep/b.md"].pair.question == "Top-level question."  # type: ignore[union-attr]
    assert items["docs/deep/b.md"].threshold == 0.9 and items["docs/deep/b.md"].settings == JudgeSettings(
        None, None, 64
    )
    # A question naming a file beside the config is that file's text; unset keys come from the top.
    assert items["notes/x/c.txt"].pair.question == "Notes from a file."  # type: ignore[union-attr]
    assert items["sub/d.rst"].pair.question == "Notes from a file." and items["sub/d.rst"].threshold == 0.9  # type: ignore[union-attr]

    # The command line wins over every level.
    overridden = plan_check(["docs/a.md"], config=config, overrides=Settings(question="From the CLI.", threshold=0.7))[
        0
    ]
    assert overridden.pair is not None and overridden.pair.question == "From the CLI." and overridden.threshold == 0.7

    # The question reaches the model; one judge per distinct budget.
    factory = RecordingFactory(fake_engine_factory(**prefers("GOOD", 0.6)))
    results = {r.path: r for r in run_check(items.values(), factory)}
    assert "Release notes a user can act on." in factory.engine.generate_calls[0]
    assert sorted(s.max_tokens or 0 for s in factory.calls) == [32, 64]
    assert not results["docs/a.md"].passed  # 60% ≥ its threshold 0.5
    assert results["docs/deep/b.md"].passed  # 60% < the top-level 0.9


def test_rmjudge_toml_is_found_from_a_subdirectory(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(repo / ".rmjudge.toml", 'model = "models/judge.gguf"\n[[check]]\nfiles = "*.md"\nthreshold = 0.3\n')
    write(repo / "models/judge.gguf", "not really a model")
    write(repo / "docs/a.md", GOOD)
    monkeypatch.chdir(repo / "docs")
    config = load_config()
    assert config.path == repo / ".rmjudge.toml"
    settings = config.settings_for("a.md")
    assert settings.threshold == 0.3
    assert settings.model == str((repo / "models/judge.gguf").resolve())  # relative to the config file
    assert load_config(start=repo.parent).path is None  # nothing above the repository is read


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tool.rmjudge]\nthreshold = 1.5\n", "pyproject.toml: tool.rmjudge.threshold: expected a number from 0 to 1"),
        ("[tool.rmjudge]\nmodle = 'x'\n", "pyproject.toml: tool.rmjudge.modle: unknown key"),
        ("[tool.rmjudge]\nmax_tokens = -1\n", "tool.rmjudge.max_tokens: expected a whole number"),
        ("[[tool.rmjudge.check]]\nquestion = 'q'\n", r"tool.rmjudge.check\[0\].files: missing"),
        ("[[tool.rmjudge.check]]\nfiles = []\n", r"tool.rmjudge.check\[0\].files: expected a glob"),
        ("[[tool.rmjudge.check]]\nfiles = '*.md'\nthreshold = 'high'\n", r"tool.rmjudge.check\[0\].threshold"),
        ("[tool.rmjudge]\nthreshold = \n", "pyproject.toml: not valid TOML"),
        ("[tool]\nrmjudge = 3\n", "tool.rmjudge: expected a table"),
    ],
)
def test_bad_config(repo: Path, text: str, message: str) -> None:
    write(repo / "pyproject.toml", text)
    with pytest.raises(UsageError, match=message):
        load_config()


def test_an_unknown_model_in_the_config_names_the_file_and_key(repo: Path) -> None:
    write(repo / ".rmjudge.toml", 'model = "rm-r1-qwen-9b"\n')
    with pytest.raises(RmjudgeError, match=r"\.rmjudge\.toml: model: .*rm-r1-qwen-9b"):
        load_config()


def test_two_config_files_are_ambiguous(repo: Path) -> None:
    write(repo / "pyproject.toml", "[tool.rmjudge]\nthreshold = 0.5\n")
    write(repo / ".rmjudge.toml", "threshold = 0.4\n")
    with pytest.raises(UsageError, match="both configure rmjudge"):
        load_config()
    # A pyproject.toml without the table is no configuration.
    write(repo / "pyproject.toml", "[project]\nname = 'x'\n")
    assert load_config().defaults.threshold == 0.4


def test_glob_semantics() -> None:
    assert glob_regex("*.md").fullmatch("a/b/c.md") and glob_regex("*.md").fullmatch("c.md")
    assert glob_regex("docs/*.md").fullmatch("docs/a.md") and not glob_regex("docs/*.md").fullmatch("docs/x/a.md")
    assert glob_regex("docs/**/*.md").fullmatch("docs/a.md") and glob_regex("docs/**/*.md").fullmatch("docs/x/y/a.md")
    assert glob_regex("docs/?.md").fullmatch("docs/a.md") and not glob_regex("docs/?.md").fullmatch("docs/ab.md")
    assert glob_regex("docs/[!x]*.md").fullmatch("docs/a.md") and not glob_regex("docs/[!x]*.md").fullmatch("docs/x.md")
    assert not glob_regex("docs/*.md").fullmatch("other/docs/a.md")


def test_judge_pool_loads_each_model_once(fake_engine_factory: EngineFactory) -> None:
    engine = fake_engine_factory()
    loads: list[JudgeSettings] = []

    def load(settings: JudgeSettings) -> Judge:
        loads.append(settings)
        return Judge(engine=engine, template=settings.template, max_tokens=settings.max_tokens, order="ab")

    pool = JudgePool(load)
    first = pool(JudgeSettings("m1", None, 16))
    other_budget = pool(JudgeSettings("m1", None, 64))
    assert pool(JudgeSettings("m1", None, 16)) is first
    assert other_budget.engine is first.engine and other_budget.max_tokens == 64 and other_budget.order == "ab"
    pool(JudgeSettings("m2", None, 16))
    assert [s.model for s in loads] == ["m1", "m2"]


# -- the command line ------------------------------------------------------------------------------


def test_cli_reports_and_exit_codes(
    repo: Path, fake_engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit(repo, {"worse.md": GOOD, "better.md": BAD, "same.md": GOOD})
    write(repo / "worse.md", BAD)
    write(repo / "better.md", GOOD)
    engine = fake_engine_factory(**prefers("GOOD", 0.8))
    built: list[JudgeOptions] = []

    def fake_open_judge(options: JudgeOptions, **_: object) -> Judge:
        built.append(options)
        return Judge(engine=engine, max_tokens=options.max_tokens, order=options.order)

    monkeypatch.setattr(session, "open_judge", fake_open_judge)
    runner = CliRunner()
    result = runner.invoke(cli.app, ["check", "worse.md", "better.md", "same.md", "--max-tokens", "400"])
    assert result.exit_code == ExitCode.NEGATIVE, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "· same.md  unchanged: same as HEAD"
    assert lines[1] == "✗ worse.md  worse (baseline wins, 80% ≥ 60%): The baseline is the one with GOOD."
    assert lines[2].startswith("✓ better.md  better (new text wins, 80%)")
    assert lines[3] == "rmjudge check failed: 1 got worse (3 files: 1 unchanged, 1 worse, 1 better)"
    assert len(built) == 1 and built[0].max_tokens == 400 and built[0].no_cache is False

    result = runner.invoke(cli.app, ["check", "worse.md", "same.md", "--threshold", "0.85", "--json"])
    assert result.exit_code == ExitCode.OK, result.output
    records = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [(r["path"], r["status"], r["passed"]) for r in records] == [
        ("same.md", "unchanged", True),
        ("worse.md", "worse", True),
    ]
    assert records[1]["winner"] == "baseline" and records[1]["threshold"] == 0.85
    assert records[1]["judgment"]["winner"] == "A" and len(records[1]["judgment"]["orders"]) == 2

    result = runner.invoke(cli.app, ["check", "same.md", "better.md", "--order", "ab", "--json"])
    assert result.exit_code == ExitCode.OK
    assert [len(r["judgment"]["orders"]) for r in map(orjson.loads, result.stdout.splitlines()) if r["judgment"]] == [1]


def test_cli_usage_and_input_errors_without_a_model(repo: Path) -> None:
    commit(repo, {"a.md": GOOD})
    write(repo / "a.md", BAD)
    cases = [
        (["check", "a.md", "--threshold", "2"], ExitCode.USAGE, "--threshold 2.0: give a confidence from 0 to 1"),
        (["check", "a.md", "--order", "sideways"], ExitCode.USAGE, "--order 'sideways'"),
        (["check"], ExitCode.USAGE, "give the files to check"),
        (["check", "missing.md"], ExitCode.INPUT, "missing.md: no such file"),
        (["check", "a.md", "--against", "nope"], ExitCode.USAGE, "--against nope: not a commit"),
        (["check", "a.md", "--model", str(repo / "absent.gguf")], ExitCode.MODEL, "absent.gguf"),
    ]
    for args, code, message in cases:
        _assert_one_line_error(invoke_cli(*args, cwd=repo, env={"PRE_COMMIT": ""}), code, message)
    write(repo / ".rmjudge.toml", "threshold = 'high'\n")
    message = ".rmjudge.toml: threshold: expected a number from 0 to 1"
    _assert_one_line_error(invoke_cli("check", "a.md", cwd=repo), ExitCode.USAGE, message)


def _assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_cli_unchanged_files_need_no_model(repo: Path) -> None:
    commit(repo, {"a.md": GOOD, "b.png": b"\x89PNG\x00"})
    result = invoke_cli("check", "a.md", "b.png", "--model", str(repo / "absent.gguf"), cwd=repo)
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stdout.splitlines() == [
        "· a.md  unchanged: same as HEAD",
        "· b.png  unchanged: same as HEAD",
        "rmjudge check passed (2 files: 2 unchanged)",
    ]


# -- a real model ----------------------------------------------------------------------------------


@pytest.mark.model
def test_check_with_a_real_gguf(repo: Path, gemma_path: Path) -> None:
    commit(repo, {"docs/a.md": GOOD, "docs/same.md": GOOD})
    write(repo / "docs/a.md", BAD)
    git(repo, "add", "docs/a.md")
    args = ["check", "docs/a.md", "docs/same.md", "--model", str(gemma_path), "--max-tokens", "8", "--json"]
    first = run_cli(*args, cwd=repo, env={"PRE_COMMIT": "1"})
    assert first.returncode in (ExitCode.OK, ExitCode.NEGATIVE), first.stderr
    same, judged = (orjson.loads(line) for line in first.stdout.splitlines())
    assert (same["path"], same["status"], same["judgment"]) == ("docs/same.md", "unchanged", None)
    assert judged["path"] == "docs/a.md" and judged["status"] in checking.JUDGED
    orders = judged["judgment"]["orders"]
    assert [o["order"] for o in orders] == ["ab", "ba"] and all(o["tokens_out"] <= 8 for o in orders)
    assert judged["judgment"]["sampling"]["max_tokens"] == 8
    # The verdict and the exit code follow the rule: fail only when the baseline wins at or above the threshold.
    blocked = judged["status"] == "worse" and judged["confidence"] >= checking.DEFAULT_THRESHOLD
    assert judged["passed"] is not blocked
    assert first.returncode == (ExitCode.NEGATIVE if blocked else ExitCode.OK)

    # Threshold 0 blocks any win of the baseline; the rerun is served from the verdict cache.
    again = run_cli(*args, "--threshold", "0", cwd=repo, env={"PRE_COMMIT": "1"})
    _, rejudged = (orjson.loads(line) for line in again.stdout.splitlines())
    assert all(o["cached"] for o in rejudged["judgment"]["orders"])
    assert (rejudged["status"], rejudged["confidence"]) == (judged["status"], judged["confidence"])
    assert again.returncode == (ExitCode.NEGATIVE if judged["status"] == "worse" else ExitCode.OK)


@pytest.mark.model
def test_compare_expect_with_a_real_gguf(tmp_path: Path, gemma_path: Path) -> None:
    write(tmp_path / "a.txt", GOOD)
    write(tmp_path / "b.txt", BAD)
    base = [
        "compare",
        str(tmp_path / "a.txt"),
        str(tmp_path / "b.txt"),
        "--model",
        str(gemma_path),
        "--max-tokens",
        "0",
    ]
    judged = run_cli(*base, "--json")
    assert judged.returncode == ExitCode.OK, judged.stderr
    winner = orjson.loads(judged.stdout)["winner"]
    for expect in ("A", "B"):
        result = run_cli(*base, "--expect", expect)
        assert result.returncode == (ExitCode.OK if winner == expect else ExitCode.NEGATIVE), (
            winner,
            expect,
            result.stderr,
        )
    bad = run_cli(*base, "--expect", "C")
    assert bad.returncode == ExitCode.USAGE and "--expect takes A or B" in bad.stderr
